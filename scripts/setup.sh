#!/usr/bin/env bash
# Install affectlens with the offline default model and the test tools.
# torch is pinned first so pip takes the CPU wheel instead of pulling the CUDA stack;
# users with GPUs who already have torch keep theirs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "torch==2.13.0" \
  || python3 -c "import torch" # a GPU user's own torch is fine
python3 -m pip install -q --disable-pip-version-check -e ".[offline,gemma,dev]"
