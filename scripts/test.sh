#!/usr/bin/env bash
# Set up, then run lint, the corpus check and the whole test suite (unit + integration), in the
# locked environment (.venv). `--latest` instead installs the newest releases pyproject's ranges
# allow into a fresh .venv-latest and runs the unit suite there, to see upstream drift early.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  bash scripts/setup.sh --latest
  source scripts/venv.sh .venv-latest
  python -m pip list --format=freeze | grep -iE '^(torch|transformers|accelerate|numpy)=='
  python -m pytest -q -m "not integration"
  exit
fi
bash scripts/setup.sh
source scripts/venv.sh .venv
ruff check src tests benchmarks
affectlens corpus check --quiet
python -m pytest -q
