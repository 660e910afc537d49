#!/usr/bin/env bash
# The main job: set up, extract the 171 emotion vectors of the default offline model from the
# shipped corpus, validate them, and show a monitoring example. Re-running resumes/reuses work.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=runs/default
mkdir -p "$out"
if [ ! -f "$out/vectors.safetensors" ]; then
  affectlens extract --out "$out/vectors.safetensors" --resume
fi
affectlens summary --vectors "$out/vectors.safetensors"
