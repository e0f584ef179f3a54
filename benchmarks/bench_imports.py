"""What two library calls that the stages avoid on CPU cost, each timed in a fresh process.

    python benchmarks/bench_imports.py [--repeat 5]

- torch.optim.Adam's first step imports torch's compiler; the functional `adam` that stages/models.py
  calls (the same fused kernel) does not.
- torch.use_deterministic_algorithms(True), which the train stage switches on for CUDA only.
"""

import argparse
import statistics
import subprocess
import sys

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for name, call in CALLS.items():
        samples = [timed(call) for _ in range(args.repeat)]
        print(f"{name:<48} median {statistics.median(samples):.3f} s over {args.repeat} fresh processes")


if __name__ == "__main__":
    main()
