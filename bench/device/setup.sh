#!/bin/bash
# Sourced by the scripts here, on the GPU machine: the wheels its image lacks installed into /tmp/site,
# and the repository's folders linked under the names the package gives them (pyproject's package-dir),
# so that `python3 -m anomascope.app.cli` runs without installing anything.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
mkdir -p /tmp/package/anomascope
for folder in app engine storage assets; do ln -sfn "$PWD/$folder" "/tmp/package/anomascope/$folder"; done
export PYTHONPATH=/tmp/site:/tmp/package PYTHONUNBUFFERED=1
if command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
fi
