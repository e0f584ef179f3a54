"""The CPU pins of stages/__init__.py: in force inside every stage process, whatever the environment says,
read back from the libraries themselves; set on x86-64 only."""

import json
import os
import platform
import re
import subprocess
import sys

import pytest
from conftest import ROOT, lock_outs, output_md5s, sh

from stages import CPU_PINS, pin_cpu_kernels

x86_64_only = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the pins apply to x86-64 CPUs only"
)

CONFLICTING = {  # what a user's shell or another project might set: each would change the bytes
    "ATEN_CPU_CAPABILITY": "default",
    "MKL_CBWR": "AUTO",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "OPENBLAS_CORETYPE": "Prescott",
}

# Run a stage's main() (its runner would end the process at once), then read back, inside that
# process, what torch and OpenBLAS chose.
RUN_AND_READ_BACK = """
import importlib, json, os, sys
importlib.import_module(STAGE).main(sys.argv[1])
seen = {name: os.environ.get(name) for name in PINS}
if "torch" in sys.modules:
    seen["torch"] = sys.modules["torch"].backends.cpu.get_cpu_capability()
if "numpy" in sys.modules:
    from threadpoolctl import threadpool_info
    blas = [lib for lib in threadpool_info() if lib["internal_api"] == "openblas"]
    seen["openblas"] = [lib.get("architecture") for lib in blas]
    seen["openblas_libraries"] = [lib["prefix"] for lib in blas]
print(json.dumps(seen))
"""


def test_importing_the_package_overrides_conflicting_values():
    code = "import os, stages; print(' '.join(os.environ[name] for name in stages.CPU_PINS))"
    env = {"PATH": "/usr/bin:/bin", **CONFLICTING}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.stdout.split() == list(CPU_PINS.values())


@pytest.mark.parametrize("machine", ["x86_64", "AMD64"])
def test_x86_64_machines_are_pinned(machine, monkeypatch):
    for name, value in CONFLICTING.items():
        monkeypatch.setenv(name, value)
    assert pin_cpu_kernels(machine) == CPU_PINS
    assert {name: os.environ[name] for name in CPU_PINS} == CPU_PINS


@pytest.mark.parametrize("machine", ["arm64", "aarch64", "ppc64le", "riscv64"])
def test_other_machines_are_left_alone(machine, monkeypatch):
    for name in CPU_PINS:
        monkeypatch.delenv(name, raising=False)
    assert pin_cpu_kernels(machine) == {}
    assert not any(name in os.environ for name in CPU_PINS)


def test_a_machine_reported_as_arm_imports_the_package_without_pins():
    code = (
        "import json, os, platform; platform.machine = lambda: 'arm64'; import stages;"
        "print(json.dumps([stages.PINNED, [os.environ.get(n) for n in stages.CPU_PINS]]))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert json.loads(result.stdout) == [{}, [None] * len(CPU_PINS)]


@x86_64_only
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("stage", "torch"),
    [("generate", False), ("train", True), ("evaluate", True), ("plot", False), ("baselines", False)],
)
def test_pins_are_in_force_inside_each_stage_process(rebuilt, stage, torch, monkeypatch):
    for name, value in CONFLICTING.items():
        monkeypatch.setenv(name, value)
    # MKL reports each call on stdout, with the code path it really ran (CNR:...): on a CPU that does
    # not support the requested one it falls back silently, and only this read-back shows it.
    monkeypatch.setenv("MKL_VERBOSE", "1")
    code = RUN_AND_READ_BACK.replace("STAGE", repr(f"stages.{stage}")).replace("PINS", repr(list(CPU_PINS)))
    stdout = sh(sys.executable, "-c", code, "moons", cwd=rebuilt).stdout
    seen = json.loads(stdout.splitlines()[-1])
    assert {name: seen[name] for name in CPU_PINS} == CPU_PINS
    assert seen["openblas"] and set(seen["openblas"]) == {"Haswell"}  # NumPy's OpenBLAS, in every stage
    if stage == "baselines":
        # SciPy's own OpenBLAS too, which scikit-learn loads (lbfgs's BLAS calls). The trees, the k-d
        # tree and libsvm are compiled loops; their one run-time choice is glibc's exp (libsvm's RBF
        # kernel, lbfgs's loss), its FMA variant on every CPU the Haswell pin runs on.
        assert "libscipy_openblas" in seen["openblas_libraries"], seen
    mkl_paths = re.findall(r"^MKL_VERBOSE .* CNR:(\S+)", stdout, flags=re.MULTILINE)
    if torch:
        assert seen["torch"] == "AVX2"
        assert mkl_paths, "no MKL call seen: the read-back reads nothing"
        assert set(mkl_paths) == {CPU_PINS["MKL_CBWR"]}
    else:
        assert not mkl_paths  # NumPy's stages never reach MKL


@x86_64_only
@pytest.mark.e2e
def test_stages_started_with_conflicting_values_write_the_committed_bytes(rebuilt, monkeypatch):
    for name, value in CONFLICTING.items():
        monkeypatch.setenv(name, value)
    for stage in ("train", "evaluate", "plot", "baselines"):
        sh("dvc", "repro", "--force", "--single-item", "--no-run-cache", f"{stage}@spiral", cwd=rebuilt)
    written = output_md5s(rebuilt)
    for path, md5 in lock_outs(ROOT).items():
        if "spiral" in path:
            assert written[path] == md5, path
