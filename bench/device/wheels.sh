#!/bin/bash
# The wheels the engine needs that the GPU machine's image lacks (bench/device/README.md), into .whl/
# (ignored by git), at the versions this checkout's .venv runs. Run here, from the repository root.
# --ppii brings only what a P-PII campaign (campaign.sh) on a prepared, PNG, split imports: it leaves out
# diffusers, the largest wheel, which only the denoiser methods (sano, spr, cddpm, dia) need, the DICOM and NIfTI
# readers' pydicom and nibabel, and pytest, which only throughput.sh runs; an LGG split then travels whole, with
# a cut run's checkpoint beside it.
set -euo pipefail
python=.venv/bin/python
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))"; }
names=(diffusers monai pydicom nibabel importlib-metadata pytest pluggy iniconfig pygments)
case "${1:-}" in
    "") ;;
    --ppii) names=(monai importlib-metadata) ;;
    *) echo "wheels.sh: unknown option $1 (the one option is --ppii)" >&2; exit 2 ;;
esac
rm -rf .whl && mkdir .whl
packages=()
for name in "${names[@]}"; do packages+=("$name==$(version "$name")"); done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${packages[@]}"
ls .whl
