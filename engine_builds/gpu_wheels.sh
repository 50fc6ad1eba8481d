#!/usr/bin/env bash
# The wheels the GPU run's evaluation needs and the GPU image lacks (tree-sitter and its grammars,
# rapidfuzz), downloaded here (a machine with PyPI) into .whl/ (git-ignored, ~5 MB) for Python 3.12
# on x86-64 Linux. Name .whl in the device tool's carry; gpu_train.sh installs them there with
# `pip install --no-index --target /tmp/completer-site` when they are missing.
#
#   bash engine_builds/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
# The versions this checkout is tested with (pyproject.toml's ranges).
for spec in tree-sitter==0.26.1 rapidfuzz==3.14.6 tree-sitter-python==0.25.0 tree-sitter-javascript==0.25.0 \
    tree-sitter-typescript==0.23.2 tree-sitter-go==0.25.0 tree-sitter-rust==0.24.2 tree-sitter-java==0.23.5 \
    tree-sitter-c==0.24.2 tree-sitter-cpp==0.23.4 tree-sitter-lua==0.5.0; do
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 -d "$DEST" "$spec"
done
du -sh "$DEST"
