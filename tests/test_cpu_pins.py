"""The CPU pins of stages/__init__.py: in force inside every stage process, whatever the environment says."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, lock_outs, output_md5s, sh

from stages import CPU_PINS

CONFLICTING = {  # what a user's shell or another project might set: each would change the bytes
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OPENBLAS_CORETYPE": "Prescott",
}

# Run a stage as `python -m` does, then read back, inside that process, what torch and OpenBLAS chose.
RUN_AND_READ_BACK = """
import json, os, runpy, sys
try:  # sys.argv is ["-c", dataset], as the stage expects
    runpy.run_module(STAGE, run_name="__main__")
except SystemExit as exit:
    assert not exit.code, exit.code
seen = {name: os.environ.get(name) for name in PINS}
if "torch" in sys.modules:
    seen["torch"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
if "numpy" in sys.modules:
    from threadpoolctl import threadpool_info
    blas = [lib for lib in threadpool_info() if lib["internal_api"] == "openblas"]
    seen["openblas"] = [lib.get("architecture") for lib in blas]
print(json.dumps(seen))
"""


def test_importing_the_package_overrides_conflicting_values():
    code = "import os, stages; print(' '.join(os.environ[name] for name in stages.CPU_PINS))"
    env = {"PATH": "/usr/bin:/bin", **CONFLICTING}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.split() == list(CPU_PINS.values())


def test_pins_name_the_four_kernel_libraries_and_x86_64_with_avx2():
    assert CPU_PINS == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
    }


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("stage", "torch"), [("generate", False), ("train", True), ("evaluate", True), ("plot", False)]
)
def test_pins_are_in_force_inside_each_stage_process(rebuilt, stage, torch, monkeypatch):
    for name, value in CONFLICTING.items():
        monkeypatch.setenv(name, value)
    code = RUN_AND_READ_BACK.replace("STAGE", repr(f"stages.{stage}")).replace("PINS", repr(list(CPU_PINS)))
    seen = json.loads(sh(sys.executable, "-c", code, "moons", cwd=rebuilt).stdout)
    assert {name: seen[name] for name in CPU_PINS} == CPU_PINS
    assert seen["openblas"] and set(seen["openblas"]) == {"Haswell"}  # NumPy's OpenBLAS, in every stage
    if torch:
        assert seen["torch"] == "AVX2"


@pytest.mark.e2e
def test_stages_started_with_conflicting_values_write_the_committed_bytes(rebuilt, monkeypatch):
    for name, value in CONFLICTING.items():
        monkeypatch.setenv(name, value)
    for stage in ("train", "evaluate", "plot"):
        sh("dvc", "repro", "--force", "--single-item", "--no-run-cache", f"{stage}@spiral", cwd=rebuilt)
    written = output_md5s(rebuilt)
    for path, md5 in lock_outs(ROOT).items():
        if "spiral" in path:
            assert written[path] == md5, path
