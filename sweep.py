"""A grid of DVC experiments on Ray: this machine's cores, or a cluster's.

    python -m sweep -S 'datasets.moons.train.lr=0.005,0.01,0.02' -S 'datasets.moons.train.epochs=500,1000'
                    [--name sweep] [--address HOST:PORT] [--retries 2] [--json summary.json]

The grid is written as for `dvc exp run --queue -S` (a comma list sweeps a key, several -S make the
product) and parsed by DVC's own code. DVC's queue runs on one machine only, so this follows its cloud
pattern instead: every trial is a Ray task (one CPU) that clones `origin` at HEAD into a temp dir on
its node, runs `dvc exp run --pull --allow-missing -S ... -n <name>-<i>` there, pushes the outputs and
the run-cache to the default DVC remote, and pushes the experiment's git ref last, so that a ref on
origin never points at data not yet pushed. The driver then pulls the experiments into this repo,
where `dvc exp show` lists them, as it does in any clone after `dvc exp pull origin`.

No --address starts Ray here with this machine's cores; --address joins a cluster (`ray start --head`
on one node, `ray start --address <head>:6379` on the others; KubeRay; Ray on Slurm). Every node needs
this venv at the same path (workers run `dvc` from the driver's bin dir) and access to origin and the
DVC remote (a local-directory remote must be an absolute path, on a shared filesystem for a cluster).

Before starting, the sweep refuses with one line on stderr, and runs nothing, when: the workspace is
not clean and committed (workers clone the commit, not the workspace), HEAD is not on a branch of
origin, there is no default DVC remote in .dvc/config, an experiment name is taken on origin, or a
-S key does not exist in params.yaml (a typo: `unknown key datasets.moons.train.epochz; allowed: ...`,
the schema's own message, as `dvc repro` prints it). A bad *value* fails only its own point: that point
is reported with the schema's one-line error and not run, the others run, and the exit status is 1.
So is it when a trial's experiment fails (its stage's `error: ...` line is reported). A worker that
dies is retried --retries times; Ctrl-C cancels every trial, and an unfinished trial pushes nothing.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PARAMS = "params.yaml"
KEY_ERROR = re.compile(r": (unknown|missing) key ")  # a typo in a key, as opposed to a bad value


class Refusal(Exception):
    """Why the sweep cannot start: one line for the user."""


def main(argv=None):
    args = parse_args(argv)
    try:
        root, origin, commit, sweeps, invalid = preflight(args)
    except Refusal as why:
        sys.exit(f"error: {why}")
    names = [f"{args.name}-{i + 1}" for i in range(len(sweeps))]
    results = [None] * len(sweeps)
    for i, error in invalid.items():  # bad values: reported as failed trials, never run
        results[i] = dict(name=names[i], ok=False, error=error)
        progress(sum(r is not None for r in results), len(sweeps), results[i])

    todo = [i for i in range(len(sweeps)) if i not in invalid]
    if todo:
        for result in run_on_ray(args, origin, commit, [(names[i], sweeps[i]) for i in todo], len(invalid)):
            results[names.index(result["name"])] = result
        landed = [r["name"] for r in results if r["ok"]]
        if landed:  # brings the experiments to this repo's `dvc exp show`, as in any teammate's clone
            git_or_dvc("dvc", "exp", "pull", "--quiet", "origin", *landed, cwd=root)

    for i, result in enumerate(results):
        result["overrides"] = sweeps[i]
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    sys.exit(0 if all(r["ok"] for r in results) else 1)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m sweep", description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set-param", action="append", required=True, dest="params",
                        help="a param override as in `dvc exp run -S`; a comma list sweeps it")  # fmt: skip
    parser.add_argument("--name", default="sweep", help="experiments are named <name>-1 .. <name>-N")
    parser.add_argument("--address", help="a Ray cluster (host:port); default: start Ray on this machine")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a trial whose worker died")
    parser.add_argument("--json", help="also write every trial's result (node, times, metrics) here")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- before anything runs


def preflight(args):
    """(repo root, origin URL, HEAD, the grid, {point: its params error}) or a Refusal."""
    root = Path(git_or_dvc("git", "rev-parse", "--show-toplevel", cwd=".").strip())
    sweeps = grid(args.params)
    if git_or_dvc("git", "status", "--porcelain", cwd=root).strip():
        raise Refusal("the workspace has changes (git status): commit them and push to origin first")
    url = git_or_dvc("git", "remote", "get-url", "origin", cwd=root, refuse="no git remote 'origin'").strip()
    if (root / url).is_dir():  # a local origin: workers clone it from anywhere on this machine
        url = str((root / url).resolve())
    commit = git_or_dvc("git", "rev-parse", "HEAD", cwd=root).strip()
    if not git_or_dvc("git", "branch", "-r", "--contains", commit, "--list", "origin/*", cwd=root).strip():
        raise Refusal(f"commit {commit[:7]} is not on origin: `git push origin` first (workers clone it)")
    remote = git_or_dvc("dvc", "config", "--project", "core.remote", cwd=root, check=False).strip()
    if not remote:
        raise Refusal("no default DVC remote in .dvc/config: `dvc remote add -d <name> <url>`, commit, push")
    where = git_or_dvc("dvc", "config", "--project", f"remote.{remote}.url", cwd=root, check=False).strip()
    if "://" not in where and not os.path.isabs(where):
        raise Refusal(f"DVC remote '{remote}' is the relative path {where}: workers need an absolute one")
    taken = git_or_dvc("git", "ls-remote", url, f"refs/exps/{commit[:2]}/{commit[2:]}/*", cwd=root)
    taken = {line.rsplit("/", 1)[-1] for line in taken.splitlines()} & {
        f"{args.name}-{i + 1}" for i in range(len(sweeps))
    }
    if taken:
        raise Refusal(f"experiment {min(taken)} of this commit is already on origin: choose another --name")
    return root, url, commit, sweeps, check_params(root, sweeps)


def grid(params):
    """The points of `-S` overrides, by DVC's own parser: [{'params.yaml': ['a.b=1', ...]}, ...]."""
    from dvc.exceptions import InvalidArgumentError  # noqa: PLC0415 - DVC loads in ~0.3 s; --help needn't
    from dvc.utils.cli_parse import to_path_overrides  # noqa: PLC0415
    from dvc.utils.hydra import get_hydra_sweeps  # noqa: PLC0415
    from hydra.errors import HydraException  # noqa: PLC0415

    try:
        return get_hydra_sweeps(to_path_overrides(params))
    except (InvalidArgumentError, HydraException) as error:
        raise Refusal(f"-S {' '.join(params)}: {str(error).splitlines()[0]}") from None


def check_params(root, sweeps):
    """Each point's params.yaml checked by the stages' own schema. A key that does not exist refuses
    the whole sweep (each override is tried alone first, so that no bad value elsewhere hides the typo);
    a bad value fails its point only. Returns {point: error line}."""
    import yaml  # noqa: PLC0415
    from dvc.exceptions import InvalidArgumentError  # noqa: PLC0415

    from stages.params import ParamsError, parse_params  # noqa: PLC0415

    def error_of(overrides):
        try:
            parse_params(applied(base, overrides))
        except ParamsError as error:
            return f"error: {error}"
        except InvalidArgumentError:  # DVC's own refusal, e.g. a list where a mapping is
            return f"error: -S {' '.join(overrides)}: DVC cannot apply it to {PARAMS}"

    base = yaml.safe_load((root / PARAMS).read_text())
    if error := error_of([]):
        raise Refusal(error.removeprefix("error: "))
    invalid = {}
    for i, point in enumerate(sweeps):
        overrides = point.get(PARAMS, [])
        for override in overrides:
            if (error := error_of([override])) and KEY_ERROR.search(error):
                raise Refusal(error.removeprefix("error: "))
        if error := error_of(overrides):
            invalid[i] = error
    return invalid


def applied(params, overrides):
    """params with the overrides applied by DVC's own code, as `dvc exp run -S` applies them, except that
    a key that does not exist is added (`+key=value`; DVC would refuse it with a Hydra message) so that
    the schema can name it."""
    import yaml  # noqa: PLC0415
    from dvc.utils.hydra import apply_overrides  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PARAMS
        path.write_text(yaml.safe_dump(params))
        apply_overrides(path, [o if exists(params, o.split("=", 1)[0]) else f"+{o}" for o in overrides])
        return yaml.safe_load(path.read_text())


def exists(params, key):
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return False
        params = params[part]
    return True


def git_or_dvc(*cmd, cwd, check=True, refuse=None):
    """A command's stdout; on failure a Refusal with `refuse` or its last line of stderr."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if check and result.returncode:
        lines = result.stderr.strip().splitlines() or [f"{cmd[0]} exited {result.returncode}"]
        raise Refusal(refuse or f"{' '.join(cmd[:3])}: {lines[-1]}")
    return result.stdout


# ----------------------------------------------------------------------------- the trials, on Ray


def run_on_ray(args, origin, commit, trials, done):
    """Yields each trial's result as it finishes, printing a progress line."""
    import ray  # noqa: PLC0415 - only a sweep that runs pays for Ray (~1 s)

    # Ray's raylet, not only the worker, must reap a force-cancelled trial's `dvc` and its stage.
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper", "true")
    local = dict(address="local", include_dashboard=False) if not args.address else dict(address=args.address)
    try:
        ray.init(**local, logging_level="ERROR", log_to_driver=False, configure_logging=True)
    except (ConnectionError, RuntimeError) as error:  # no cluster there, or a wrong auth token
        sys.exit(f"error: Ray at {args.address or 'this machine'}: {str(error).splitlines()[0]}")
    task = ray.remote(num_cpus=1, max_retries=args.retries)(trial)
    env = worker_env()
    pending = {task.remote(origin, commit, name, point, env): name for name, point in trials}
    total = len(trials) + done
    try:
        while pending:
            [ready], _ = ray.wait(list(pending))
            name = pending.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayError as error:  # the worker died more than --retries times
                lines = str(error).strip().splitlines() or [type(error).__name__]
                result = dict(name=name, ok=False, error=f"worker died ({lines[0]})")
            done += 1
            progress(done, total, result)
            yield result
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)  # kills the worker: it never reaches its push
        sys.exit(f"interrupted: {len(pending)} trials cancelled, {done} finished (those are on origin)")
    finally:
        ray.shutdown()


def worker_env():
    """What a trial's commands need from the driver: its venv's `dvc` and python, and a git identity
    for the experiment's commit (a worker node may have no ~/.gitconfig)."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    for key in ("name", "email"):
        configured = subprocess.run(["git", "config", f"user.{key}"], capture_output=True, text=True).stdout
        for who in ("AUTHOR", "COMMITTER"):
            if value := os.environ.get(f"GIT_{who}_{key.upper()}") or configured.strip():
                env[f"GIT_{who}_{key.upper()}"] = value
    return env


def trial(origin, commit, name, point, env):
    """One grid point, on a worker: clone, `dvc exp run`, push data then the ref. Returns its result."""
    import ray  # noqa: PLC0415

    start = time.perf_counter()
    node = ray.get_runtime_context().get_node_id()
    result = dict(name=name, node=node, host=socket.gethostname(), pid=os.getpid(), timings={})
    with tempfile.TemporaryDirectory(prefix=f"sweep-{name}-") as tmp:
        repo = Path(tmp) / "repo"
        steps = {
            "clone": ("git", "clone", "--quiet", "--no-checkout", origin, str(repo)),
            "checkout": ("git", "checkout", "--quiet", "--detach", commit),
            "exp run": ("dvc", "exp", "run", "--pull", "--allow-missing", *set_params(point), "--name", name),
            # Outputs and run-cache first, the experiment's git ref last: a ref on origin always has its data.
            "push data": ("dvc", "push", "--quiet", "--run-cache"),
            "push ref": ("dvc", "exp", "push", "--quiet", "--no-cache", "--force", "origin", name),
        }
        for step, cmd in steps.items():
            began = time.perf_counter()
            cwd = tmp if step == "clone" else repo
            done = subprocess.run(cmd, cwd=cwd, env=os.environ | env, capture_output=True, text=True)
            result["timings"][step] = round(time.perf_counter() - began, 3)
            if done.returncode:
                return result | dict(ok=False, error=error_line(done))
        metrics = {p.name: json.loads(p.read_text()) for p in sorted((repo / "metrics").glob("*.json"))}
    return result | dict(ok=True, seconds=round(time.perf_counter() - start, 2), metrics=metrics)


def set_params(point):
    """A grid point back as `dvc exp run` arguments."""
    return [arg for path, overrides in point.items() for o in overrides
            for arg in ("-S", o if path == PARAMS else f"{path}:{o}")]  # fmt: skip


def error_line(done):
    """The one line that says why a command failed: the stage's own `error: ...` if there is one."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    for prefix in ("error: ", "ERROR: "):
        if found := [line for line in lines if line.startswith(prefix)]:
            return found[-1] if prefix == "error: " else found[0]
    return lines[-1] if lines else f"exited {done.returncode}"


# ----------------------------------------------------------------------------- what the user sees


def progress(done, total, result):
    outcome = f"done in {result['seconds']:.1f} s" if result["ok"] else f"failed: {result['error']}"
    print(f"[{done}/{total}] {result['name']} {outcome}", file=sys.stderr, flush=True)


def table(results):
    """The sweep's experiments as `dvc exp show --only-changed --md` would show them: the params set,
    then test and generalization accuracy of each metrics file where the experiments differ."""
    given = [dict(o.split("=", 1) for p in r["overrides"].values() for o in p) for r in results]
    keys = list(dict.fromkeys(key for point in given for key in point))
    files = sorted({f for r in results if r["ok"] for f in r["metrics"]})
    scores = [
        [r["metrics"][f][section]["accuracy"] if r["ok"] else "-" for r in results]
        for f in files
        for section in ("test", "generalization")
    ]
    names = [f"{Path(f).stem} {section}.accuracy" for f in files for section in ("test", "generalization")]
    changed = [i for i, column in enumerate(scores) if len(set(column) - {"-"}) > 1]
    header = ["Experiment", *keys, *(names[i] for i in changed), "time", "node"]
    rows = [
        [r["name"], *(point.get(k, "") for k in keys), *(scores[i][row] for i in changed)]
        + [f"{r['seconds']:.1f} s" if r["ok"] else "failed", r.get("node", "-")[:8]]
        for row, (r, point) in enumerate(zip(results, given, strict=True))
    ]
    widths = [max(len(str(row[c])) for row in [header, *rows]) for c in range(len(header))]
    return "\n".join(
        "| " + " | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) + " |"
        for row in [header, ["-" * w for w in widths], *rows]
    )


if __name__ == "__main__":
    main()
