"""A grid of DVC experiments on Ray: this machine's cores, or a cluster's.

    python -m sweep -S 'datasets.moons.train.lr=0.005,0.01,0.02' -S 'datasets.moons.train.epochs=500,1000'
                    [--name sweep] [--address HOST:PORT] [--retries 2] [--timeout 3600] [--json summary.json]

The grid is written as for `dvc exp run --queue -S` (a comma list sweeps a key, several -S make the
product) and parsed by DVC's own code. DVC's queue runs on one machine only, so this follows its cloud
pattern instead: every trial is a Ray task (one CPU) that clones `origin` at HEAD into a temp dir on
its node, runs `dvc exp run --pull --allow-missing -S ... -n <name>-<i>` there, pushes the outputs and
the run-cache to the default DVC remote, and pushes the experiment's git ref last, so that a ref on
origin never points at data not yet pushed. The driver then pulls the experiments that are on origin
into this repo, where `dvc exp show` lists them, and prints one table. Whatever goes wrong is one line:
a refusal before anything runs, or a failed trial in the table. docs/sweep.md is the reference: the
refusals and failures, cluster set-up, and what reaches origin and the DVC remote at each point.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tabulate import tabulate

from stages.errors import UserError
from stages.params import PARAMS_FILE

RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run")  # `dvc exp run`'s own words
GRACE = 10  # seconds a stopped trial has to kill its command and return before its worker is killed
NO_PROMPT = {"GIT_TERMINAL_PROMPT": "0"}  # git fails instead of prompting: a sweep has nobody to answer


@dataclass(frozen=True)
class Sweep:
    """What runs, settled before anything runs, and what came of each trial."""

    root: Path  # this repo
    origin: str  # the git URL the workers clone
    commit: str  # HEAD, on origin
    timeout: float  # --timeout: seconds any one git or dvc command may run
    env: dict  # what the trials' commands need from the driver (worker_env)
    trials: dict  # <name>-1 .. <name>-N: a Result each; one with bad params has its error and never runs


@dataclass
class Result:
    """A trial: its grid point, then what came of it; a row of the table, an entry of --json."""

    name: str  # of its experiment
    params: list[str]  # its -S overrides
    ok: bool = False
    error: str | None = None  # why it failed, in one line; "cancelled" after Ctrl-C
    note: str | None = None
    seconds: float | None = None  # clone to ref push, when it landed
    metrics: dict | None = None  # metrics/*.json by file name
    node: str | None = None  # the Ray node, host and process that ran it,
    host: str | None = None
    pid: int | None = None
    started: float | None = None  # and when, by the wall clock, to compare trials across nodes
    ended: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each step
    restored: list[str] = field(default_factory=list)  # stages `dvc exp run` restored from the run-cache


def main(argv=None):
    args = parse_args(argv)
    try:
        need("ray", "the sweep needs Ray", "cluster")  # Ray runs every trial
        sweep = preflight(args)
    except UserError as why:
        sys.exit(f"error: {why}")
    except KeyboardInterrupt:
        sys.exit(130)
    for done, result in enumerate((r for r in sweep.trials.values() if r.error), 1):  # bad params
        progress(done, len(sweep.trials), result)

    interrupted, status = False, 0
    if todo := [r for r in sweep.trials.values() if not r.error]:
        try:
            interrupted = run_on_ray(args, sweep, todo)
        except UserError as why:
            sys.exit(f"error: {why}")
        try:
            landed = pull_landed(sweep)
        except UserError as why:
            print(f"error: {why}", file=sys.stderr)
            status = 1
        except KeyboardInterrupt:
            print("interrupted: the experiments were not pulled: `dvc exp pull origin`", file=sys.stderr)
            interrupted = True
        else:
            if interrupted:
                print(f"interrupted: {len(landed)} experiments on origin, pulled here", file=sys.stderr)

    results = list(sweep.trials.values())
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    sys.exit(130 if interrupted else status or (0 if all(r.ok for r in results) else 1))


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


def need(module, what, extra):
    """A UserError with the command that installs `extra` when `module` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise UserError(f'{what}, the {extra} extra: pip install -c constraints.txt ".[{extra}]"')


def preflight(args) -> Sweep:
    """The sweep to run, or a UserError that says why it cannot run."""
    root = Path(git_or_dvc("git", "rev-parse", "--show-toplevel", cwd=".", timeout=args.timeout).strip())

    def run(*cmd, **kwargs):
        return git_or_dvc(*cmd, cwd=root, timeout=args.timeout, **kwargs).strip()

    points = grid(args.params)
    if run("git", "status", "--porcelain"):
        raise UserError("the workspace has changes (git status): commit them and push to origin first")
    origin = run("git", "remote", "get-url", "origin", refuse="no git remote 'origin'")
    if (root / origin).is_dir():  # a local origin: workers clone it from anywhere on this machine
        origin = str((root / origin).resolve())
    commit = run("git", "rev-parse", "HEAD")
    if not run("git", "branch", "-r", "--contains", commit, "--list", "origin/*"):
        raise UserError(f"commit {commit[:7]} is not on origin: `git push origin` first (workers clone it)")
    remote = run("dvc", "config", "--project", "core.remote", check=False)
    if not remote:
        raise UserError("no default DVC remote in .dvc/config: `dvc remote add -d NAME URL`, commit, push")
    where = run("dvc", "config", "--project", f"remote.{remote}.url", check=False)
    if "://" not in where and not os.path.isabs(where):
        raise UserError(f"DVC remote '{remote}' is the relative path {where}: workers need an absolute one")
    if where.startswith("s3://"):  # the trials' and the driver's dvc push and pull
        need("dvc_s3", f"DVC remote '{remote}' is on S3, which needs dvc-s3", "s3")
    invalid, trials = check_params(root, points), {}
    for i, point in enumerate(points):
        name = f"{args.name}-{i + 1}"
        params = [
            o if path == PARAMS_FILE else f"{path}:{o}"
            for path, overrides in point.items()
            for o in overrides
        ]
        trials[name] = Result(name, params, error=invalid.get(i))
    sweep = Sweep(root, origin, commit, args.timeout, worker_env(), trials)
    if taken := on_origin(sweep):
        raise UserError(f"experiment {min(taken)} of this commit is already on origin: choose another --name")
    return sweep


def on_origin(sweep):
    """Which of the sweep's experiments origin holds (of this commit)."""
    refs = git_or_dvc("git", "ls-remote", sweep.origin, f"refs/exps/{sweep.commit[:2]}/{sweep.commit[2:]}/*",
                      cwd=sweep.root, timeout=sweep.timeout)  # fmt: skip
    return {line.rsplit("/", 1)[-1] for line in refs.splitlines()} & set(sweep.trials)


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


def check_params(root, points):
    """Each point's params.yaml, checked by the stages' own schema. A key that params.yaml lacks refuses
    the whole sweep, as `dvc exp run -S` would refuse it, in the schema's words when the schema has no
    such key either; a bad value fails its own point. Returns {point: error line}."""
    import yaml  # noqa: PLC0415
    from dvc.exceptions import InvalidArgumentError  # noqa: PLC0415

    from stages.params import ParamsError, parse_params  # noqa: PLC0415

    def error_of(overrides):
        try:
            parse_params(applied(base, overrides))
        except ParamsError as error:
            return f"error: {error}"
        except InvalidArgumentError:  # DVC's own refusal, e.g. a list where a mapping is
            return f"error: -S {' '.join(overrides)}: DVC cannot apply it to {PARAMS_FILE}"

    base = yaml.safe_load((root / PARAMS_FILE).read_text())
    if error := error_of([]):
        raise UserError(error.removeprefix("error: "))
    for override in dict.fromkeys(o for point in points for o in point.get(PARAMS_FILE, [])):
        key = override.split("=", 1)[0]
        if not key.startswith(("+", "~")) and not exists(base, key):
            why = error_of([f"+{override}"]) or f"-S {override}: {PARAMS_FILE} has no {key}; +{key} adds it"
            raise UserError(why.removeprefix("error: "))
    return {i: error for i, point in enumerate(points) if (error := error_of(point.get(PARAMS_FILE, [])))}


def applied(params, overrides):
    """params with the overrides applied by DVC's own code, as `dvc exp run -S` applies them."""
    import yaml  # noqa: PLC0415
    from dvc.utils.hydra import apply_overrides  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / PARAMS_FILE
        path.write_text(yaml.safe_dump(params))
        apply_overrides(path, overrides)
        return yaml.safe_load(path.read_text())


def exists(params, key):
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return False
        params = params[part]
    return True


def git_or_dvc(*cmd, cwd, timeout, check=True, refuse=None):
    """A command's stdout; on failure, or past `timeout` seconds, a UserError with `refuse` or its
    last line of stderr."""
    try:
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                env=os.environ | NO_PROMPT, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(cmd[:3])}: no answer in {timeout:g} s (--timeout)") from None
    if check and result.returncode:
        raise UserError(refuse or f"{' '.join(cmd[:3])}: {error_line(result.stderr, result.returncode)}")
    return result.stdout


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


# ----------------------------------------------------------------------------- the trials, on Ray


def run_on_ray(args, sweep, todo):
    """Runs these trials, each one's Result into the sweep with a progress line as it ends. Returns
    whether Ctrl-C stopped them."""
    import ray  # noqa: PLC0415 - only a sweep that runs loads Ray

    # Ray's raylet, not only the worker, must reap a dead worker's `dvc` and its stage.
    os.environ.setdefault("RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper", "true")
    where = dict(address=args.address) if args.address else dict(address="local", include_dashboard=False)
    try:
        ray.init(**where, logging_level="ERROR", log_to_driver=False, configure_logging=True)
        stop = ray.remote(num_cpus=0)(Stop).remote()
    except (ConnectionError, RuntimeError) as error:  # no cluster there, or a wrong auth token
        raise UserError(f"Ray at {args.address or 'this machine'}: {str(error).splitlines()[0]}") from None
    except KeyboardInterrupt:
        ray.shutdown()
        sys.exit(130)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # see trial()
    task = ray.remote(num_cpus=1, max_retries=args.retries)(trial)
    pending, done = {}, len(sweep.trials) - len(todo)

    def collect(ready):
        nonlocal done
        for ref in ready:
            result = outcome(ray, ref, pending.pop(ref))
            sweep.trials[result.name], done = result, done + 1
            progress(done, len(sweep.trials), result)

    try:
        for result in todo:
            pending[task.remote(sweep, result, stop)] = result
        while pending:
            collect(ray.wait(list(pending))[0])
        return False
    except KeyboardInterrupt:
        # The trials stop themselves: after ray.cancel, Ray's driver once failed a check (docs/sweep.md).
        stop.request.remote()
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: no more waiting
            deadline = time.monotonic() + GRACE
            while pending and (left := deadline - time.monotonic()) > 0:
                collect(ray.wait(list(pending), timeout=left)[0])
        for ref in pending:  # past the grace: the worker is killed, and its raylet kills its commands
            ray.cancel(ref, force=True)
        for result in sweep.trials.values():
            if not (result.ok or result.error):  # never reported
                result.error = "cancelled"
        cancelled = sum(r.error == "cancelled" for r in sweep.trials.values())
        print(f"interrupted: {cancelled} trials cancelled", file=sys.stderr, flush=True)
        return True
    finally:
        ray.shutdown()


class Stop:
    """Ctrl-C as the trials see it (a Ray actor): the driver requests it, each trial asks between polls."""

    asked = False

    def request(self):
        self.asked = True

    def requested(self):
        return self.asked


def outcome(ray, ref, result):
    """A finished task's Result, or `result` with why there is none, in one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        result.error = "cancelled"
    except ray.exceptions.RayTaskError as raised:  # a bug in trial(), not a dead worker
        cause = raised.cause if raised.cause is not None else raised
        result.error = f"trial raised {type(cause).__name__}: {first_line(cause)}"
    except ray.exceptions.RayError as died:  # the worker or its node died more than --retries times
        result.error = f"worker died ({type(died).__name__}: {first_line(died)})"
    return result


def first_line(error):
    return (str(error).strip().splitlines() or ["no message"])[0]


def pull_landed(sweep):
    """Pulls the experiments on origin into this repo, as into any teammate's clone; origin is the truth
    of what landed (a trial cancelled just after its ref push is there too). Returns their names."""
    landed = on_origin(sweep)
    for name in landed:
        if not (result := sweep.trials[name]).ok:
            result.ok, result.error = True, None
            result.note = "on origin; its result was lost to Ctrl-C or a dead worker"
    if landed:
        git_or_dvc("dvc", "exp", "pull", "origin", *sorted(landed), cwd=sweep.root, timeout=sweep.timeout)
    return landed


def trial(sweep, result, stop):
    """One grid point (`result`, to fill in), on a worker: clone, `dvc exp run`, push data then the ref."""
    import ray  # noqa: PLC0415

    # Ray's subreaper mode ignores SIGCHLD, and then every child's exit status, and its children's, reads 0.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    result.node, result.host, result.pid = (
        ray.get_runtime_context().get_node_id(),
        socket.gethostname(),
        os.getpid(),
    )
    result.started = round(time.time(), 3)
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
        with tempfile.TemporaryDirectory(prefix=f"sweep-{result.name}-", ignore_cleanup_errors=True) as tmp:
            steps(sweep, Path(tmp), stopped, result)
    except Stopped:
        result.ok, result.error = False, "cancelled"
    result.ended = round(time.time(), 3)
    return result


class Stopped(Exception):
    """The driver asked the trials to stop (Ctrl-C): the running command is killed, nothing more runs."""


def steps(sweep, tmp, stopped, result):
    """The trial's commands, one after the other, in `tmp`, each filling in `result`."""
    start = time.perf_counter()
    repo, name = tmp / "repo", result.name
    overrides = [arg for p in result.params for arg in ("-S", p)]
    commands = {
        "clone": ("git", "clone", "--quiet", "--no-checkout", sweep.origin, str(repo)),
        "checkout": ("git", "checkout", "--quiet", "--detach", sweep.commit),
        "exp run": ("dvc", "exp", "run", "--pull", "--allow-missing", *overrides, "--name", name),
        # Outputs and run-cache first, the experiment's git ref last: a ref on origin always has its data.
        "push data": ("dvc", "push", "--run-cache"),
        "push ref": ("dvc", "exp", "push", "--no-cache", "--force", "origin", name),
    }
    env = os.environ | sweep.env
    for step, cmd in commands.items():
        began = time.perf_counter()
        run = dict(cwd=tmp if step == "clone" else repo, env=env, timeout=sweep.timeout, stopped=stopped)
        code, output = command(cmd, **run)
        result.timings[step] = round(time.perf_counter() - began, 3)
        if step == "exp run":
            result.restored = RESTORED.findall(output)
        if code is None:
            result.error = f"{step}: no end in {sweep.timeout:g} s (--timeout); killed"
            return
        if code:
            if step == "exp run":  # as DVC's CI recipes do: a rerun restores the stages that finished
                command(commands["push data"], **run)
            result.error = error_line(output, code)
            return
    result.metrics = {p.name: json.loads(p.read_text()) for p in sorted((repo / "metrics").glob("*.json"))}
    result.ok, result.seconds = True, round(time.perf_counter() - start, 2)


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


def error_line(output, code):
    """The one line that says why a command failed: the stage's own `error: ...` if there is one (a
    stage's refusal, or its training diverging), else DVC's `ERROR: ...` (which `--quiet` would hide,
    so no dvc command here is quiet)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for prefix in ("error: ", "ERROR: "):
        if found := [line for line in lines if line.startswith(prefix)]:
            return found[-1] if prefix == "error: " else found[0]
    return lines[-1] if lines else f"exited {code}"


# ----------------------------------------------------------------------------- what the user sees


def progress(done, total, result):
    outcome = f"done in {result.seconds:.1f} s" if result.ok else f"failed: {result.error}"
    print(f"[{done}/{total}] {result.name} {outcome}", file=sys.stderr, flush=True)


def table(results):
    """The sweep's experiments as `dvc exp show --only-changed --md` would show them: the params set,
    then test and generalization accuracy of each metrics file where the experiments that landed differ
    (all of them when only one landed), then each one's time, or why it failed."""
    given = [dict(p.split("=", 1) for p in r.params) for r in results]
    keys = list(dict.fromkeys(key for point in given for key in point))
    files = sorted({f for r in results for f in r.metrics or {}})
    shown = {}
    for f, section in ((f, section) for f in files for section in ("test", "generalization")):
        column = [r.metrics[f][section]["accuracy"] if f in (r.metrics or {}) else "-" for r in results]
        if len(landed := [s for s in column if s != "-"]) == 1 or len(set(landed)) > 1:
            shown[f"{Path(f).stem} {section}.accuracy"] = column
    rows = [[r.name, *(given[i].get(k, "") for k in keys), *(c[i] for c in shown.values()), result_cell(r),
             (r.node or "-")[:8]] for i, r in enumerate(results)]  # fmt: skip
    headers = ["Experiment", *keys, *shown, "result", "node"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def result_cell(result):
    if result.ok:
        return "landed" if result.seconds is None else f"{result.seconds:.1f} s"
    return result.error.replace("|", "\\|")  # one cell of a Markdown table


if __name__ == "__main__":
    main()
