#!/usr/bin/env bash
# Download here what scripts/gpu_check.sh needs on a GPU machine that has no internet: PyCUDA's source
# distribution and the wheels of its pure-Python dependencies that the GPU image lacks (pytools, platformdirs,
# mako, siphash24; the image has numpy, setuptools, MarkupSafe and typing-extensions), into .gpu_wheels/
# (git-ignored; about 2 MB). Then carry that folder to the device: run(..., carry=[".gpu_wheels"]).
#
#   bash scripts/gpu_fetch.sh [DEST]        PYTHON=... picks the pip (default python3); GPU_PYTHON_VERSION=3.12
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.gpu_wheels}
py=${PYTHON:-python3}
pyver=${GPU_PYTHON_VERSION:-3.12}
mkdir -p "$dest"
# the sdist: PyCUDA is built on the device against its CUDA toolkit and driver
"$py" -m pip download --quiet --no-deps --no-binary pycuda -d "$dest" "pycuda==${PYCUDA_VERSION:-2026.1}"
# its dependencies, as wheels for the device's Python (x86-64 Linux)
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" "pytools==2026.1.1" "platformdirs==4.14.8" "mako==1.4.3" "siphash24>=1.6"
ls -l "$dest"
