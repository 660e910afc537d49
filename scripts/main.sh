#!/usr/bin/env bash
# The main job: set up, extract the 171 emotion vectors of the default offline model from the
# shipped corpus, validate them, and show a monitoring example. Re-running resumes/reuses work.
# Human valence/arousal norms are not shipped (their licence forbids it); point AFFECTLENS_NORMS
# at a Warriner et al. (2013) CSV to add the valence/arousal checks to the validation report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/venv.sh .venv
out=runs/default
mkdir -p "$out"
if [ -f "$out/vectors.safetensors" ]; then
  echo "reusing $out/vectors.safetensors (delete it to extract again)"
else
  affectlens extract --out "$out/vectors.safetensors" --resume
fi
if [ -f "$out/validation/report.json" ]; then
  echo "reusing $out/validation/report.json (delete it to validate again)"
else
  norms="${AFFECTLENS_NORMS:-../shared/data/Ratings_Warriner_et_al.csv}"
  norm_args=()
  if [ -f "$norms" ]; then norm_args=(--norms "$norms"); fi
  affectlens validate --vectors "$out/vectors.safetensors" --out "$out/validation" "${norm_args[@]}"
fi
affectlens summary --vectors "$out/vectors.safetensors"
echo "validation report: $out/validation/index.html"
echo "dashboard: affectlens serve --vectors $out/vectors.safetensors   (then open http://127.0.0.1:8000/)"
