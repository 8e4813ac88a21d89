#!/usr/bin/env bash
# Prepare HERE (no GPU, no device time) everything scripts/gpu_check.sh needs on an offline GPU machine, in one
# git-ignored folder to carry there (a few MB): .gpu_carry/
#
#   wheels/        a PyCUDA wheel built for the device's Python (cp312) against the CUDA headers and a stub
#                  libcuda.so whose SONAME is libcuda.so.1 (linked with --no-as-needed, so that the driver's
#                  libcuda.so.1 is resolved when pycuda._driver is imported on the device), and the pure-Python
#                  wheels PyCUDA needs that the device image lacks (pytools, platformdirs, mako, siphash24)
#   kernel-cache.tar.xz  every kernel the GPU tests, the models stage and the kernels benchmark load, compiled
#                  by scripts/gpu_kernels.py for sm_90 with this machine's nvcc (a graphc kernel cache, packed)
#   nvcc-version   the nvcc version line that keys the cache (gpu_check.sh compares the device's with it)
#
#   bash scripts/gpu_prepare.sh          # then, on the device: run(command="bash scripts/gpu_check.sh",
#                                        #                          carry=[".gpu_carry"], timeout_s=600)
# Environment: GPU_PYTHON (a python3.12; default: python3.12 on the PATH, else pyenv's newest 3.12),
# PYTHON (the python with graphc installed, for the kernel cache; default python3), PYCUDA_VERSION (2026.1),
# CUDA_HOME (default: the toolkit holding nvcc). Needs pip to reach PyPI; takes about 2-4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
CARRY=${GPU_CARRY:-.gpu_carry}
PY=${PYTHON:-python3}
PYCUDA_VERSION=${PYCUDA_VERSION:-2026.1}
log() { echo "== $(date -u +%H:%M:%S) $*"; }

py312=
for c in "${GPU_PYTHON:-}" python3.12 $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV); do
    [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { py312=$c; break; }
done  # (a pyenv shim named python3.12 may exist and refuse to run: each candidate is tried)
[ -n "$py312" ] || { echo "no python3.12 (the device's Python): set GPU_PYTHON, or pyenv install 3.12"; exit 1; }
nvcc_bin=$(command -v nvcc) || { echo "nvcc is not on the PATH"; exit 1; }
cuda_root=${CUDA_HOME:-}
if [ -z "$cuda_root" ]; then  # nvcc may be a wrapper script: ask it where its toolkit is
    top=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    for d in "$top/.." "$(dirname "$(dirname "$(readlink -f "$nvcc_bin")")")" /usr/local/cuda; do
        [ -f "$d/include/cuda.h" ] && { cuda_root=$(readlink -f "$d"); break; }
    done
fi
[ -f "$cuda_root/include/cuda.h" ] || { echo "no CUDA headers (include/cuda.h): set CUDA_HOME"; exit 1; }

# a PyCUDA wheel an earlier run built for this version and this nvcc is kept unless --rebuild is given
built=$(ls "$CARRY"/wheels/pycuda-"$PYCUDA_VERSION"-cp312-*.whl 2>/dev/null | head -1 || true)
if [ "${1:-}" = --rebuild ] || [ -z "$built" ] || [ "$(cat "$CARRY/nvcc-version" 2>/dev/null)" != "$(nvcc --version | tail -1)" ]; then
    built=
fi
[ -n "$built" ] && mv "$built" /tmp/
rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
[ -n "$built" ] && mv "/tmp/$(basename "$built")" "$CARRY/wheels/"
BUILD=$(mktemp -d /tmp/graphc-gpu-prepare.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT

"$py312" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$CARRY/wheels" "pytools==2026.1.1" "platformdirs==4.14.8" "mako==1.4.3" "siphash24>=1.6"
if [ -n "$built" ]; then
    log "PyCUDA: the wheel built before ($(basename "$built"); --rebuild builds it again)"
else
log "PyCUDA $PYCUDA_VERSION for $("$py312" --version) against $cuda_root ($(nvcc --version | tail -1))"
"$py312" -m pip download -q --disable-pip-version-check --no-deps --no-binary pycuda -d "$BUILD" "pycuda==$PYCUDA_VERSION"
# what building needs, for python3.12 only (never the device's): NumPy's headers, setuptools, wheel
"$py312" -m pip install -q --disable-pip-version-check --target "$BUILD/buildenv" numpy setuptools wheel
# the stub: no symbols, SONAME libcuda.so.1; --no-as-needed keeps it in DT_NEEDED although it defines nothing
mkdir -p "$BUILD/stub" && echo "" | gcc -x c -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$BUILD/stub/libcuda.so" -
tar xzf "$BUILD"/pycuda-*.tar.gz -C "$BUILD"
src=$(ls -d "$BUILD"/pycuda-*/ | head -1)
CARRY_ABS=$(readlink -f "$CARRY/wheels")
(
    cd "$src"
    export PYTHONPATH=$BUILD/buildenv LDFLAGS="-Wl,--no-as-needed"
    "$py312" configure.py --cuda-root="$cuda_root" --cudadrv-lib-dir="$BUILD/stub" --no-cuda-enable-curand >/dev/null
    "$py312" setup.py -q build_ext -j "$(nproc)" bdist_wheel -d "$CARRY_ABS" >/dev/null 2>"$BUILD/build.err" ||
        { tail -40 "$BUILD/build.err"; exit 1; }
)
fi
whl=$(readlink -f "$(ls "$CARRY"/wheels/pycuda-*.whl)")
mkdir -p "$BUILD/check" && (cd "$BUILD/check" && "$PY" -m zipfile -e "$whl" .)
readelf -d "$BUILD"/check/pycuda/_driver*.so | grep -q 'NEEDED.*\[libcuda\.so\.1\]' ||
    { echo "the PyCUDA wheel does not name libcuda.so.1 among its needed libraries"; exit 1; }
log "$(basename "$whl"): links libcuda.so.1 (resolved on the device)"

log "kernel cache (sm_90)"
nvcc --version | tail -1 >"$CARRY/nvcc-version"
GRAPHC_CACHE_DIR="$BUILD/kernel-cache" "$PY" -W ignore scripts/gpu_kernels.py --arch sm_90
find "$BUILD/kernel-cache" -name '.build-*' -delete
# cubins are mostly zeros: 13 MB of them pack into well under 1 MB (gpu_check.sh unpacks them on the device)
tar cJf "$CARRY/kernel-cache.tar.xz" -C "$BUILD" kernel-cache

log "done in $(($(date +%s) - T0)) s: $CARRY is $(du -sh "$CARRY" | cut -f1) ($(find "$CARRY" -type f | wc -l) files)"
du -sh "$CARRY"/*
