#!/usr/bin/env bash
# The one script a session with a GPU runs on the device machine: build PyCUDA there, then run the GPU tests and
# the CUDA benchmarks, each stage's output into $OUT/STAGE.log and the benchmarks' Markdown into
# $OUT/RESULTS-gpu.md (to be copied into bench/RESULTS.md). docs/cuda.md, "Running on a GPU", says how.
#
#   bash scripts/gpu_fetch.sh                                   # here, once: .gpu_wheels/ (PyCUDA's sdist, deps)
#   bash scripts/gpu_check.sh [STAGE...]                        # on the device, with .gpu_wheels carried
#
# Stages (default: all, in this order): setup tests kernels gemm training models-a models-b. Each stage
# fits one 10-minute device command (models-a and models-b split the nine light CNNs); every stage first
# makes sure PyCUDA imports, building it (about 2 min) unless an earlier call on the same machine did.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-$ROOT/.gpu_wheels}
BUILD=${GPU_BUILD:-$ROOT/.gpu_build}
OUTDIR=${OUT:-$ROOT/gpu-results}
MD=$OUTDIR/RESULTS-gpu.md
mkdir -p "$OUTDIR" "$BUILD/site"
export GRAPHC_CACHE_DIR=${GRAPHC_CACHE_DIR:-$BUILD/kernel-cache}  # kept between calls on a warm machine
export PYTHONPATH=$BUILD/site:$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
unset GRAPHC_CUDA_EMULATE

log() { echo "== $(date -u +%H:%M:%S) $*"; }

cuda_root() {  # the toolkit folder holding include/cuda.h: $CUDA_HOME, nvcc's own (it may be a wrapper), /usr/local/cuda
    local d top
    top=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1)
    for d in "${CUDA_HOME:-}" "$top/.." "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")" /usr/local/cuda; do
        [ -n "$d" ] && [ -f "$d/include/cuda.h" ] && { readlink -f "$d"; return 0; }
    done
    return 1
}

driver_lib_dir() {  # a folder with libcuda.so to link against: the toolkit's stubs or the driver's library
    local d so1
    for d in "$1/lib64/stubs" "$1/lib/stubs" "$1/targets/x86_64-linux/lib/stubs" /usr/local/nvidia/lib64 \
             /usr/lib/x86_64-linux-gnu /usr/lib64; do
        [ -e "$d/libcuda.so" ] && { echo "$d"; return 0; }
    done
    so1=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 .*x86-64/ {print $NF; exit}')
    [ -n "$so1" ] || return 1
    mkdir -p "$BUILD/lib" && ln -sf "$so1" "$BUILD/lib/libcuda.so" && echo "$BUILD/lib"
}

build_pycuda() {
    local cuda_root drvlib inc src curand=""
    command -v nvcc >/dev/null || { echo "nvcc is not on the PATH: PyCUDA cannot be built"; return 1; }
    cuda_root=$(cuda_root) || { echo "no CUDA toolkit headers (include/cuda.h) found: set CUDA_HOME"; return 1; }
    drvlib=$(driver_lib_dir "$cuda_root") || { echo "no libcuda.so (driver or toolkit stub) to link PyCUDA with"; return 1; }
    inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] || { echo "no Python.h in $inc: PyCUDA cannot be built for $PY"; return 1; }
    compgen -G "$WHEELS/pycuda-*.tar.gz" >/dev/null ||
        { echo "no PyCUDA sdist in $WHEELS: run scripts/gpu_fetch.sh where pip works and carry .gpu_wheels"; return 1; }
    log "building PyCUDA against $cuda_root ($(nvcc --version | tail -1))"
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$BUILD/site" "$WHEELS"/*.whl ||
            return 1
    fi
    rm -rf "$BUILD/src" && mkdir -p "$BUILD/src" && tar xzf "$(compgen -G "$WHEELS/pycuda-*.tar.gz" | tail -1)" -C "$BUILD/src"
    src=$(compgen -G "$BUILD/src/pycuda-*" | head -1)
    if [ ! -f "$cuda_root/include/curand.h" ] || ! compgen -G "$cuda_root/lib*/libcurand.so*" >/dev/null; then
        curand=--no-cuda-enable-curand  # graphc does not use cuRAND
        log "no cuRAND headers or library under $cuda_root: PyCUDA without cuRAND"
    fi
    # shellcheck disable=SC2086  # $curand is empty or one option
    (cd "$src" && "$PY" configure.py --cuda-root="$cuda_root" --cudadrv-lib-dir="$drvlib" $curand >/dev/null &&
        "$PY" setup.py -q build_ext --inplace -j "$(nproc)") || return 1
    rm -rf "$BUILD/site/pycuda" && cp -r "$src/pycuda" "$BUILD/site/pycuda"
}

ensure_pycuda() {
    "$PY" -c "import pycuda.driver" 2>/dev/null || build_pycuda || return 1
    "$PY" -c "import pycuda, pycuda.autoprimaryctx, pycuda.driver as d
print('PyCUDA', pycuda.VERSION_TEXT, 'on', d.Context.get_device().name(), 'driver', d.get_driver_version())"
}

stage_setup() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    "$PY" --version
    ensure_pycuda || return 1
    # the graphc console script; the rest uses the checkout through PYTHONPATH
    "$PY" -m pip install -q --no-build-isolation --no-deps --no-index -e "$ROOT" || log "no editable install (PYTHONPATH used)"
    graphc run models/data/tiny_cnn.onnx --backend cuda --random-inputs --set N=4 &&
        graphc run models/data/tiny_cnn.onnx --backend cuda --tf32 --random-inputs --set N=4
}

stage_tests() {
    ensure_pycuda || return 1
    "$PY" -m pytest -q -m "cuda or nvcc" -p no:cacheprovider -rfEsx tests/cuda
}

stage_kernels()  { ensure_pycuda && "$PY" -m graphc.bench.cuda_kernels; }
stage_gemm()     { ensure_pycuda && "$PY" -m graphc.bench.cuda_gemm --markdown "$MD"; }
stage_training() { ensure_pycuda && "$PY" -m graphc.bench.cuda_training --markdown "$MD"; }
stage_models-a() { ensure_pycuda && "$PY" -m graphc.bench.cuda_models --models resnet50,squeezenet,shufflenet,bvlc_alexnet,zfnet512 --markdown "$MD"; }
stage_models-b() { ensure_pycuda && "$PY" -m graphc.bench.cuda_models --models densenet121,inception_v1,inception_v2,vgg19 --markdown "$MD"; }

STAGES=(setup tests kernels gemm training models-a models-b)
[ $# -gt 0 ] && [ "$1" != all ] && STAGES=("$@")
declare -A RC
for s in "${STAGES[@]}"; do
    if ! declare -F "stage_$s" >/dev/null; then
        echo "unknown stage '$s' (stages: setup tests kernels gemm training models-a models-b all)"; exit 2
    fi
done
for s in "${STAGES[@]}"; do
    log "stage $s"
    "stage_$s" 2>&1 | tee "$OUTDIR/$s.log"
    RC[$s]=${PIPESTATUS[0]}
done
echo
for s in "${STAGES[@]}"; do
    echo "stage $s: $([ "${RC[$s]}" = 0 ] && echo ok || echo "FAILED (exit ${RC[$s]})"): $OUTDIR/$s.log"
done
[ -f "$MD" ] && echo "benchmark sections: $MD"
for s in "${STAGES[@]}"; do [ "${RC[$s]}" = 0 ] || exit 1; done
