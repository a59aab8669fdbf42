#!/bin/bash
# On the GPU machine: train (or resume) one bundle for at most LIMIT seconds, then hand back what a later
# session needs in $OUT: the bundle if it finished, else its checkpoint folder as a tar in parts of at
# most 15 MiB (files over 16 MiB do not come back). bench/device/README.md says what to carry.
#   NAME=lgg-ppii METHOD=ppii CONFIG=configs/lgg-ppii.toml DATA=prepared/lgg LIMIT=420 bash bench/device/train.sh
# EXTRA holds further `anomascope train` options (--steps, --folds ...); DEVICE=cpu tries the script here.
set -euo pipefail
: "${NAME:?}" "${METHOD:?}" "${CONFIG:?}" "${DATA:?}" "${LIMIT:=420}" "${EXTRA:=}" "${DEVICE:=cuda}"
source bench/device/setup.sh
source bench/device/handback.sh
status=0
# shellcheck disable=SC2086  # EXTRA is a list of options
timeout --kill-after=30 "$LIMIT" python3 -m anomascope.app.cli train --method "$METHOD" --data "$DATA" \
    --out "runs/$NAME" --config "$CONFIG" --device "$DEVICE" --keep-checkpoint --quiet $EXTRA || status=$?
echo "train exited with $status (124: stopped at the $LIMIT s limit; its last checkpoint resumes)" | tee "$OUT/train.txt"
if [ -f "runs/$NAME/manifest.json" ]; then
    cp "runs/$NAME/manifest.json" "runs/$NAME/weights.safetensors" "$OUT/"
fi
if [ -d "runs/$NAME/checkpoint" ]; then
    hand_back "$NAME-checkpoint" "runs/$NAME" checkpoint
fi
ls -l "$OUT"
