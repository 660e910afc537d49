# Sourced by the other scripts: activate the environment setup.sh installed into, unless one is
# already active. $1 is the folder (.venv by default).
if [ -z "${VIRTUAL_ENV:-}" ]; then
  # shellcheck disable=SC1090,SC1091
  source "${1:-.venv}/bin/activate"
fi
