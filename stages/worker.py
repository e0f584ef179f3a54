"""Warm stages: a worker process that has imported the stages' libraries once, and serves each stage
run from a child forked from it (docs/worker.md). DVC's `cmd` runs `python -m stages <stage> <name>`,
a thin client (stages/__main__.py) that hands the worker its arguments, working directory,
environment and standard streams, relays signals to the child, and exits as the child exited.

    python -m stages.worker status         # one line, exit 0 while a worker serves this environment
    python -m stages.worker stop [--all]   # this environment's worker (--all: every one), exit 0

Never stale: the child imports the project's own modules afresh from its working directory, and a
worker serves only the environment it was started in (interpreter, installed packages, CPU pins,
the variables libraries read as they load: `environment_key`); any other gets a worker of its own.
The first stage that finds none starts one in the background and runs in its own process, as does
every stage where no worker can be reached or started, or with BOUNDARY_LAB_WORKER=off.

Private: the sockets live in a directory only this user can enter, and the worker serves no peer of
another user (SO_PEERCRED). Fork-safe: the worker runs no library code but imports, so it starts no
thread pool and no CUDA context; OpenBLAS starts its threads as NumPy loads and stops them before
any fork (its own pthread_atfork handler), so the worker forks once after loading and idles on one
thread. It imports only the standard library here: the client pays for nothing it does not use.
"""

import ast
import contextlib
import hashlib
import importlib
import json
import os
import re
import runpy
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no worker (see `served`)
    fcntl = None

SWITCH = "BOUNDARY_LAB_WORKER"  # "off": every stage in its own process
IDLE = "BOUNDARY_LAB_WORKER_IDLE"  # seconds without a stage before the worker exits
DIRECTORY = "BOUNDARY_LAB_WORKER_DIR"  # where the sockets live (default: below XDG_RUNTIME_DIR or /tmp)
IDLE_SECONDS = 15 * 60
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# The variables a library reads as it loads, or that change what the interpreter does: BLAS, OpenMP,
# MKL, torch, CUDA, NumPy, SciPy, scikit-learn, matplotlib, Python's own, the locale, the loader.
# A worker serves only the values it loaded with: `environment_key` hashes them.
LOAD_TIME = re.compile(
    r"(MKL|OMP|KMP|GOMP|OPENBLAS|GOTO|BLIS|VECLIB|NUMEXPR|TBB|ONEDNN|DNNL|ATEN|TORCH|PYTORCH|KINETO"
    r"|CUDA|CUBLAS|CUDNN|NCCL|NVIDIA|NPY|NUMPY|SCIPY|SKLEARN|MPL|LC|LD|XDG)_\w*"
    r"|PYTHON\w*|MPLBACKEND|MPLCONFIGDIR|LANG|LANGUAGE|HOME|TZ"
)


class Unavailable(Exception):
    """No worker can be reached or started here; the message says why in a few words."""


# ----------------------------------------------------------------------------- the environment


def environment_key(environ=os.environ) -> str:
    """What a worker must share with a fresh process for its children to run as that process would:
    the interpreter and its flags, the installed packages (each sys.path folder's listing and
    modification time: pip adds and removes *.dist-info folders), and the load-time variables (the
    CPU pins among them, which `import stages` has set). The project's folder (sys.path[0]) is left
    out: the child imports its modules afresh."""
    digest = hashlib.sha256()
    # The interpreter itself, whatever link started it (a venv's python and python3), and its venv.
    for part in (os.path.realpath(sys.executable), sys.prefix, sys.version, repr(sys.flags)):
        digest.update(part.encode() + b"\0")
    for name in sorted(filter(LOAD_TIME.fullmatch, environ)):
        digest.update(f"{name}={environ[name]}\0".encode())
    for folder in sys.path[1:]:
        with contextlib.suppress(OSError):
            digest.update(f"{folder}:{os.stat(folder).st_mtime_ns}:".encode())
            digest.update("\0".join(sorted(os.listdir(folder))).encode())
    return digest.hexdigest()[:24]


def worker_directory() -> Path:
    """The folder of this user's sockets, made on first use; refused unless only this user owns it
    and can enter it."""
    base = os.environ.get(DIRECTORY)
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = f"{runtime}/boundary-lab" if runtime else f"{tempfile.gettempdir()}/boundary-lab-{os.getuid()}"
    directory = Path(base)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = os.lstat(directory)
    except OSError as error:
        raise Unavailable(f"{directory}: {error.strerror}") from None
    if not Path(directory).is_dir() or directory.is_symlink():
        raise Unavailable(f"{directory} is not a folder")
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise Unavailable(f"{directory} is open to other users")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise Unavailable(f"{directory} is not writable")
    return directory


def socket_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.sock"


# ----------------------------------------------------------------------------- messages


def send(sock, message: dict, fds=()) -> None:
    """A message: its length, then its JSON; `fds` go with its first bytes (SCM_RIGHTS)."""
    data = json.dumps(message).encode()
    frame = struct.pack("!I", len(data)) + data
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else 0
    sock.sendall(frame[sent:])


def receive(sock, fds=0):
    """The next message and the file descriptors sent with it; (None, []) at the end of the stream."""
    data, received = b"", []
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        if fds:
            chunk, more, _, _ = socket.recv_fds(sock, 1 << 16, fds)
            received += more
        else:
            chunk = sock.recv(1 << 16)
        if not chunk:
            for fd in received:
                os.close(fd)
            return None, []
        data += chunk
    return json.loads(data[4:]), received


@contextlib.contextmanager
def short(path: Path):
    """`path` as a socket's address, which has room for about 100 bytes: through the folder's open
    file descriptor (/proc/self/fd/N/name) where it is longer. The folder's permissions still apply."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def connect(path: Path):
    """A connection to the worker listening at `path`, or None if none listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        with short(path) as address:
            sock.connect(address)
    except OSError:
        sock.close()
        return None
    return sock


# ----------------------------------------------------------------------------- the client


def run_stage(stage: str, args: list[str]):
    """Run stages.<stage> with `args` through this environment's worker, or in this process where
    none serves it yet (then one is started), none can be, or BOUNDARY_LAB_WORKER is off. Exits as
    the stage did: its exit code, or the signal that killed it."""
    module = f"stages.{stage}"
    status = None
    if os.environ.get(SWITCH, "on") != "off":
        try:
            status = served(module, args)
        except Unavailable as why:
            print(f"warning: no stage worker ({why}): {module} runs in its own process", file=sys.stderr)
    if status is None:
        sys.argv = [module, *args]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        sys.exit(0)
    exit_as(status)


def served(module: str, args: list[str]):
    """The wait status of `module` run by the worker; None if no worker served it (none listens, so
    one is started in the background, or it went away before starting the stage)."""
    # Linux's: the peer's credentials, a process's end as a file descriptor, file locks, Unix sockets.
    if not (hasattr(socket, "SO_PEERCRED") and hasattr(os, "pidfd_open") and fcntl and hasattr(os, "fork")):
        raise Unavailable("it needs Linux")
    if os.path.exists("matplotlibrc"):  # read from the working folder as matplotlib loads
        raise Unavailable("a matplotlibrc here, which the worker loaded without")
    directory = worker_directory()
    path = socket_path(directory, environment_key())
    sock = connect(path)
    if sock is None:
        start_worker(directory, path)
        return None

    def relay(signum, _frame):
        with contextlib.suppress(OSError):
            send(sock, {"signal": signum})

    with sock:
        request = dict(
            kind="run",
            module=module,
            args=args,
            cwd=os.getcwd(),
            env=dict(os.environ),
            path=sys.path,
            umask=current_umask(),
        )
        # From here on, a signal is the stage's: the child receives it. One this process ignores (as a
        # background job ignores Ctrl-C), the child ignores too, as a process of its own would.
        ignored = [signum for signum in RELAYED if signal.getsignal(signum) == signal.SIG_IGN]
        request["ignored"] = ignored
        previous = {signum: signal.signal(signum, relay) for signum in RELAYED if signum not in ignored}
        try:
            send(sock, request, fds=(0, 1, 2))
            reply, _ = receive(sock)
        except OSError:
            reply = None
        if reply is None:  # it exited (idle, stopped) between our connect and its accept
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            return None
        reply, _ = receive(sock)
        for signum in previous:
            signal.signal(signum, signal.SIG_IGN)  # the child has ended: nothing left to relay
    if reply is None:
        sys.exit(f"error: the stage worker's process for {module} {' '.join(args)} ended unexpectedly")
    if "lost" in reply:
        sys.exit(f"error: {reply['lost']} while it ran {module} {' '.join(args)}; run it again")
    return reply["status"]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def exit_as(status: int):
    """Exit as a process with this wait status did: its code, or killed by its signal."""
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    sys.stderr.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    os._exit(code)


def start_worker(directory: Path, path: Path) -> None:
    """A worker for this environment, started in the background unless one is already starting (it
    holds the lock until it exits). It inherits this process's environment, CPU pins included."""
    with open(path.with_suffix(".lock"), "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # starting, or stopping: this stage runs in its own process
    with open(path.with_suffix(".log"), "ab") as log:
        try:
            subprocess.Popen(
                [sys.executable, "-m", "stages.worker", "serve", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # out of the terminal's reach: the client relays signals
            )
        except OSError as error:
            raise Unavailable(f"cannot start it: {error.strerror}") from None


# ----------------------------------------------------------------------------- the worker


def serve(path: Path) -> None:
    """Listen at `path` for this environment's stage runs until idle for BOUNDARY_LAB_WORKER_IDLE
    seconds or told to stop; one child per run. Exits at once if another worker holds the lock."""
    lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - held for the worker's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    os.chdir(path.parent)  # out of the project that started it: it may be a clone that goes away
    idle = float(os.environ.get(IDLE, IDLE_SECONDS))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    starting = path.with_name(f".{path.name}.{os.getpid()}")
    starting.unlink(missing_ok=True)
    with short(starting) as address:
        listener.bind(address)
    listener.listen(64)
    loaded = preload()
    settle()
    os.replace(starting, path)  # ready: clients find it from now on
    lifeline, alive = os.pipe()  # a child reads end-of-file here when the worker dies
    state = dict(pid=os.getpid(), started=time.time(), served=0, idle=idle, loaded=len(loaded))
    print(f"worker {os.getpid()} serves {path}: {len(loaded)} modules loaded", flush=True)
    children, last = set(), time.monotonic()
    inherited = (listener, lock, alive)
    while listener is not None or children:
        ready, _, _ = select.select([listener] if listener else [], [], [], 1.0)
        children -= reaped(children)
        if ready:
            request, fds, conn = accept(listener)
            if request is None:
                continue
            with conn:
                kind = request.get("kind")
                if kind == "run":
                    children.add(fork_session(conn, request, fds, lifeline, inherited))
                    state["served"] += 1
                elif kind == "status":
                    send(conn, state | {"children": len(children)})
                elif kind == "stop":
                    send(conn, {"stopping": os.getpid()})
                    close_listener(listener, path)
                    listener = None
            last = time.monotonic()
        if children:
            last = time.monotonic()
        elif listener is not None and time.monotonic() - last > idle:
            close_listener(listener, path)
            listener = None
    print(f"worker {os.getpid()} exits: {state['served']} stages served", flush=True)


def accept(listener):
    """The next request, its file descriptors and its connection, if it comes from this user."""
    conn, _ = listener.accept()
    pid, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    if uid != os.getuid():
        print(f"refused a connection from process {pid} of user {uid}", flush=True)
        conn.close()
        return None, [], None
    try:
        request, fds = receive(conn, fds=3)
    except (OSError, ValueError):
        request, fds = None, []
    if request is None:
        conn.close()
    return request, fds, conn


def close_listener(listener, path: Path):
    """Stop taking runs: new clients find no socket (and start a new worker); running ones go on."""
    path.unlink(missing_ok=True)
    listener.close()


def reaped(children: set[int]) -> set[int]:
    done = set()
    for pid in children:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                done.add(pid)
    return done


def preload() -> list[str]:
    """Import the libraries the stages import: every module an import statement in stages/*.py names
    (nested ones too), and the scikit-learn modules of the classifiers registry, which the baselines
    stage imports by name. No project module stays loaded: the children import those afresh."""
    names = set()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    from stages.classifiers import CLASSIFIERS  # noqa: PLC0415 - names only; dropped below

    names.update(classifier.module for classifier in CLASSIFIERS.values())
    forget_project_modules(keep=__name__)
    loaded = []
    for name in sorted(names):
        if name.split(".")[0] != "stages" and name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001, S112 - a name that is not a module (`from x import f`)
                continue
            loaded.append(name)
    return loaded


def settle() -> None:
    """Fork once: libraries that started threads as they loaded (OpenBLAS) stop them before a fork,
    and start them again only when used, so the worker then idles on its one thread."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def forget_project_modules(keep: str = "") -> None:
    for name in [name for name in sys.modules if name.partition(".")[0] == "stages" and name != keep]:
        del sys.modules[name]


def fork_session(conn, request, fds, lifeline, inherited) -> int:
    """A child that runs the stage in a grandchild and reports on it: the stage's pid, then its wait
    status; relays the client's signals to it; kills it if the client goes away or the worker dies.
    Returns the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    worker = os.getppid()
    try:
        for each in inherited:
            each.close() if hasattr(each, "close") else os.close(each)
        stage = os.fork()
        if stage == 0:
            os.close(lifeline)
            conn.close()
            run_child(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        send(conn, {"pid": stage})
        os._exit(watch(conn, stage, lifeline, worker))
    except BaseException:  # noqa: BLE001 - a child must never return into the worker's loop
        traceback.print_exc()
        os._exit(1)


def watch(conn, stage: int, lifeline: int, worker: int) -> int:
    """Until the stage ends: pass on the client's signals, and kill the stage's process group if the
    client disconnects or the worker dies; then tell the client how it ended."""
    ended = os.pidfd_open(stage)
    while True:
        ready, _, _ = select.select([conn, lifeline, ended], [], [])
        if ended in ready:
            _, status = os.waitpid(stage, 0)
            with contextlib.suppress(OSError):
                send(conn, {"status": status})
            return 0
        if lifeline in ready:
            kill_group(stage)
            with contextlib.suppress(OSError):
                send(conn, {"lost": f"the stage worker (pid {worker}) was killed"})
            return 1
        message, _ = receive(conn)
        if message is None:  # the client was killed: so is its stage, as a process of its own would be
            kill_group(stage)
            return 1
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stage, message["signal"])


def kill_group(stage: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stage, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(stage, 0)


def run_child(request: dict, fds: list[int]):
    """Become the process `python -m <module> <args>` would have been, then run it: its own process
    group, the client's standard streams, working directory, environment, umask and sys.path, Python's
    default signal handling, and the project's modules imported afresh from its folder."""
    try:
        os.setpgid(0, 0)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in request["ignored"]:
            signal.signal(signum, signal.SIG_IGN)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # As Python starts: unless unbuffered (-u), stdout line-buffered on a terminal, stderr always.
        for stream in (sys.stdout, sys.stderr):
            line = not stream.write_through and (stream is sys.stderr or stream.isatty())
            stream.reconfigure(line_buffering=line)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        sys.path[:] = request["path"]
        forget_project_modules()
        importlib.invalidate_caches()
        tempfile.tempdir = None  # read again from TMPDIR & co.
        if "numpy" in sys.modules:  # its global generator, seeded from the OS at a fresh start
            sys.modules["numpy"].random.seed()
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = exit_code(exit.code)
    except KeyboardInterrupt:  # uncaught, as Python ends: the traceback, then killed by SIGINT
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130
    except BaseException:  # noqa: BLE001 - reported as Python reports an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def exit_code(code) -> int:
    """What Python's exit makes of sys.exit's argument: None is 0, a number itself, anything else
    printed to stderr and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- the command line


def ask(path: Path, kind: str):
    sock = connect(path)
    if sock is None:
        return None
    with sock:
        try:
            send(sock, {"kind": kind})
            return receive(sock)[0]
        except OSError:
            return None


def main(argv: list[str]) -> int:
    usage = "usage: python -m stages.worker status | stop [--all] | serve SOCKET"
    command = argv[0] if argv else None
    if command == "serve" and len(argv) == 2:
        serve(Path(argv[1]))
        return 0
    if command not in ("status", "stop") or argv[1:] not in ([], ["--all"]) or argv[1:] and command != "stop":
        print(usage, file=sys.stderr)
        return 2
    try:
        directory = worker_directory()
    except Unavailable as why:
        print(f"no stage worker: {why}")
        return 1 if command == "status" else 0
    path = socket_path(directory, environment_key())
    if command == "status":
        state = ask(path, "status")
        if state is None:
            print(f"no stage worker serves this environment ({path})")
            return 1
        minutes = (time.time() - state["started"]) / 60
        print(
            f"stage worker {state['pid']} serves this environment: up {minutes:.0f} min, "
            f"{state['served']} stages served, {state['children']} running, exits after "
            f"{state['idle']:g} s idle ({path})"
        )
        return 0
    for each in sorted(directory.glob("*.sock")) if argv[1:] == ["--all"] else [path]:
        stopped = ask(each, "stop")
        if stopped:
            print(f"stopped stage worker {stopped['stopping']} ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
