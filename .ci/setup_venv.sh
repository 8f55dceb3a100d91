#!/usr/bin/env bash
# Creates the virtual environment and installs jvision with its test extra,
# and with ACCEL (cuda12, cuda13 or tpu: pyproject's extras, the
# accelerator runtime of the pinned JAX) when given.
# Usage: setup_venv.sh PYTHON VENV [ACCEL]
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
accel=${3:-}

case "$accel" in
  "" | cuda12 | cuda13 | tpu) ;;
  *)
    echo "setup: ACCEL=$accel is not an accelerator extra; use cuda12, cuda13 or tpu" >&2
    exit 1
    ;;
esac

if ! command -v "$python" >/dev/null; then
  echo "setup: $python not found; install Python >= 3.10 (apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: jvision needs Python >= 3.10, $python is $("$python" --version)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "setup: installing python3-venv"
      apt-get update -qq && apt-get install -y -qq python3-venv
      "$python" -m venv "$venv"
    else
      echo "setup: '$python -m venv' failed; run: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
fi
extras=test${accel:+,$accel}
echo "setup: installing jvision[$extras] and its dependencies into $venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[$extras]"
# The ONNX converter, without its declared requirements (they would
# downgrade orbax-checkpoint); its real needs are in the export extra.
"$venv/bin/python" -m pip install -q --no-deps "jax2onnx==0.17.1"
# torchvision's model definitions for the import parity tests, without its
# declared torch requirement resolving again (its compiled ops are not used).
"$venv/bin/python" -m pip install -q --no-deps "torchvision==0.28.0"
