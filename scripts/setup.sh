#!/usr/bin/env bash
# Install affectlens with the offline default model, the server and the test tools, from the
# lock (requirements.lock: exact versions with hashes, made by scripts/lock.sh), so a fresh
# machine gets what CI tested. Packages go into the project's own virtual environment, .venv,
# unless one is already active. Activate it afterwards with `source .venv/bin/activate`.
#   --latest  install the newest releases pyproject's ranges allow instead (into .venv-latest
#             unless an environment is active): the way to see upstream drift early.
set -euo pipefail
cd "$(dirname "$0")/.."
# The reward-hacking harness runs model-written code only under bubblewrap: install it where we
# can (root with apt-get); never fail the set-up over it (the harness then refuses, and says so).
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq bubblewrap libseccomp2) >/dev/null 2>&1 || true
fi
mode=locked
if [ "${1:-}" = "--latest" ]; then mode=latest; fi
if [ -z "${VIRTUAL_ENV:-}" ]; then
  venv=.venv
  if [ "$mode" = latest ]; then venv=.venv-latest; fi
  if [ "$mode" = latest ]; then rm -rf "$venv"; fi
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
fi
# (this machine's pip configuration names index folders that may not exist: drop those warnings)
pip() {
  python -m pip --disable-pip-version-check -q "$@" 2> >(grep -v "is neither a file nor a directory" >&2)
}
if [ "$mode" = locked ]; then
  pip install -r requirements.lock
else
  # torch stays pinned so pip takes the CPU wheel instead of several GB of CUDA packages.
  pip install --upgrade --upgrade-strategy eager ".[offline,gemma,serve,dev]" "torch==2.13.0"
fi
pip install --no-deps --no-build-isolation -e . 2>/dev/null || pip install --no-deps -e .
