#!/bin/bash
# The wheels the engine needs that the GPU machine's image lacks (bench/device/README.md), into .whl/
# (ignored by git), at the versions this checkout's .venv runs. Run here, from the repository root.
# --no-diffusers leaves out the largest wheel, which only the denoiser methods (sano, spr, cddpm, dia) need:
# a P-PII campaign's split then travels with its test slices.
set -euo pipefail
python=.venv/bin/python
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
names=(diffusers monai pydicom nibabel importlib-metadata pytest pluggy iniconfig pygments)
case "${1:-}" in
    "") ;;
    --no-diffusers) names=("${names[@]:1}") ;;
    *) echo "wheels.sh: unknown option $1 (the one option is --no-diffusers)" >&2; exit 2 ;;
esac
rm -rf .whl && mkdir .whl
packages=()
for name in "${names[@]}"; do packages+=("$name==$(version "$name")"); done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${packages[@]}"
ls .whl
