"""The warm stage worker (stages/worker.py): a stage served by a child forked from it runs as it would
in a process of its own, and the worker never serves an environment it was not started in.

Most tests run `python -m stages probe ...`, a stage written into a copy of the project that prints
what its process looks like (pid, parent, working directory, arguments, environment, terminals).
"""

import hashlib
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, assert_one_line, edit_params, experiments, output_md5s, ran, sh

from stages import worker

PROBE = '''"""A stage for the tests: what the process it runs in looks like."""

import hashlib
import json
import os
import sys
import time

VALUE = "first"

if __name__ == "__main__":
    if sys.argv[1:2] == ["sleep"]:
        print(os.getpid(), flush=True)
        time.sleep(float(sys.argv[2]))
    threads = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("Threads:"))
    shown = dict(
        pid=os.getpid(),
        cwd=os.getcwd(),
        argv=sys.argv[1:],
        probe=os.environ.get("PROBE"),
        value=VALUE,
        ttys=[os.isatty(fd) for fd in (0, 1, 2)],
        line_buffered=[sys.stdout.line_buffering, sys.stderr.line_buffering],
        write_through=[sys.stdout.write_through, sys.stderr.write_through],
        main=__name__,
        path0=sys.path[0],
        threads=int(threads),
        umask=os.umask(0o022),
    )
    print(json.dumps(shown), flush=True)
    print("to stderr", file=sys.stderr)
    sys.exit(os.environ.get("PROBE_EXIT") or 0)
'''


def copy_stages(where: Path) -> Path:
    """The project's stages package with the probe stage: enough for `python -m stages probe`."""
    shutil.copytree(ROOT / "stages", where / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    (where / "stages" / "probe.py").write_text(PROBE)
    shutil.copy2(ROOT / "params.yaml", where / "params.yaml")
    return where


def probe(cwd, *args, env=None, check=True):
    result = sh(sys.executable, "-m", "stages", "probe", *args, cwd=cwd, env=env, check=check)
    return json.loads(result.stdout.splitlines()[0]) if result.stdout else None, result


def status(cwd, env=None):
    return sh(sys.executable, "-m", "stages.worker", "status", cwd=cwd, env=env, check=False)


def worker_pid(cwd, env=None) -> int | None:
    result = status(cwd, env)
    return int(result.stdout.split()[2]) if result.returncode == 0 else None


def warm(cwd, env=None) -> int:
    """This environment's worker's pid, started (by a first run) and ready."""
    if worker_pid(cwd, env) is None and (Path(cwd) / "stages" / "probe.py").exists():
        probe(cwd, env=env)
    deadline = time.monotonic() + 60
    while (pid := worker_pid(cwd, env)) is None:
        assert time.monotonic() < deadline, "no worker after 60 s"
        time.sleep(0.1)
    return pid


@pytest.fixture(scope="module")
def stages_copy(tmp_path_factory):
    folder = copy_stages(tmp_path_factory.mktemp("worker") / "project")
    warm(folder)
    return folder


def environ(**changes):
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# ----------------------------------------------------------------------------- served as its own process


def test_a_served_stage_runs_as_its_own_process_would(stages_copy, tmp_path):
    pid = warm(stages_copy)
    served, result = probe(stages_copy, "moons", "x y", env=environ(PROBE="served"))
    alone, result_alone = probe(
        stages_copy, "moons", "x y", env=environ(PROBE="served", BOUNDARY_LAB_WORKER="off")
    )
    assert served["pid"] != alone["pid"] and served["pid"] != pid
    assert {k: v for k, v in served.items() if k != "pid"} == {k: v for k, v in alone.items() if k != "pid"}
    assert served["argv"] == ["moons", "x y"] and served["main"] == "__main__"
    assert served["cwd"] == str(stages_copy) and served["path0"] == str(stages_copy)
    assert result.stderr == result_alone.stderr == "to stderr\n"
    assert worker_pid(stages_copy) == pid  # it was served by the warm worker, not started anew


@pytest.mark.parametrize("code", ["0", "3", "error: a message"])
def test_the_exit_code_and_message_are_the_stages(stages_copy, code):
    served = probe(stages_copy, env=environ(PROBE_EXIT=code), check=False)[1]
    alone = probe(stages_copy, env=environ(PROBE_EXIT=code, BOUNDARY_LAB_WORKER="off"), check=False)[1]
    assert (served.returncode, served.stderr) == (alone.returncode, alone.stderr)


@pytest.mark.parametrize(
    "args", [["split", "nope"], ["split", "my moons"], ["split"], ["nostage", "moons"], []]
)
def test_errors_are_the_same_lines_and_codes(stages_copy, args):
    command = [sys.executable, "-m", "stages", *args]
    served = sh(*command, cwd=stages_copy, check=False)
    alone = sh(*command, cwd=stages_copy, check=False, env=environ(BOUNDARY_LAB_WORKER="off"))
    assert (served.returncode, served.stdout, served.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    assert served.returncode != 0
    assert_one_line(
        served.stderr.strip(), start="error: " if args[:1] == ["split"] and len(args) == 2 else "usage: "
    )


def test_terminals_are_seen_as_terminals(stages_copy):
    """isatty and Python's line buffering answer as in a process of its own, on a terminal and off."""

    def on_a_terminal(env):
        main, secondary = pty.openpty()
        process = subprocess.Popen(
            [sys.executable, "-m", "stages", "probe"],
            cwd=stages_copy,
            env=env,
            stdin=secondary,
            stdout=secondary,
            stderr=secondary,
        )
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(main, 4096) if select.select([main], [], [], 30)[0] else b""
            except OSError:  # EIO: every writer has closed the terminal
                chunk = b""
            if not chunk:
                break
            output += chunk
        os.close(main)
        assert process.wait() == 0
        return json.loads(output.decode().splitlines()[0])

    served, alone = on_a_terminal(environ()), on_a_terminal(environ(BOUNDARY_LAB_WORKER="off"))
    assert served["ttys"] == alone["ttys"] == [True, True, True]
    assert served["line_buffered"] == alone["line_buffered"]
    assert served["write_through"] == alone["write_through"]
    for unbuffered in ("1", None):  # PYTHONUNBUFFERED: as Python's -u
        env = environ(PYTHONUNBUFFERED=unbuffered)
        piped = probe(stages_copy, env=env)[0]
        assert piped["ttys"] == [False, False, False]
        alone = probe(stages_copy, env=env | {"BOUNDARY_LAB_WORKER": "off"})[0]
        assert (piped["line_buffered"], piped["write_through"]) == (
            alone["line_buffered"],
            alone["write_through"],
        )


def test_concurrent_runs_keep_their_own_directory_environment_and_arguments(stages_copy, tmp_path):
    copies = [copy_stages(tmp_path / f"copy{i}") for i in range(4)]
    pid = warm(stages_copy)
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "stages", "probe", "sleep", "0.5", f"run{i}"],
            cwd=folder,
            env=environ(PROBE=f"env{i}"),
            stdout=subprocess.PIPE,
            text=True,
        )
        for i, folder in enumerate(copies)
    ]
    shown = [json.loads(p.communicate()[0].splitlines()[1]) for p in processes]
    for i, (folder, seen) in enumerate(zip(copies, shown, strict=True)):
        assert (seen["cwd"], seen["argv"], seen["probe"]) == (
            str(folder),
            ["sleep", "0.5", f"run{i}"],
            f"env{i}",
        )
    assert worker_pid(stages_copy) == pid


# ----------------------------------------------------------------------------- never stale


def test_an_edit_to_the_stages_takes_effect_on_the_next_run(stages_copy):
    pid = warm(stages_copy)
    probe_file = stages_copy / "stages" / "probe.py"
    assert probe(stages_copy)[0]["value"] == "first"
    probe_file.write_text(probe_file.read_text().replace('VALUE = "first"', 'VALUE = "second"'))
    try:
        assert probe(stages_copy)[0]["value"] == "second"
    finally:
        probe_file.write_text(PROBE)
    assert worker_pid(stages_copy) == pid


LOAD_TIME = [
    ("MKL_VERBOSE", "1"),
    ("OMP_NUM_THREADS", "1"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("CUBLAS_WORKSPACE_CONFIG", ":4096:8"),
    ("CUDA_VISIBLE_DEVICES", ""),
    ("PYTHONHASHSEED", "7"),
    ("PYTHONUNBUFFERED", "1"),
    ("PYTHONWARNINGS", "error"),
    ("KMP_AFFINITY", "disabled"),
    ("PYTORCH_NO_CUDA_MEMORY_CACHING", "1"),
    ("TORCH_SHOW_CPP_STACKTRACES", "1"),
    ("MPLBACKEND", "svg"),
    ("LC_ALL", "C"),
]


@pytest.mark.parametrize(("name", "value"), LOAD_TIME)
def test_a_variable_read_at_load_time_gets_a_worker_of_its_own(name, value):
    assert worker.environment_key(environ(**{name: value})) != worker.environment_key(environ(**{name: None}))


def test_other_variables_share_a_worker():
    for name in ("DVC_EXP_NAME", "PWD", "PROBE", "BOUNDARY_LAB_WORKER_IDLE"):
        assert worker.environment_key(environ(**{name: "x"})) == worker.environment_key(
            environ(**{name: None})
        )


def test_an_installed_package_gets_a_worker_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    before = worker.environment_key()
    (tmp_path / "newpackage-1.0.dist-info").mkdir()
    assert worker.environment_key() != before


KEY = "import stages.worker as w; print(w.environment_key())"


def test_the_interpreter_and_the_cpu_pins_are_in_the_key(tmp_path):
    folder = copy_stages(tmp_path / "project")
    env = environ(PYTHONPATH=str(folder))
    before = sh(sys.executable, "-c", KEY, cwd=folder, env=env).stdout
    assert sh(Path(sys.executable).with_name("python"), "-c", KEY, cwd=folder, env=env).stdout == before
    other = tmp_path / "python"  # the same binary, outside the venv: another interpreter, no packages
    other.symlink_to(os.path.realpath(sys.executable))
    assert sh(other, "-c", KEY, cwd=folder, env=env).stdout != before
    pins = folder / "stages" / "__init__.py"
    pins.write_text(pins.read_text().replace('"MKL_CBWR": "COMPATIBLE"', '"MKL_CBWR": "AUTO"'))
    assert sh(sys.executable, "-c", KEY, cwd=folder, env=env).stdout != before


def test_another_environment_is_served_by_another_worker(stages_copy):
    pid = warm(stages_copy)
    other = environ(OMP_NUM_THREADS="1")
    assert worker_pid(stages_copy, other) is None
    first, _ = probe(stages_copy, env=other)  # no worker yet: in its own process, one starts
    assert first["threads"] >= 1
    assert warm(stages_copy, other) != pid
    sh(sys.executable, "-m", "stages.worker", "stop", cwd=stages_copy, env=other)
    assert worker_pid(stages_copy) == pid


# ----------------------------------------------------------------------------- signals and deaths


# A command as a terminal's foreground job runs it: SIGINT at its default, even where this test
# started with it ignored (as a background job does).
FOREGROUND = (sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
              "os.execvp(sys.argv[1], sys.argv[1:])")  # fmt: skip


def start_sleeping(cwd, seconds="60"):
    process = subprocess.Popen(
        [*FOREGROUND, sys.executable, "-m", "stages", "probe", "sleep", seconds],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    stage = int(process.stdout.readline())
    return process, stage


def gone(pid, within=10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_client_reaches_the_stage(stages_copy, signum):
    """Ctrl-C (SIGINT to the foreground group) or SIGTERM: the stage gets it and ends as it would."""
    warm(stages_copy)
    process, stage = start_sleeping(stages_copy)
    assert stage != process.pid
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=30)
    assert gone(stage)
    if signum == signal.SIGINT:  # the probe does not catch it: Python's traceback, killed by SIGINT
        assert "KeyboardInterrupt" in stderr
    assert process.returncode == -signum


def test_an_ignored_signal_stays_ignored(stages_copy):
    """A background job starts with SIGINT ignored: its stage ignores Ctrl-C, as its own process would."""
    warm(stages_copy)
    ignoring = (sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execvp(sys.argv[1], sys.argv[1:])")  # fmt: skip
    command = [*ignoring, sys.executable, "-m", "stages", "probe", "sleep", "1"]
    process = subprocess.Popen(
        command, cwd=stages_copy, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    int(process.stdout.readline())
    os.killpg(process.pid, signal.SIGINT)
    assert json.loads(process.communicate(timeout=30)[0])["argv"] == ["sleep", "1"]
    assert process.returncode == 0


def test_a_killed_client_takes_its_stage_with_it(stages_copy):
    warm(stages_copy)
    process, stage = start_sleeping(stages_copy)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert gone(stage)


@pytest.mark.e2e
def test_ctrl_c_during_dvc_repro_stops_the_stage_and_writes_nothing(rebuilt):
    """A training run stopped by Ctrl-C in `dvc repro`: no stage left running, no output written."""
    warm(rebuilt)
    edit_params(rebuilt, lambda p: p["datasets"]["moons"]["train"].update(epochs=100_000))
    before = output_md5s(rebuilt)
    dvc = subprocess.Popen(
        [*FOREGROUND, "dvc", "repro", "train@moons"],
        cwd=rebuilt,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = ""
    while "epoch" not in output:  # training is under way
        line = dvc.stdout.readline()
        assert line, output
        output += line
    os.killpg(dvc.pid, signal.SIGINT)
    output += dvc.communicate(timeout=60)[0]
    assert dvc.returncode != 0, output
    assert ", 0 running," in status(rebuilt).stdout  # the worker has no stage left
    assert not list((rebuilt / "models").glob(".*.tmp"))
    trained = {
        out["path"]
        for out in yaml.safe_load((rebuilt / "dvc.lock").read_text())["stages"]["train@moons"]["outs"]
    }
    for path, md5 in before.items():  # DVC removed the stage's outputs before it ran; the rest stay
        if path in trained:
            assert not (rebuilt / path).exists(), path
        else:
            assert hashlib.md5((rebuilt / path).read_bytes()).hexdigest() == md5, path


def test_a_killed_worker_ends_its_stage_in_one_line_and_a_new_one_takes_over(tmp_path):
    folder = copy_stages(tmp_path / "project")
    old = warm(folder)
    process, stage = start_sleeping(folder)
    os.kill(old, signal.SIGKILL)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert_one_line(stderr.strip(), f"the stage worker (pid {old}) was killed", start="error: ")
    assert "stages.probe sleep 60" in stderr
    assert gone(stage)
    assert warm(folder) != old


# ----------------------------------------------------------------------------- fork-safe, private


def test_the_worker_idles_on_one_thread(stages_copy):
    pid = warm(stages_copy)
    threads = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if "Threads" in line)
    assert threads.split()[1] == "1"
    assert probe(stages_copy)[0]["threads"] == 1  # the child starts none either until it computes


def test_the_sockets_folder_is_only_this_users(stages_copy):
    folder = Path(os.environ[worker.DIRECTORY])
    assert folder.stat().st_mode & 0o777 == 0o700
    assert folder.stat().st_uid == os.getuid()


def as_nobody_connect(path: Path) -> str:
    """Connect to the socket as another user (nobody), ask for its status: what came back, or the error."""
    code = f"""
import os, socket, sys
os.setgid(65534); os.setuid(65534)
sock = socket.socket(socket.AF_UNIX)
try:
    sock.connect({str(path)!r})
    sock.sendall(b'\\x00\\x00\\x00\\x12{{"kind": "status"}}')
    print(repr(sock.recv(1000)))
except OSError as error:
    print(type(error).__name__)
"""
    return sh(sys.executable, "-c", code, cwd="/").stdout.strip()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_user_can_neither_reach_nor_use_the_worker(stages_copy):
    warm(stages_copy)
    folder = Path(os.environ[worker.DIRECTORY])
    path = worker.socket_path(folder, sh(sys.executable, "-c", KEY, cwd=stages_copy).stdout.strip())
    assert path.exists()
    assert as_nobody_connect(path) == "PermissionError"  # the folder: only its owner enters it
    mode = folder.stat().st_mode
    os.chmod(folder, 0o711)
    os.chmod(path, 0o777)
    try:
        # The credentials: served nothing, the connection closed.
        assert as_nobody_connect(path) in ("b''", "ConnectionResetError", "BrokenPipeError")
    finally:
        os.chmod(folder, mode & 0o777)
        os.chmod(path, 0o755)
    assert worker_pid(stages_copy) is not None


def test_a_folder_open_to_others_is_refused_with_one_line(stages_copy, tmp_path):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    shown, result = probe(stages_copy, env=environ(BOUNDARY_LAB_WORKER_DIR=str(folder)))
    assert shown["value"] == "first"  # it ran, in its own process
    lines = result.stderr.splitlines()
    assert lines == [
        f"warning: no stage worker ({folder} is open to other users): stages.probe runs in its own process",
        "to stderr",
    ]
    assert list(folder.iterdir()) == []


def test_a_matplotlibrc_here_runs_the_stage_in_its_own_process(stages_copy):
    """matplotlib reads ./matplotlibrc as it loads: the worker, loaded elsewhere, never has."""
    (stages_copy / "matplotlibrc").write_text("figure.dpi: 50\n")
    try:
        shown, result = probe(stages_copy)
    finally:
        (stages_copy / "matplotlibrc").unlink()
    assert shown["value"] == "first"
    assert result.stderr.splitlines() == [
        "warning: no stage worker (a matplotlibrc here, which the worker loaded without): "
        "stages.probe runs in its own process",
        "to stderr",
    ]


def test_the_worker_works_outside_the_project(stages_copy):
    """It may be a clone that goes away (a sweep's trial, a queued experiment's temporary folder)."""
    pid = warm(stages_copy)
    assert os.readlink(f"/proc/{pid}/cwd") == os.environ[worker.DIRECTORY]


def test_an_unwritable_folder_falls_back_with_one_line(stages_copy, tmp_path):
    shown, result = probe(stages_copy, env=environ(BOUNDARY_LAB_WORKER_DIR="/proc/boundary-lab"))
    assert shown["value"] == "first"
    [notice, rest] = result.stderr.splitlines()
    assert notice.startswith("warning: no stage worker (/proc/boundary-lab: ") and rest == "to stderr"


# ----------------------------------------------------------------------------- lifecycle


def test_status_and_stop(tmp_path):
    folder = copy_stages(tmp_path / "project")
    env = environ(BOUNDARY_LAB_WORKER_DIR=str(tmp_path / "workers"))
    none = status(folder, env)
    assert none.returncode == 1 and len(none.stdout.splitlines()) == 1
    stopped = sh(sys.executable, "-m", "stages.worker", "stop", cwd=folder, env=env)
    assert stopped.stdout == ""  # none ran: still exit 0
    pid = warm(folder, env)
    shown = status(folder, env)
    assert shown.returncode == 0 and len(shown.stdout.splitlines()) == 1 and str(pid) in shown.stdout
    sh(sys.executable, "-m", "stages.worker", "stop", cwd=folder, env=env)
    assert gone(pid)
    assert status(folder, env).returncode == 1


def test_an_idle_worker_exits(tmp_path):
    folder = copy_stages(tmp_path / "project")
    env = environ(BOUNDARY_LAB_WORKER_DIR=str(tmp_path / "workers"), BOUNDARY_LAB_WORKER_IDLE="1")
    probe(folder, env=env)  # starts one, which exits after a second without a stage
    log = next((tmp_path / "workers").glob("*.log"), None)
    deadline = time.monotonic() + 60
    while log is None or "exits" not in log.read_text():
        assert time.monotonic() < deadline, "no worker exited within 60 s"
        time.sleep(0.2)
        log = next((tmp_path / "workers").glob("*.log"), None)
    pid = int(log.read_text().split()[1])
    assert gone(pid)
    assert not list((tmp_path / "workers").glob("*.sock"))


def test_the_first_run_starts_one_in_the_background(tmp_path):
    folder = copy_stages(tmp_path / "project")
    env = environ(BOUNDARY_LAB_WORKER_DIR=str(tmp_path / "workers"))
    first, result = probe(folder, env=env)
    assert result.stderr == "to stderr\n"  # no notice: the first run is a normal run
    pid = warm(folder, env)
    assert first["pid"] != pid
    try:
        served, _ = probe(folder, env=env)
        assert served["pid"] not in (first["pid"], pid)
    finally:
        sh(sys.executable, "-m", "stages.worker", "stop", cwd=folder, env=env)


def test_a_long_folder_name_is_served(tmp_path):
    """A socket's address holds about 100 bytes; the folder's name may be longer."""
    folder = copy_stages(tmp_path / "project")
    workers = tmp_path / ("w" * 100)
    env = environ(BOUNDARY_LAB_WORKER_DIR=str(workers))
    try:
        pid = warm(folder, env)
        assert probe(folder, env=env)[0]["pid"] != pid
        assert worker_pid(folder, env) == pid
    finally:
        sh(sys.executable, "-m", "stages.worker", "stop", cwd=folder, env=env)


def test_off_starts_no_worker(tmp_path):
    folder = copy_stages(tmp_path / "project")
    env = environ(BOUNDARY_LAB_WORKER_DIR=str(tmp_path / "workers"), BOUNDARY_LAB_WORKER="off")
    probe(folder, env=env)
    time.sleep(0.5)
    assert not (tmp_path / "workers").exists() or not list((tmp_path / "workers").iterdir())


# ----------------------------------------------------------------------------- the pipeline's bytes


@pytest.mark.e2e
def test_a_forced_repro_writes_the_same_bytes_with_the_worker_off(rebuilt):
    """`built` ran through the worker and reproduced the committed lock; off, every stage in its own
    process, a forced run over one dataset writes every byte the same."""
    before = output_md5s(rebuilt)
    result = sh("dvc", "repro", "--force", "--no-run-cache", "--glob", "*@spiral", cwd=rebuilt,
                env=environ(BOUNDARY_LAB_WORKER="off"))  # fmt: skip
    assert len(ran(result)) == 7
    assert output_md5s(rebuilt) == before


def test_no_other_module_imports_the_worker():
    """The runner is only ever the entry point: no stage module imports it (no import circle)."""
    for path in (ROOT / "stages").glob("*.py"):
        if path.name not in ("__main__.py", "worker.py"):
            assert "stages.worker" not in path.read_text(), path.name


def test_socket_messages_carry_file_descriptors(tmp_path):
    left, right = socket.socketpair()
    with left, right, open(tmp_path / "f", "w") as file:
        worker.send(left, {"a": "x" * 200_000}, fds=[file.fileno()])
        message, fds = worker.receive(right, fds=3)
        assert message == {"a": "x" * 200_000} and len(fds) == 1
        os.write(fds[0], b"through")
        os.close(fds[0])
    assert (tmp_path / "f").read_text() == "through"


@pytest.mark.e2e
def test_a_queue_of_two_serves_both_experiments_at_once(rebuilt):
    """`dvc queue start -j 2`: two experiments' stages served side by side, each with its own params
    and folder, each writing what the same training writes alone in a process of its own."""
    warm(rebuilt)
    for lr in ("0.02", "0.03"):
        name = f"lr-{lr.replace('.', '')}"
        sh("dvc", "exp", "run", "--queue", "-S", f"datasets.moons.train.lr={lr}", "-n", name, cwd=rebuilt)
    sh("dvc", "queue", "start", "-j", "2", cwd=rebuilt)
    try:
        deadline = time.monotonic() + 300
        while re.search(r"\b(Queued|Running)\b", sh("dvc", "queue", "status", cwd=rebuilt).stdout):
            assert time.monotonic() < deadline, "the queue did not finish in 300 s"
            time.sleep(1)
    finally:
        sh("dvc", "queue", "stop", cwd=rebuilt)
    queued = experiments(rebuilt)
    assert {"lr-002", "lr-003"} <= set(queued)
    assert queued["lr-002"]["metrics"] != queued["lr-003"]["metrics"]
    sh("dvc", "exp", "apply", "lr-003", cwd=rebuilt)  # its params and outputs in the workspace
    model = rebuilt / "models" / "moons.safetensors"
    queued_model = model.read_bytes()
    sh(sys.executable, "-m", "stages.train", "moons", cwd=rebuilt, env=environ(BOUNDARY_LAB_WORKER="off"))
    assert model.read_bytes() == queued_model  # trained alone, in its own process: the same bytes
