#!/usr/bin/env bash
# Creates (or reuses) the project's Python 3.12 virtual environment in .venv and installs robot_si into it.
# The environment is reused while pyproject.toml's dependency spec is unchanged: a fresh one costs ~90 s and
# 5.4 GB here (lerobot pulls a CUDA torch build), and pip keeps no cache of it.
# System packages needed at run time (EGL/OSMesa for headless MuJoCo, ffmpeg for lerobot video) are installed
# here when missing, never by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${ROBOT_SI_EXTRAS:-dev}"
VENV=.venv

need_apt=()
ldconfig -p | grep -q 'libEGL.so.1' || need_apt+=(libegl1)
ldconfig -p | grep -q 'libOSMesa.so' || need_apt+=(libosmesa6)
ldconfig -p | grep -q 'libGL.so.1' || need_apt+=(libgl1)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing system packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "[setup] warning: missing system packages ${need_apt[*]}; install them with your package manager" >&2
  fi
fi

find_python() {
  for candidate in "${PYTHON:-}" "$HOME/.pyenv/versions/3.12.1/bin/python3.12" python3.12; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

spec_hash=$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.robot_si_spec" 2>/dev/null)" = "$spec_hash" ]; then
  echo "[setup] reusing $VENV (dependency spec unchanged)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  py=$(find_python) || { echo "[setup] error: Python 3.12 not found. Install it (e.g. 'pyenv install 3.12.1') or set PYTHON=/path/to/python3.12" >&2; exit 1; }
  echo "[setup] creating $VENV with $py"
  "$py" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
echo "[setup] installing robot_si[$EXTRAS] (first time: ~2 min, ~5.5 GB)"
"$VENV/bin/python" -m pip install -q -e ".[$EXTRAS]"
echo "$spec_hash" > "$VENV/.robot_si_spec"
echo "[setup] done"
