#!/bin/bash
# On the GPU machine (the device tool's `run`, with carry [".whl"]): the training-throughput sweep of
# bench/train_throughput.py on the shipped denoiser, its JSON written to $OUT. About 5 minutes.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
# The repository's folders under the names the package gives them (pyproject's package-dir), without installing.
mkdir -p /tmp/package/anomascope
for folder in app engine storage assets; do ln -sfn "$PWD/$folder" "/tmp/package/anomascope/$folder"; done
export PYTHONPATH=/tmp/site:/tmp/package PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
python3 bench/train_throughput.py --device cuda --steps "${STEPS:-100}" --out "$OUT/results-train-throughput-cuda.json"
