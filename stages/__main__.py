"""`python -m stages <stage> <dataset>`: what DVC's `cmd` runs. The same as `python -m stages.<stage>
<dataset>`, served by a warm worker that has imported the stages' libraries already (stages/worker.py,
docs/worker.md); BOUNDARY_LAB_WORKER=off runs the stage in this process."""

import sys
from importlib.util import find_spec

from stages.worker import run_stage

stage = sys.argv[1] if len(sys.argv) > 1 else ""
if not stage.isidentifier() or stage in ("worker", "__main__") or find_spec(f"stages.{stage}") is None:
    sys.exit("usage: python -m stages <stage> <dataset>")
run_stage(stage, sys.argv[2:])
