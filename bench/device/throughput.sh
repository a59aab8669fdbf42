#!/bin/bash
# On the GPU machine (the device tool's `run`, with carry [".whl"]): the check that synthetic anomalies
# never wait for the GPU, then the training-throughput sweep of bench/train_throughput.py on the shipped
# denoiser, their outputs written to $OUT. About 5 minutes.
set -euo pipefail
source bench/device/setup.sh
# The tests that need CUDA (skipped on the CPU): a failure is recorded and the sweep still runs.
python3 -m pytest -q --noconftest tests/engine/test_synthetic.py -k "never_wait" 2>&1 | tee "$OUT/sync-check.txt" || true
python3 bench/train_throughput.py --device cuda --steps "${STEPS:-100}" --out "$OUT/results-train-throughput-cuda.json"
