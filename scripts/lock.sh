#!/usr/bin/env bash
# Regenerate requirements.lock from pyproject.toml: every dependency of the offline, gemma,
# serve and dev extras, transitive ones included, pinned with hashes. torch is held at the
# CPU release that setup.sh installs (a newer torch from PyPI is a multi-GB CUDA build).
# Run after changing a dependency in pyproject.toml, then commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --disable-pip-version-check "pip-tools>=7.4"
python3 -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras \
  --extra offline --extra gemma --extra serve --extra dev \
  --upgrade-package "torch==2.13.0" \
  -o requirements.lock pyproject.toml
