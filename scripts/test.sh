#!/usr/bin/env bash
# Set up, then run lint, the corpus check and the whole test suite (unit + integration).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check src tests benchmarks
affectlens corpus check --quiet
python3 -m pytest -q
