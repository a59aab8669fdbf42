#!/usr/bin/env bash
# Install Debian's dicom3tools: its dciodvfy checks the DICOM Segmentations that `export` writes.
set -euo pipefail
if ! command -v dciodvfy >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dicom3tools >/dev/null
fi
