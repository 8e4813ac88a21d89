"""The GPU tests' dry run: with GRAPHC_GPU_DRYRUN=1 (scripts/gpu_check.sh --dry-run), the ``cuda``-marked tests
run here with the CPU emulator standing in for PyCUDA's device: an H100's launch geometry (blocks of 256
threads), memory not cleared, and, where nvcc is on the PATH, every kernel also compiled for sm_90 so that a
block its registers would not allow is refused as on the GPU. The same tests, the same plans and kernels as
on the device; only a test that talks to PyCUDA itself cannot run so (the check leaves it out)."""
from __future__ import annotations

import os
import shutil

DRY_RUN = os.environ.get("GRAPHC_GPU_DRYRUN", "") not in ("", "0")

if DRY_RUN:
    from graphc.runtime.cuda import device as _device
    from graphc.runtime.cuda.emulator import H100_PROPS, EmulatedDevice

    def _dry_run_device(cache=None):
        return EmulatedDevice(cache, props=H100_PROPS, check_registers="sm_90" if shutil.which("nvcc") else None)

    _device.PyCudaDevice = _dry_run_device
