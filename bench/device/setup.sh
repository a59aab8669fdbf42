#!/bin/bash
# Sourced by the scripts here, on the GPU machine: the wheels its image lacks installed into /tmp/site,
# and the repository's folders linked under the names the package gives them (pyproject's package-dir),
# so that `python3 -m anomascope.app.cli` runs without installing anything.
# KIT_DIR (default /tmp) is where they go: a test that tries a script here names its own.
set -euo pipefail
kit=${KIT_DIR:-/tmp}
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$kit/site" .whl/*.whl
else
    echo "no wheels in .whl/ (bench/device/wheels.sh makes them): python3 must have the engine's packages" >&2
fi
mkdir -p "$kit/package/anomascope"
for folder in app engine storage assets; do ln -sfn "$PWD/$folder" "$kit/package/anomascope/$folder"; done
export PYTHONPATH="$kit/site:$kit/package" PYTHONUNBUFFERED=1
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
fi
