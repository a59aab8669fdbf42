#!/bin/bash
# Sourced by the scripts here. hand_back NAME FOLDER PATH...: the PATHs (relative to FOLDER) as one tar in $OUT,
# split into parts of at most 15 MiB because the device tool brings back no file over 16 MiB, with their
# SHA-256 sums in $OUT/NAME.sha256. Here, after checking the sums: cat NAME.tar.part-* | tar -C FOLDER -xf -
hand_back() {
    local name=$1 folder=$2
    shift 2
    tar -C "$folder" -cf - "$@" | split -b 15m - "$OUT/$name.tar.part-"
    (cd "$OUT" && sha256sum "$name".tar.part-* > "$name.sha256")
}
