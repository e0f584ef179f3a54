"""A grid of DVC experiments on Ray: this machine's cores, or a cluster's.

    python -m sweep -S 'datasets.moons.train.lr=0.005,0.01,0.02' -S 'datasets.moons.train.epochs=500,1000'
                    [--name sweep] [--address HOST:PORT] [--retries 2] [--timeout 3600] [--json summary.json]

The grid is written as for `dvc exp run --queue -S` (a comma list sweeps a key, several -S make the
product) and parsed by DVC's own code. DVC's queue runs on one machine only, so this follows its cloud
pattern instead: every trial is a Ray task (one CPU) that clones `origin` at HEAD into a temp dir on
its node, runs `dvc exp run --pull --allow-missing -S ... -n <name>-<i>` there, pushes the outputs and
the run-cache to the default DVC remote, and pushes the experiment's git ref last, so that a ref on
origin never points at data not yet pushed. The driver then pulls the experiments that are on origin
into this repo, where `dvc exp show` lists them, and prints one table. docs/sweep.md is the reference:
cluster set-up, and what reaches origin and the DVC remote at each point of a trial.

Before starting, the sweep refuses with one line on stderr, and runs nothing, when: the workspace is
not clean and committed, HEAD is not on a branch of origin, there is no default DVC remote in
.dvc/config, an experiment name is taken on origin, or a -S key does not exist in params.yaml. A bad
*value* fails only its own point (the schema's one line; not run). Every other failure is one line
too, and the table and --json are still written: a trial's failed step (a stage's `error: ...`), a
step that runs past --timeout, a trial that raised, a worker that died more than --retries times, the
final `dvc exp pull`. A failed `dvc exp run` still pushes its run-cache, so that a rerun restores the
stages that had finished. Ctrl-C cancels the running trials (each kills its command and pushes nothing
more), pulls and shows the ones that landed, and exits 130. Any failure exits 1.
"""

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from stages.errors import UserError

PARAMS = "params.yaml"
KEY_ERROR = re.compile(r": (unknown|missing) key ")  # a typo in a key, as opposed to a bad value
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")  # `dvc exp run`'s own words
GRACE = 10  # seconds a stopped trial has to kill its command and return before its worker is killed


def main(argv=None):
    args = parse_args(argv)
    try:
        root, origin, commit, sweeps, invalid = preflight(args)
    except UserError as why:
        sys.exit(f"error: {why}")
    except KeyboardInterrupt:
        sys.exit(130)
    names = [f"{args.name}-{i + 1}" for i in range(len(sweeps))]
    results = [None] * len(sweeps)
    for i, error in invalid.items():  # bad values: reported as failed trials, never run
        results[i] = dict(name=names[i], ok=False, error=error)
        progress(sum(r is not None for r in results), len(sweeps), results[i])

    interrupted, status = False, 0
    todo = [i for i in range(len(sweeps)) if i not in invalid]
    if todo:
        try:
            trials = [(names[i], sweeps[i]) for i in todo]
            finished, interrupted = run_on_ray(args, origin, commit, trials, len(invalid))
        except UserError as why:
            sys.exit(f"error: {why}")
        for result in finished:
            results[names.index(result["name"])] = result
        try:
            landed = pull_landed(args, root, origin, commit, results)
        except UserError as why:
            print(f"error: {why}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("interrupted: the experiments were not pulled: `dvc exp pull origin`", file=sys.stderr)
            interrupted = True
        else:
            if interrupted:
                print(f"interrupted: {len(landed)} experiments on origin, pulled here", file=sys.stderr)

    for i, result in enumerate(results):
        result["overrides"] = sweeps[i]
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    sys.exit(130 if interrupted else status or (0 if all(r["ok"] for r in results) else 1))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m sweep", description=__doc__.splitlines()[0])
    parser.add_argument("-S", "--set-param", action="append", required=True, dest="params",
                        help="a param override as in `dvc exp run -S`; a comma list sweeps it")  # fmt: skip
    parser.add_argument("--name", default="sweep", help="experiments are named <name>-1 .. <name>-N")
    parser.add_argument("--address", help="a Ray cluster (host:port); default: start Ray on this machine")
    parser.add_argument("--retries", type=int, default=2, help="reruns of a trial whose worker died")
    parser.add_argument("--timeout", type=float, default=3600,
                        help="seconds any one git or dvc command may run, here or in a trial")  # fmt: skip
    parser.add_argument("--json", help="also write every trial's result (node, times, metrics) here")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- before anything runs


def preflight(args):
    """(repo root, origin URL, HEAD, the grid, {point: its params error}) or a UserError."""
    run = dict(timeout=args.timeout)
    root = Path(git_or_dvc("git", "rev-parse", "--show-toplevel", cwd=".", **run).strip())
    sweeps = grid(args.params)
    if git_or_dvc("git", "status", "--porcelain", cwd=root, **run).strip():
        raise UserError("the workspace has changes (git status): commit them and push to origin first")
    url = git_or_dvc("git", "remote", "get-url", "origin", cwd=root, refuse="no git remote 'origin'", **run)
    if (root / url.strip()).is_dir():  # a local origin: workers clone it from anywhere on this machine
        url = str((root / url.strip()).resolve())
    url = url.strip()
    commit = git_or_dvc("git", "rev-parse", "HEAD", cwd=root, **run).strip()
    if not git_or_dvc(
        "git", "branch", "-r", "--contains", commit, "--list", "origin/*", cwd=root, **run
    ).strip():
        raise UserError(f"commit {commit[:7]} is not on origin: `git push origin` first (workers clone it)")
    remote = git_or_dvc("dvc", "config", "--project", "core.remote", cwd=root, check=False, **run).strip()
    if not remote:
        raise UserError(
            "no default DVC remote in .dvc/config: `dvc remote add -d <name> <url>`, commit, push"
        )
    where = git_or_dvc("dvc", "config", "--project", f"remote.{remote}.url", cwd=root, check=False, **run)
    if "://" not in where and not os.path.isabs(where.strip()):
        raise UserError(
            f"DVC remote '{remote}' is the relative path {where.strip()}: workers need an absolute one"
        )
    names = [f"{args.name}-{i + 1}" for i in range(len(sweeps))]
    if taken := on_origin(root, url, commit, names, args.timeout):
        raise UserError(f"experiment {min(taken)} of this commit is already on origin: choose another --name")
    return root, url, commit, sweeps, check_params(root, sweeps)


def on_origin(root, origin, commit, names, timeout):
    """Which of these experiments of this commit origin holds."""
    refs = git_or_dvc(
        "git", "ls-remote", origin, f"refs/exps/{commit[:2]}/{commit[2:]}/*", cwd=root, timeout=timeout
    )
    return {line.rsplit("/", 1)[-1] for line in refs.splitlines()} & set(names)


def grid(params):
    """The points of `-S` overrides, by DVC's own parser: [{'params.yaml': ['a.b=1', ...]}, ...]."""
    from dvc.exceptions import InvalidArgumentError  # noqa: PLC0415 - --help needn't load DVC
    from dvc.utils.cli_parse import to_path_overrides  # noqa: PLC0415
    from dvc.utils.hydra import get_hydra_sweeps  # noqa: PLC0415
    from hydra.errors import HydraException  # noqa: PLC0415

    try:
        return get_hydra_sweeps(to_path_overrides(params))
    except (InvalidArgumentError, HydraException) as error:
        raise UserError(f"-S {' '.join(params)}: {str(error).splitlines()[0]}") from None


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
        raise UserError(error.removeprefix("error: "))
    invalid = {}
    for i, point in enumerate(sweeps):
        overrides = point.get(PARAMS, [])
        for override in overrides:
            if (error := error_of([override])) and KEY_ERROR.search(error):
                raise UserError(error.removeprefix("error: "))
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


def git_or_dvc(*cmd, cwd, timeout, check=True, refuse=None):
    """A command's stdout; on failure, or past `timeout` seconds, a UserError with `refuse` or its
    last line of stderr. Git never prompts: a sweep has nobody to answer it."""
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                env=os.environ | NO_PROMPT, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(cmd[:3])}: no answer in {timeout:g} s (--timeout)") from None
    if check and result.returncode:
        raise UserError(refuse or f"{' '.join(cmd[:3])}: {error_line(result.stderr, result.returncode)}")
    return result.stdout


NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0"}


# ----------------------------------------------------------------------------- the trials, on Ray


def run_on_ray(args, origin, commit, trials, done):
    """Every trial's result, each with a progress line as it finishes, and whether Ctrl-C stopped them."""
    import ray  # noqa: PLC0415 - only a sweep that runs loads Ray

    # Ray's raylet, not only the worker, must reap a dead worker's `dvc` and its stage.
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper", "true")
    local = dict(address="local", include_dashboard=False) if not args.address else dict(address=args.address)
    try:
        ray.init(**local, logging_level="ERROR", log_to_driver=False, configure_logging=True)
        stop = ray.remote(num_cpus=0)(Stop).remote()
    except (ConnectionError, RuntimeError) as error:  # no cluster there, or a wrong auth token
        raise UserError(f"Ray at {args.address or 'this machine'}: {str(error).splitlines()[0]}") from None
    except KeyboardInterrupt:
        ray.shutdown()
        sys.exit(130)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # see trial()
    task = ray.remote(num_cpus=1, max_retries=args.retries)(trial)
    env = worker_env()
    pending, results = {}, []

    def collect(ready):
        for ref in ready:
            results.append(outcome(ray, ref, pending.pop(ref)))
            progress(done + len(results), done + len(trials), results[-1])

    try:
        for name, point in trials:
            pending[task.remote(origin, commit, name, point, env, args.timeout, stop)] = name
        while pending:
            collect(ray.wait(list(pending))[0])
        return results, False
    except KeyboardInterrupt:
        # The trials stop themselves: after ray.cancel, Ray's driver once failed a check (docs/sweep.md).
        stop.request.remote()
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: no more waiting
            deadline = time.monotonic() + GRACE
            while pending and (left := deadline - time.monotonic()) > 0:
                collect(ray.wait(list(pending), timeout=left)[0])
        for ref in pending:  # past the grace: the worker is killed, and its raylet kills its commands
            ray.cancel(ref, force=True)
        reported = {r["name"] for r in results}
        results += [dict(name=n, ok=False, error="cancelled") for n, _ in trials if n not in reported]
        cancelled = sum(r.get("error") == "cancelled" for r in results)
        print(f"interrupted: {cancelled} trials cancelled", file=sys.stderr, flush=True)
        return results, True
    finally:
        ray.shutdown()


class Stop:
    """Ctrl-C as the trials see it (a Ray actor): the driver requests it, each trial asks between polls."""

    def __init__(self):
        self.asked = False

    def request(self):
        self.asked = True

    def requested(self):
        return self.asked


def outcome(ray, ref, name):
    """A finished task's result, or why there is none, in one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        error = "cancelled"
    except ray.exceptions.RayTaskError as raised:  # a bug in trial(), not a dead worker
        cause = raised.cause if raised.cause is not None else raised
        error = f"trial raised {type(cause).__name__}: {first_line(cause)}"
    except ray.exceptions.RayError as died:  # the worker or its node died more than --retries times
        error = f"worker died ({type(died).__name__}: {first_line(died)})"
    return dict(name=name, ok=False, error=error)


def first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else "no message"


def pull_landed(args, root, origin, commit, results):
    """Pulls the experiments on origin into this repo, as into any teammate's clone; origin is the truth
    of what landed (a trial cancelled just after its ref push is there too). Returns their names."""
    names = [r["name"] for r in results]
    landed = on_origin(root, origin, commit, names, args.timeout)
    for result in results:
        if result["name"] in landed and not result["ok"]:
            result.update(
                ok=True, error=None, note="on origin; its result was lost to Ctrl-C or a dead worker"
            )
    if landed:
        git_or_dvc("dvc", "exp", "pull", "origin", *sorted(landed), cwd=root, timeout=args.timeout)
    return landed


def worker_env():
    """What a trial's commands need from the driver: its venv's `dvc` and python, and a git identity
    for the experiment's commit (a worker node may have no ~/.gitconfig)."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env |= NO_PROMPT
    for key in ("name", "email"):
        configured = subprocess.run(["git", "config", f"user.{key}"], capture_output=True, text=True).stdout
        for who in ("AUTHOR", "COMMITTER"):
            if value := os.environ.get(f"GIT_{who}_{key.upper()}") or configured.strip():
                env[f"GIT_{who}_{key.upper()}"] = value
    return env


def trial(origin, commit, name, point, env, timeout, stop):
    """One grid point, on a worker: clone, `dvc exp run`, push data then the ref. Returns its result."""
    import ray  # noqa: PLC0415

    # Ray's subreaper mode ignores SIGCHLD, and then every child's exit status, and its children's, reads 0.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    node = ray.get_runtime_context().get_node_id()
    result = dict(name=name, node=node, host=socket.gethostname(), pid=os.getpid(), timings={})
    result["started"] = round(time.time(), 3)  # wall clock, to compare trials across nodes
    answer = None

    def stopped():
        """The driver's latest answer. Never ray.get: a task blocked in it lends its CPU to another trial."""
        nonlocal answer
        asked = False
        if answer is not None and answer.done():
            with contextlib.suppress(ray.exceptions.RayError):  # no driver: Ray ends this task with it
                asked = answer.result()
            answer = None
        if answer is None:
            answer = stop.requested.remote().future()
        return asked

    try:
        # A stopped command may still be writing in it: a failed clean-up must not hide the stop.
        with tempfile.TemporaryDirectory(prefix=f"sweep-{name}-", ignore_cleanup_errors=True) as tmp:
            result = steps(Path(tmp), origin, commit, name, point, os.environ | env, timeout, stopped, result)
    except Stopped:
        result = result | dict(ok=False, error="cancelled")
    return result | dict(ended=round(time.time(), 3))


class Stopped(Exception):
    """The driver asked the trials to stop (Ctrl-C): the running command is killed, nothing more runs."""


def steps(tmp, origin, commit, name, point, env, timeout, stopped, result):
    start = time.perf_counter()
    repo = tmp / "repo"
    commands = {
        "clone": ("git", "clone", "--quiet", "--no-checkout", origin, str(repo)),
        "checkout": ("git", "checkout", "--quiet", "--detach", commit),
        "exp run": ("dvc", "exp", "run", "--pull", "--allow-missing", *set_params(point), "--name", name),
        # Outputs and run-cache first, the experiment's git ref last: a ref on origin always has its data.
        "push data": ("dvc", "push", "--run-cache"),
        "push ref": ("dvc", "exp", "push", "--no-cache", "--force", "origin", name),
    }
    for step, cmd in commands.items():
        began = time.perf_counter()
        run = dict(cwd=tmp if step == "clone" else repo, env=env, timeout=timeout, stopped=stopped)
        code, output = command(cmd, **run)
        result["timings"][step] = round(time.perf_counter() - began, 3)
        if step == "exp run":
            result["restored"] = RESTORED.findall(output)
        if code is None:
            return result | dict(ok=False, error=f"{step}: no end in {timeout:g} s (--timeout); killed")
        if code:
            if step == "exp run":  # as DVC's CI recipes do: a rerun restores the stages that finished
                command(commands["push data"], **run)
            return result | dict(ok=False, error=error_line(output, code))
    metrics = {p.name: json.loads(p.read_text()) for p in sorted((repo / "metrics").glob("*.json"))}
    return result | dict(ok=True, seconds=round(time.perf_counter() - start, 2), metrics=metrics)


def command(cmd, cwd, env, timeout, stopped):
    """(exit status, or None past `timeout` seconds; stdout and stderr) of a command run in a session of
    its own, which is killed whole (a stage under `dvc`, a hook under `git`) on a timeout, or on a stop
    (raises Stopped). A stop already known when it is to start runs nothing."""
    if stopped():
        raise Stopped
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(min(left, 0.5))
                    break
                if stopped():
                    raise Stopped
        finally:
            timed_out = process.poll() is None
            if timed_out:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        output.seek(0)
        return None if timed_out else process.returncode, output.read()


def set_params(point):
    """A grid point back as `dvc exp run` arguments."""
    return [arg for path, overrides in point.items() for o in overrides
            for arg in ("-S", o if path == PARAMS else f"{path}:{o}")]  # fmt: skip


def error_line(output, code):
    """The one line that says why a command failed: the stage's own `error: ...` if there is one, else
    DVC's `ERROR: ...` (which `--quiet` would hide, so no dvc command here is quiet)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("error: ", "ERROR: "):
        if found := [line for line in lines if line.startswith(prefix)]:
            return found[-1] if prefix == "error: " else found[0]
    return lines[-1] if lines else f"exited {code}"


# ----------------------------------------------------------------------------- what the user sees


def progress(done, total, result):
    outcome = f"done in {result['seconds']:.1f} s" if result["ok"] else f"failed: {result['error']}"
    print(f"[{done}/{total}] {result['name']} {outcome}", file=sys.stderr, flush=True)


def table(results):
    """The sweep's experiments as `dvc exp show --only-changed --md` would show them: the params set,
    then test and generalization accuracy of each metrics file where the experiments differ (all of
    them when only one landed)."""
    given = [dict(o.split("=", 1) for p in r["overrides"].values() for o in p) for r in results]
    keys = list(dict.fromkeys(key for point in given for key in point))
    files = sorted({f for r in results if r.get("metrics") for f in r["metrics"]})
    sections = [(f, section) for f in files for section in ("test", "generalization")]
    scores = [
        [r["metrics"][f][s]["accuracy"] if f in r.get("metrics", {}) else "-" for r in results]
        for f, s in sections
    ]
    landed = [[score for score in column if score != "-"] for column in scores]
    changed = [i for i, column in enumerate(landed) if len(set(column)) > 1 or len(column) == 1]
    headers = [
        "Experiment",
        *keys,
        *(f"{Path(sections[i][0]).stem} {sections[i][1]}.accuracy" for i in changed),
    ]
    rows = [
        [
            r["name"],
            *(point.get(k, "") for k in keys),
            *(scores[i][row] for i in changed),
            when(r),
            (r.get("node") or "-")[:8],
        ]
        for row, (r, point) in enumerate(zip(results, given, strict=True))
    ]
    return tabulate(rows, headers=[*headers, "time", "node"], tablefmt="github", disable_numparse=True)


def when(result):
    if "seconds" in result:
        return f"{result['seconds']:.1f} s"
    return "landed" if result["ok"] else "cancelled" if result["error"] == "cancelled" else "failed"


if __name__ == "__main__":
    main()
