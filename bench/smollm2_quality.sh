#!/usr/bin/env bash
# The GPU run behind README "Results": SmolLM2-135M-Instruct fine-tuned with train.py, then evaluated
# with python -m eval on DialogSum test (500 dialogues, 3 references), the enterprise test set and
# the stress set.
#   bench/smollm2_quality.sh DIALOGSUM_DIR GGUF_FILE OUT_DIR [TRAIN_LIMIT|null] [METRICS]
set -euo pipefail
data=$1; gguf=$2; out=$3; limit=${4:-4000}; metrics=${5:-rouge,bleu,meteor,bertscore,length}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python -m model.import_gguf "$gguf" models/smollm2-135m-instruct
name=smollm2_dialogsum_$limit
start=$(date +%s)
python train.py fit --config configs/smollm2_dialogsum.yaml --data.dialogsum "$data" \
  --data.train_limit "$limit" --trainer.logger.init_args.name "$name" --trainer.enable_progress_bar false
echo "fit took $(( $(date +%s) - start )) s"
run=$(ls -d logs/$name/version_* | tail -1)
python -m eval --config "$run/config.yaml" --ckpt_path last --dialogsum "$data" --batch_size 64 \
  --metrics "$metrics" --no_progress --out "$out/$name"
cp -r "$run"/*.png "$run"/*.svg "$run/config.yaml" "$out/$name/" 2>/dev/null || true
