"""Boundary Lab's pipeline: one module per DVC stage plus the few shared modules they import.

Importing this package pins the CPU kernels, before torch or NumPy load (`python -m stages.<stage>`
imports it first). Which kernels torch, MKL, oneDNN and OpenBLAS pick depends on the CPU, and so do
the last bits of a sum; pinned, Intel and AMD x86-64 CPUs write the same bytes, so DVC's hashes,
run-cache and remotes work across a team (docs/reproducibility.md has the evidence and the cost).

The pins override the environment's values, so a stray MKL_CBWR in a shell cannot silently change
the outputs; editing CPU_PINS is a code change DVC sees (every stage reruns). They apply to x86-64
only: other CPUs have none of these code paths (torch warns about an x86 capability on ARM), run
their own kernels and write other bytes, reproducible among machines of their kind.
"""

import os
import platform

CPU_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    # MKL honours only AUTO and COMPATIBLE on non-Intel CPUs (AVX2 silently falls back to AUTO there).
    "MKL_CBWR": "COMPATIBLE",  # MKL's code path (torch's matrix products on CPU)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's, where torch uses it
    "OPENBLAS_CORETYPE": "Haswell",  # NumPy's OpenBLAS (generate, split, the plot stage's forward pass)
}
X86_64 = ("x86_64", "amd64")  # platform.machine() on Linux and macOS; on Windows


def pin_cpu_kernels(machine: str) -> dict[str, str]:
    """Set the pins in this process's environment on an x86-64 machine; return what was set."""
    if machine.lower() not in X86_64:
        return {}
    os.environ.update(CPU_PINS)
    return CPU_PINS


PINNED = pin_cpu_kernels(platform.machine())
