#!/usr/bin/env bash
# Download the small wheels that bench/gpu_check.py needs on a GPU machine without network access whose
# image already has torch, transformers, peft, accelerate, pyarrow, psutil and PyYAML: trl, datasets
# and the few pure-Python packages tui-ft's engine imports. Into .whl/ (git-ignored via .git/info/exclude).
# On the GPU machine: pip install --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=/tmp/site:.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for spec in trl==1.16.0 datasets==5.2.0 dill multiprocess pydantic==2.14.3 pydantic-core annotated-types \
    typing-inspection platformdirs==4.14.7; do
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "$spec"
done
ls .whl
