#!/usr/bin/env bash
# The on-device check: ONE call on a bare, offline GPU machine, under 9 minutes on one H100. Prepare first, here:
#
#   bash scripts/gpu_prepare.sh                  # .gpu_carry/: PyCUDA wheel (cp312), its wheels, kernel cache
#   run(command="bash scripts/gpu_check.sh", carry=[".gpu_carry"], timeout_s=600)        # the device tool
#   bash scripts/gpu_check.sh --dry-run          # here: the same stages on the CPU emulator, smaller sizes
#
# Stages, in order, each under a timeout (seconds; the whole check never runs past $GPU_CHECK_BUDGET, 510 s):
#   setup 60     install the carried wheels and graphc into a temporary path, print the device, check that
#                the device's nvcc is the one that keyed the carried kernel cache
#   models 90    python -m graphc run: tiny_cnn (N=4) and squeezenet, each again with --tf32
#   tests 240    pytest -m cuda tests/cuda on the warm cache: --timeout 150 a test, --maxfail 20
#   gemm 45      python -m graphc.bench.cuda_gemm (n=4096, against PyTorch) -> RESULTS-gpu.md
#   kernels 45   python -m graphc.bench.cuda_kernels (fused chain, Softmax, LayerNorm, compile cold/warm)
#   sanitizer    only if a test faulted (illegal address, launch failure...): that test again under
#                compute-sanitizer (memcheck), with what time is left
# Each stage's output goes to $OUT/STAGE.log as it runs and a line to $OUT/summary.txt when it ends (at most 8
# files come back from the device: summary.txt, 6 logs, RESULTS-gpu.md). Training and the whole-model
# benchmarks against PyTorch are scripts/gpu_bench.sh, for a second call.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=${GPU_CHECK_DRY_RUN:-0}
[ "${1:-}" = --dry-run ] && { DRY=1; shift; }
PY=${PYTHON:-python3}
CARRY=${GPU_CARRY:-$ROOT/.gpu_carry}
OUTDIR=${OUT:-$ROOT/gpu-results}
BUDGET=${GPU_CHECK_BUDGET:-510}
MD=$OUTDIR/RESULTS-gpu.md
SUMMARY=$OUTDIR/summary.txt
mkdir -p "$OUTDIR"
: >"$SUMMARY"
T0=$(date +%s)
TMP=$(mktemp -d /tmp/graphc-gpu-check.XXXXXX)
SITE=$TMP/site
WORK=$TMP/work
export GRAPHC_CACHE_DIR=$TMP/kernel-cache
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
if [ "$DRY" = 1 ]; then
    export GRAPHC_CUDA_EMULATE=h100 GRAPHC_GPU_DRYRUN=1  # the emulator with an H100's launch geometry
else
    unset GRAPHC_CUDA_EMULATE GRAPHC_GPU_DRYRUN
fi

log() { echo "== $(date -u +%H:%M:%S) (+$(($(date +%s) - T0)) s) $*"; }
left() { echo $((BUDGET - ($(date +%s) - T0))); }

stage_setup() {
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" --version
    local wheels=$CARRY/wheels
    if compgen -G "$wheels/*.whl" >/dev/null; then
        if [ "$DRY" = 1 ]; then  # PyCUDA's and siphash24's wheels are for the device's Python 3.12: the others here
            "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --target "$SITE" \
                "$wheels"/*-py3-none-any.whl || return 1
        else
            "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --target "$SITE" \
                "$wheels"/*.whl || return 1
        fi
    else
        echo "no wheels in $wheels: run scripts/gpu_prepare.sh here and carry .gpu_carry"; [ "$DRY" = 1 ] || return 1
    fi
    # graphc itself: its folders map onto one package (pyproject.toml's package-dir), which a checkout on PYTHONPATH
    # is not; the same mapping made of links in $SITE (no build, no console script: python -m graphc)
    "$PY" - "$ROOT" "$SITE" <<'PYEOF' || return 1
import os, sys, tomllib
root, site = sys.argv[1:]
with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    folders = tomllib.load(f)["tool"]["setuptools"]["package-dir"]
top = os.path.join(site, "graphc")
os.makedirs(top, exist_ok=True)
for entry in os.listdir(os.path.join(root, folders["graphc"])):
    os.symlink(os.path.join(root, folders["graphc"], entry), os.path.join(top, entry))
for package, folder in folders.items():
    if package != "graphc":
        os.symlink(os.path.join(root, folder), os.path.join(site, *package.split(".")))
PYEOF
    # The stages run in $WORK, not in the checkout: there a folder graphc/ (the core alone, without runtime/ and the
    # rest that the install maps into it) would shadow the installed package. $WORK has a copy of tests/ and
    # links to the data the tests and stages read.
    mkdir -p "$WORK" && cp -r "$ROOT/tests" "$WORK/" || return 1
    for f in models docs scripts README.md pyproject.toml; do [ -e "$ROOT/$f" ] && ln -sfn "$ROOT/$f" "$WORK/$f"; done
    (cd "$WORK" && "$PY" -c "import graphc.runtime.cuda; print('graphc', graphc.__version__, 'from', graphc.__file__)") ||
        return 1
    mkdir -p "$GRAPHC_CACHE_DIR"
    if [ -f "$CARRY/kernel-cache.tar.xz" ]; then
        tar xJf "$CARRY/kernel-cache.tar.xz" -C "$GRAPHC_CACHE_DIR" --strip-components=1 || return 1
        echo "kernel cache: $(find "$GRAPHC_CACHE_DIR" -name '*.cubin' | wc -l) binaries carried"
    else
        echo "no carried kernel cache ($CARRY/kernel-cache.tar.xz): every kernel compiles here"
    fi
    local here keyed
    here=$(nvcc --version 2>/dev/null | tail -1)
    keyed=$(cat "$CARRY/nvcc-version" 2>/dev/null)
    if [ "$here" = "$keyed" ]; then
        echo "nvcc: $here (the carried cache's key)"
    else
        echo "WARNING: nvcc here is '$here' but the cache was keyed for '$keyed': every kernel compiles here (slower)"
    fi
    if [ "$DRY" = 1 ]; then
        echo "dry run: the CPU emulator with an H100's launch geometry stands in for the device"
        return 0
    fi
    "$PY" -c "import pycuda, pycuda.autoprimaryctx, pycuda.driver as d
print('PyCUDA', pycuda.VERSION_TEXT, 'on', d.Context.get_device().name(), 'driver', d.get_driver_version())"
}

stage_models() {
    local tiny=$ROOT/models/data/tiny_cnn.onnx sq n=4 rc=0
    [ "$DRY" = 1 ] && n=1
    sq=$("$PY" -c "from graphc.models.light import path; print(path('squeezenet'))") || return 1
    for args in "$tiny --set N=$n" "$tiny --set N=$n --tf32" "$sq" "$sq --tf32"; do
        log "python -m graphc run $args"
        # shellcheck disable=SC2086  # $args is a model path and options
        "$PY" -m graphc run $args --backend cuda --random-inputs || rc=1
    done
    return $rc
}

stage_tests() {
    local select=(tests/cuda -m cuda) per_test=150
    if [ "$DRY" = 1 ]; then  # the emulator stands in for PyCUDA: the case tests, not the 1,267 node cases
        # (and not TF32's precision, which the emulator's NumPy GEMMs do not model)
        select=(tests/cuda/test_cuda_gpu.py tests/cuda/test_cuda_gemm.py -m cuda
                -k "not node_cases and not primary and not tf32_off_is_exact")
    fi
    "$PY" -m pytest -q -p no:cacheprovider -rfE --timeout "$per_test" --maxfail 20 "${select[@]}"
}

stage_gemm() {
    local smoke=()
    [ "$DRY" = 1 ] && smoke=(--smoke)
    "$PY" -m graphc.bench.cuda_gemm "${smoke[@]}" --markdown "$MD"
}

# the second call's stages (scripts/gpu_bench.sh): training and the whole-model benchmarks against PyTorch
stage_training() { "$PY" -m graphc.bench.cuda_training $([ "$DRY" = 1 ] && echo --smoke) --markdown "$MD"; }
stage_models-a() { "$PY" -m graphc.bench.cuda_models --models resnet50,squeezenet,shufflenet,bvlc_alexnet,zfnet512 \
                       --markdown "$MD"; }
stage_models-b() { "$PY" -m graphc.bench.cuda_models --models densenet121,inception_v1,inception_v2,vgg19 --markdown "$MD"; }
stage_models-smoke() { "$PY" -m graphc.bench.cuda_models --smoke --markdown "$MD"; }

stage_kernels() {
    local smoke=()
    [ "$DRY" = 1 ] && smoke=(--smoke)
    "$PY" -m graphc.bench.cuda_kernels "${smoke[@]}"
}

#: what a kernel fault looks like in a test's failure (PyCUDA's LaunchError and the driver's names for it)
FAULT='illegal memory access|illegal address|ILLEGAL_ADDRESS|LAUNCH_FAILED|launch failed|unspecified launch failure|misaligned address|LaunchError|out of bounds'

stage_sanitizer() {
    local id
    id=$(grep -E "^(FAILED|ERROR) " "$OUTDIR/tests.log" | grep -E "$FAULT" | head -1 | sed -E 's/^(FAILED|ERROR) ([^ ]+).*/\2/')
    [ -n "$id" ] || { echo "no test faulted: nothing to rerun"; return 0; }
    echo "rerunning $id under compute-sanitizer (memcheck)"
    command -v compute-sanitizer >/dev/null || { echo "compute-sanitizer is not on the PATH"; return 1; }
    compute-sanitizer --tool memcheck --print-limit 20 --error-exitcode 99 \
        "$PY" -m pytest -q -p no:cacheprovider -x "$id"
}

run_stage() {  # name, timeout: runs stage_NAME under min(timeout, what is left), logs it, notes it in the summary
    local name=$1 limit=$2 t rc
    local budget
    budget=$(left)
    [ "$limit" -gt "$budget" ] && limit=$budget
    if [ "$limit" -lt 5 ]; then
        printf '%-10s SKIPPED (no time left of %s s)\n' "$name" "$BUDGET" | tee -a "$SUMMARY"
        RC=1
        return
    fi
    log "stage $name (timeout ${limit} s)"
    t=$(date +%s)
    # the stage runs in a child bash under timeout, with this script's functions and variables (exported)
    mkdir -p "$WORK"
    (cd "$WORK" && exec timeout --kill-after=5 "$limit" bash -c "stage_$name") >"$OUTDIR/$name.log" 2>&1 &
    local pid=$!
    tail -n +1 -f --pid=$pid "$OUTDIR/$name.log" 2>/dev/null
    wait $pid
    rc=$?
    local status=ok
    [ $rc = 0 ] || status="FAILED (exit $rc)"
    [ $rc = 124 ] || [ $rc = 137 ] && status="TIMED OUT after $limit s"
    [ $rc = 0 ] || RC=1
    printf '%-10s %-28s %4d s  %s\n' "$name" "$status" $(($(date +%s) - t)) "$name.log" | tee -a "$SUMMARY"
}

export DRY PY CARRY ROOT OUTDIR BUDGET MD TMP SITE WORK T0 FAULT
export -f log left stage_setup stage_models stage_tests stage_gemm stage_kernels stage_sanitizer stage_training \
    stage_models-a stage_models-b stage_models-smoke
RC=0
log "graphc GPU check$([ "$DRY" = 1 ] && echo ' (dry run on the emulator)'), budget $BUDGET s, results in $OUTDIR"
run_stage setup 60
if grep -q "^setup .* ok " "$SUMMARY"; then
    if [ -n "${GPU_CHECK_STAGES:-}" ]; then  # scripts/gpu_bench.sh: other stages, "name:timeout" each
        for st in $GPU_CHECK_STAGES; do run_stage "${st%%:*}" "${st##*:}"; done
    else
        run_stage models 90
        run_stage tests 240
        run_stage gemm 45
        run_stage kernels 45
        if grep -Eq "^(FAILED|ERROR) .*($FAULT)" "$OUTDIR/tests.log" 2>/dev/null; then
            run_stage sanitizer "$(left)"
        fi
    fi
else
    echo "setup failed: the other stages need it (see setup.log)" | tee -a "$SUMMARY"
fi
echo "total $(($(date +%s) - T0)) s" | tee -a "$SUMMARY"
[ -f "$MD" ] && echo "benchmark sections: $MD (copy them into bench/RESULTS.md, the device named)"
rm -rf "$TMP"
exit $RC
