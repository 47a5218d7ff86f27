#!/usr/bin/env bash
# The GPU run behind README "Results": SmolLM2-135M-Instruct fine-tuned with train.py, stop_bias
# chosen on DialogSum's validation split (python -m eval.calibrate), then evaluated with python -m eval
# on DialogSum test (500 dialogues, 3 references), the enterprise test set and the stress set, once
# with the chosen stop_bias (eval_test) and once with plain greedy decoding (eval_test_bias0).
#   bench/smollm2_quality.sh DIALOGSUM_DIR GGUF_FILE OUT_DIR [4000|full] [METRICS]
# 4000: configs/smollm2_dialogsum.yaml (the 4,000-example budget); full: with the overlay
# configs/smollm2_dialogsum_full.yaml. Each stage is skipped when its output exists, and a killed fit
# resumes (--ckpt_path last), so the script can be run again after an interruption. BERTScore and
# the mean-over-references tables follow on any machine with python -m eval.rescore (README "Results").
set -euo pipefail
data=$1; gguf=$2; out=$3; budget=${4:-4000}; metrics=${5:-rouge,bleu,meteor,bertscore,length}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -f models/smollm2-135m-instruct/config.json ] || python -m model.import_gguf "$gguf" models/smollm2-135m-instruct
name=smollm2_dialogsum_$budget
configs=(--config configs/smollm2_dialogsum.yaml)
[ "$budget" = full ] && configs+=(--config configs/smollm2_dialogsum_full.yaml)
if ! ls logs/$name/version_*/adapter/adapter_config.json >/dev/null 2>&1; then
  resume=()
  ls logs/$name/version_*/checkpoints/*.ckpt >/dev/null 2>&1 && resume=(--ckpt_path last)
  start=$(date +%s)
  python train.py fit "${configs[@]}" --data.sources.dialogsum.path "$data" --trainer.logger.init_args.name "$name" \
    --trainer.enable_progress_bar false "${resume[@]}"
  echo "fit took $(( $(date +%s) - start )) s"
fi
run=$(dirname "$(ls -d logs/$name/version_*/adapter | sort -V | tail -1)")
mkdir -p "$out/$name"
cp "$run"/*.png "$run/config.yaml" "$run"/events.out.tfevents.* "$out/$name/" 2>/dev/null || true
# The length target is DialogSum's, so the bias is matched to DialogSum's validation summaries alone.
[ -f "$out/$name/calibration/calibration.json" ] || python -m eval.calibrate --config "$run/config.yaml" \
  --adapter "$run/adapter" --data.sources "{dialogsum: {path: $data}}" --no_progress --out "$out/$name/calibration"
bias=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['stop_bias'])" "$out/$name/calibration/calibration.json")
evaluate() {  # $1: stop_bias, $2: report folder
  [ -f "$out/$name/$2/report.json" ] || python -m eval --config "$run/config.yaml" --adapter "$run/adapter" \
    --model.stop_bias "$1" --metrics "$metrics" --no_progress --out "$out/$name/$2"
}
evaluate "$bias" eval_test
evaluate 0 eval_test_bias0
