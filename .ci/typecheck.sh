#!/usr/bin/env bash
# mypy on the whole anomascope package: app, engine and storage. mypy cannot follow setuptools'
# editable-install mapping of app/, engine/ and storage/ onto the anomascope namespace, so it reads them
# through a temporary tree of links that has the installed layout.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/anomascope"
for package in app engine storage; do ln -s "$PWD/$package" "$tree/anomascope/$package"; done
MYPYPATH="$tree" .venv/bin/python -m mypy --config-file pyproject.toml -p anomascope
