#!/bin/bash
# On the GPU machine: a campaign of trainings in one call. Trains the runs of PLAN at once on the one GPU, scores
# each finished run on the whole val split, picks each bundle name's best run on val, scores only that one on
# test (unless the plan says score_test = false), and hands back in $OUT campaign.json (every run's figures)
# and campaign.tar in parts of at most 15 MiB with their sums (campaign.sha256): the picked bundles, then the
# checkpoints of runs the limit cut.
#   LIMIT=480 bash bench/device/campaign.sh PLAN
# LIMIT (default 420) bounds the whole campaign in seconds, of which the last SCORE_SECONDS (default 90) are
# kept for scoring; RUNS (default runs/campaign) holds the runs, carried in to resume cut ones; DEVICE=cpu tries
# the script here. bench/device/README.md describes the plan and what to carry.
set -euo pipefail
: "${1:?name a plan file}" "${LIMIT:=420}" "${SCORE_SECONDS:=90}" "${RUNS:=runs/campaign}" "${DEVICE:=cuda}"
source bench/device/setup.sh
source bench/device/handback.sh
paths=$(mktemp)
python3 bench/device/campaign.py "$1" --runs "$RUNS" --out "$OUT" --hand-back "$paths" --device "$DEVICE" \
    --limit "$LIMIT" --score-seconds "$SCORE_SECONDS"
mapfile -t chosen < "$paths"
if [ "${#chosen[@]}" -gt 0 ]; then
    hand_back campaign "$RUNS" "${chosen[@]}"
fi
ls -l "$OUT"
