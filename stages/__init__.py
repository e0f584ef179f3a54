"""Boundary Lab's pipeline: one module per DVC stage plus the few shared modules they import.

Importing this package pins the CPU kernels. `python -m stages.<stage>` imports it before the stage
module, so before torch or NumPy load. Which kernels torch (ATen's dispatch), MKL, oneDNN and
NumPy's OpenBLAS pick depends on the CPU, and so do the last bits of a sum. Pinned to AVX2, which
every x86-64 CPU since 2013 has, machines with other CPUs write the same bytes, and DVC's hashes,
run-cache and remotes work across a team. Measured: a cold `dvc repro` on two different Xeons
(AVX-512) wrote the same 22 outputs with these pins and different train, evaluate and plot outputs
without them. The pinned paths cost about 3% of training time there. MKL_CBWR=COMPATIBLE would also
cover CPUs without AVX2, but it made train@spiral 75% slower.

These values override the environment's: a stray MKL_CBWR or ATEN_CPU_CAPABILITY in a user's shell
cannot silently change the outputs. To run other kernels, edit CPU_PINS here. That is a code
change DVC sees: every stage reruns, and the outputs are expected to differ from dvc.lock.
"""

import os

CPU_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels
    "MKL_CBWR": "AVX2",  # MKL's code path (torch's matrix products on CPU)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's, where torch uses it
    "OPENBLAS_CORETYPE": "Haswell",  # NumPy's OpenBLAS (the plot stage's forward pass)
}
os.environ.update(CPU_PINS)
