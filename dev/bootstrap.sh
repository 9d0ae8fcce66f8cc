#!/usr/bin/env bash
# Create .venv (when missing) with torch, detectron2 v0.6 and sta_d2; reuse what is already there.
#
# A working detectron2 in the venv is left alone. Otherwise detectron2's Python package is built
# from the pb1-detectron2==0.6 sdist (the detectron2 v0.6 source tree without its C++ sources,
# see docs/installation.md) with dev/detectron2_C.py standing in for the compiled ``detectron2._C``.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${STA_D2_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)
quiet() { "$@" 2>&1 | grep -v "is ignored: it is neither" || true; return "${PIPESTATUS[0]}"; }

[ -x "$PY" ] || python3 -m venv "$VENV"

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    echo "[bootstrap] installing torch 2.14.1 + torchvision 0.29.1"
    quiet "${PIP[@]}" install torch==2.14.1 torchvision==0.29.1
fi

# The pinned environment, again whenever dev/requirements-env.txt changed since the last install.
STAMP="$VENV/.sta_d2-requirements"
if ! cmp -s "$ROOT/dev/requirements-env.txt" "$STAMP"; then
    echo "[bootstrap] installing the pinned environment (dev/requirements-env.txt)"
    quiet "${PIP[@]}" install -r "$ROOT/dev/requirements-env.txt"
    cp "$ROOT/dev/requirements-env.txt" "$STAMP"
fi

if ! "$PY" -c "import detectron2.modeling, detectron2.engine" 2>/dev/null; then
    echo "[bootstrap] installing detectron2 v0.6 (Python package from the pb1-detectron2 sdist)"
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    quiet "${PIP[@]}" download --no-deps --no-build-isolation --no-binary :all: \
        pb1-detectron2==0.6 -d "$WORK"
    tar -xzf "$WORK"/pb1-detectron2-0.6.tar.gz -C "$WORK"
    SRC="$WORK/pkg"
    mkdir -p "$SRC"
    mv "$WORK"/pb1-detectron2-0.6/detectron2 "$SRC/detectron2"
    cp "$ROOT/dev/detectron2_C.py" "$SRC/detectron2/_C.py"
    cat > "$SRC/setup.py" <<'PYEOF'
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version="0.6",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    package_data={"detectron2.model_zoo": ["configs/*.yaml", "configs/**/*.yaml", "configs/**/*.py"]},
)
PYEOF
    quiet "${PIP[@]}" install --no-deps --no-build-isolation "$SRC"
fi

if ! (cd / && "$PY" -c "import sta_d2") 2>/dev/null; then
    echo "[bootstrap] installing sta_d2 (editable)"
    quiet "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
fi
