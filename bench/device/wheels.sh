#!/bin/bash
# The wheels the engine needs that the GPU machine's image lacks (bench/device/README.md), into .whl/
# (ignored by git), at the versions this checkout's .venv runs. Run here, from the repository root.
set -euo pipefail
python=.venv/bin/python
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
rm -rf .whl && mkdir .whl
packages=()
for name in diffusers monai pydicom nibabel importlib-metadata pytest pluggy iniconfig pygments; do packages+=("$name==$(version "$name")"); done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${packages[@]}"
ls .whl
