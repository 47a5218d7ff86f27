#!/usr/bin/env bash
# The GPU runs behind bench/README.md's tables, in two parts that each fit a 10-minute device call.
#   bench/h200_session.sh speed  <data> <tokenizer> <out>   # train_speed.py: plain eager, ours default,
#                                                           #   ours 12 GiB preset, plain compiled b16
#   bench/h200_session.sh job    <data> <tokenizer> <out> <nltk_data>
#                                                           # train.py fit capped to 16/24/40 GiB (30 steps),
#                                                           #   then real_job.py (one epoch + eval) capped to 80 GiB
#   bench/h200_session.sh levers <data> <tokenizer> <out>   # the default beside its FlexAttention and CUDA-graph twins
# Every log and JSON line lands in <out>; the random Phi-2 is saved once in /tmp/phi2-random.
set -uo pipefail
part=$1 data=$2 tok=$3 out=$4
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python - <<'EOF' | tee "$out/versions.txt"
import torch, transformers, peft, bitsandbytes, lightning
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"peft {peft.__version__}, bitsandbytes {bitsandbytes.__version__}, lightning {lightning.__version__}")
EOF
speed() {
    python bench/train_speed.py --data "$data" --tokenizer "$tok" --steps 15 --warmup 8 --out "$out/train.jsonl" "$@"
}
case $part in
speed)
    speed --recipes plain-eager-b8,ours-packed-layers-nodrop,ours-packed-layers-ckpt --timeout 200 --profile
    speed --recipes plain-compiled-b16 --timeout 330
    ;;
levers)
    speed --recipes ours-packed-layers-nodrop,ours-packed-layers-cudagraphs,ours-packed-layers-flex --timeout 120
    ;;
job)
    nltk=$5
    short=(--max_steps 30 --skip_eval -- --trainer.log_every_n_steps 10 --trainer.val_check_interval 30
           --trainer.limit_val_batches 2)
    for cap in 16 24 40; do
        python bench/real_job.py --data "$data" --tokenizer "$tok" --cap $cap --work "$out/cap$cap" \
            --out "$out/job.jsonl" "${short[@]}"
    done
    # A cold compile cache, as a user's first run has.
    TORCHINDUCTOR_CACHE_DIR=/tmp/inductor-cold python bench/real_job.py --data "$data" --tokenizer "$tok" \
        --nltk_data "$nltk" --cap 80 --work "$out/epoch" --out "$out/job.jsonl"
    ;;
esac
# What comes back: logs, JSON lines and reports, not checkpoints or adapters.
(cd "$out" && find . \( -name '*.log' -o -name '*.jsonl' -o -name '*.txt' -o -name 'metrics.md' -o -name 'report.json' \) \
    -print0 | tar czf "$out.tgz" --null -T -)
