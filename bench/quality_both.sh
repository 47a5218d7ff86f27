#!/usr/bin/env bash
# Both real models' full-data quality runs (bench/quality.sh) at once on one GPU, detached, so that they
# outlive a 10-minute device command: the two small models leave most of an H200 idle when run alone.
#   bench/quality_both.sh DIALOGSUM_DIR SMOLLM2_GGUF GEMMA3_GGUF OUT_DIR
# Logs: OUT/smollm2.log, OUT/gemma3.log; reports under OUT/<model>_dialogsum_full/. Poll with
#   pgrep -f bench/quality.sh; tail OUT/*.log
# Training times and tokens/s of runs made this way are those of two runs sharing the GPU.
set -euo pipefail
data=$1; smollm2=$2; gemma3=$3; out=$4
mkdir -p "$out"
for model in smollm2 gemma3; do
  gguf=$smollm2; [ $model = gemma3 ] && gguf=$gemma3
  setsid nohup bash bench/quality.sh $model "$data" "$gguf" "$out" > "$out/$model.log" 2>&1 < /dev/null &
  sleep 20  # the first one's import and data set-up before the second starts
done
echo "started; logs in $out/smollm2.log and $out/gemma3.log"
