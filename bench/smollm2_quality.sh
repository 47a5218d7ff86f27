#!/usr/bin/env bash
# The GPU run behind README "Results": SmolLM2-135M-Instruct fine-tuned with train.py, then evaluated
# with python -m eval on DialogSum test (500 dialogues, 3 references), the enterprise test set and
# the stress set.
#   bench/smollm2_quality.sh DIALOGSUM_DIR GGUF_FILE OUT_DIR [TRAIN_LIMIT|null] [METRICS]
# The fit resumes where a killed one stopped (--ckpt_path last), so the script can be run again after
# an interruption. BERTScore and the mean-over-references tables can be added afterwards on any
# machine with python -m eval.rescore (README "Results").
set -euo pipefail
data=$1; gguf=$2; out=$3; limit=${4:-4000}; metrics=${5:-rouge,bleu,meteor,bertscore,length}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -f models/smollm2-135m-instruct/config.json ] || python -m model.import_gguf "$gguf" models/smollm2-135m-instruct
name=smollm2_dialogsum_$limit
resume=()
ls logs/$name/version_*/checkpoints/*.ckpt >/dev/null 2>&1 && resume=(--ckpt_path last)
start=$(date +%s)
python train.py fit --config configs/smollm2_dialogsum.yaml --data.dialogsum "$data" \
  --data.train_limit "$limit" --trainer.logger.init_args.name "$name" --trainer.enable_progress_bar false "${resume[@]}"
echo "fit took $(( $(date +%s) - start )) s"
run=$(ls -d logs/$name/version_* | tail -1)
python -m eval --config "$run/config.yaml" --adapter "$run/adapter" --dialogsum "$data" \
  --metrics "$metrics" --no_progress --out "$out/$name"
cp -r "$run"/*.png "$run/config.yaml" "$out/$name/" 2>/dev/null || true
