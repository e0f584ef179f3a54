"""What the stages avoid on CPU costs, each timed in fresh processes.

    python benchmarks/bench_imports.py [--repeat 5]

- torch.optim.Adam's first step imports torch's compiler; the functional `adam` that stages/models.py
  calls (the same fused kernel) does not.
- torch.use_deterministic_algorithms(True), which the train stage switches on for CUDA only.
- The interpreter's teardown at a process's end, which stages/errors.py skips with os._exit once a
  stage has written its outputs: a whole process that imports a stage's libraries and ends either way.
"""

import argparse
import statistics
import subprocess
import sys
import time

SETUP = "import time, torch\np = [torch.nn.Parameter(torch.randn(16, 16))]\np[0].grad = torch.randn(16, 16)\n"
CALLS = {
    "torch.optim.Adam(fused=True), first step": "torch.optim.Adam(p, lr=0.01, fused=True).step()",
    "torch.optim.adam.adam(fused=True), first step": (
        "from torch.optim.adam import adam\n"
        "adam(p, [p[0].grad], [torch.zeros_like(p[0])], [torch.zeros_like(p[0])], [],"
        " [torch.zeros(())], fused=True, lr=0.01, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,"
        " amsgrad=False, maximize=False)"
    ),
    "torch.use_deterministic_algorithms(True)": "torch.use_deterministic_algorithms(True)",
}


def timed(call: str) -> float:
    code = SETUP + "start = time.perf_counter()\n" + call + "\nprint(time.perf_counter() - start)"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


ENDED = {  # what a stage's process has loaded when it ends
    "torch (train)": "import torch",
    "torchmetrics (evaluate)": "from torchmetrics.functional import classification",
    "matplotlib (plot, animate)": "import matplotlib.pyplot",
    "sklearn.datasets (generate moons)": "from sklearn.datasets import make_moons",
}


def process_seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, call in CALLS.items():
        samples = [timed(call) for _ in range(args.repeat)]
        print(f"{name:<48} median {statistics.median(samples):.3f} s over {args.repeat} fresh processes")
    print("a whole process that imports, then ends: with the interpreter's teardown, and with os._exit(0)")
    for name, code in ENDED.items():
        pairs = [(process_seconds(code), process_seconds(f"{code}; import os; os._exit(0)"))
                 for _ in range(args.repeat)]  # fmt: skip
        plain, quick = (statistics.median(column) for column in zip(*pairs, strict=True))
        print(f"  {name:<46} {plain:.3f} s, {quick:.3f} s with os._exit: {plain - quick:.3f} s of teardown")


if __name__ == "__main__":
    main()
