"""Run untrusted candidate code against plain-Python tests in a contained child process.

The parent (``run_untrusted``) starts this very file as a script in a fresh Python process:

* isolated interpreter (``-I -S -B -u``: no site-packages, no user site, no env influence, no
  bytecode writes), a scrubbed environment (no HOME, minimal PATH) and a fresh temporary
  directory as its working directory, deleted afterwards;
* a new network namespace with no interfaces (``unshare --net``) where the system allows it;
* rlimits on CPU time, address space, file size, open files, processes and core dumps;
* its own session, so a wall-clock timeout kills the whole process group;
* an audit hook, installed before any candidate code runs, that refuses network use, process
  creation (fork, exec, subprocess, os.system - RLIMIT_NPROC does not bind for root), signals to
  other processes, ctypes, raising rlimits, and any file access outside the temporary directory
  (reads of the Python standard library excepted).

The candidate and the tests reach the child on stdin and are never written to disk, so the
candidate cannot read the tests' file; hidden tests are run by a separate call. Per-test outcomes
and containment violations stream back over an inherited file descriptor as JSON lines, so they
survive a child that dies half-way. The sandbox contains harm; it does not stop a candidate from
tampering with the tests inside its own process (patching ``time.perf_counter`` and the like) -
such cheating must stay possible so that the detector can observe it.

This module must import nothing outside the standard library: it is also the child's script.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import json
import math
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

SOLUTION_MODULE = "solution"
TEST_MODULE = "test_solution"
CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
MAX_VIOLATIONS = 50
MAX_MESSAGE_CHARS = 2000


@dataclass
class CaseOutcome:
    """Outcome of one test function: its name, whether it passed, and the failure text."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class SandboxResult:
    """Everything observed while running candidate code against a test module.

    Attributes:
        tests: One outcome per ``test_*`` function of the test code, in definition order.
        collection_error: Traceback if the candidate or the test module failed to load.
        stdout_tail: Last characters the child wrote to stdout.
        stderr_tail: Last characters the child wrote to stderr.
        timed_out: Whether the wall-clock limit killed the process group.
        violations: Containment events, e.g. ``"network: socket blocked"``, ``"timeout"``.
        returncode: The child's exit status (negative: killed by that signal).
        duration_s: Wall-clock seconds the child ran.
        isolation: ``"netns+audit"`` or ``"audit"`` (whether a network namespace was used).
    """

    tests: list[CaseOutcome]
    collection_error: str = ""
    stdout_tail: str = ""
    stderr_tail: str = ""
    timed_out: bool = False
    violations: list[str] = field(default_factory=list)
    returncode: int | None = None
    duration_s: float = 0.0
    isolation: str = ""

    @property
    def n_total(self) -> int:
        """Number of test functions."""
        return len(self.tests)

    @property
    def n_passed(self) -> int:
        """Number of test functions that passed."""
        return sum(t.passed for t in self.tests)

    @property
    def passed(self) -> bool:
        """True when the test module loaded and every one of its (at least one) tests passed."""
        return not self.collection_error and self.n_total > 0 and self.n_passed == self.n_total

    def failure_report(self, max_chars: int = 4000) -> str:
        """Human-readable account of what failed, as fed back to the model."""
        lines = [f"{self.n_passed}/{self.n_total} tests passed."]
        if self.collection_error:
            lines.append(f"Error while loading the tests:\n{self.collection_error}")
        lines += [f"FAILED {t.name}:\n{t.message}" for t in self.tests if not t.passed]
        if self.timed_out:
            lines.append("The test run was stopped: it exceeded its time limit.")
        report = "\n".join(lines).strip()
        return report if len(report) <= max_chars else report[: max_chars - 15] + "\n[...truncated]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SandboxResult:
        """Inverse of ``to_dict``."""
        return cls(**{**data, "tests": [CaseOutcome(**t) for t in data["tests"]]})


def collect_test_names(test_code: str) -> list[str]:
    """Names of the module-level ``test_*`` functions in ``test_code``, in definition order."""
    tree = ast.parse(test_code)
    names = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]
    return list(dict.fromkeys(names))


@lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """``("unshare", "--net", "--")`` if new network namespaces can be created here, else ()."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    try:
        probe = subprocess.run([unshare, "--net", "--", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ()
    return (unshare, "--net", "--") if probe.returncode == 0 else ()


def run_untrusted(
    code: str,
    test_code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    file_size_mb: int = 16,
    open_files: int = 64,
    tail_chars: int = 2000,
) -> SandboxResult:
    """Run ``code`` as module ``solution`` and then the ``test_*`` functions of ``test_code``.

    Args:
        code: Candidate module source (untrusted).
        test_code: Test module source; it imports the candidate via ``from solution import ...``.
        timeout_s: Wall-clock limit for the whole run; the CPU-time limit is derived from it.
        memory_mb: Address-space limit of the child.
        file_size_mb: Largest file the child may write (stdout and stderr included).
        open_files: Most file descriptors the child may hold.
        tail_chars: How much of stdout and stderr to keep.

    Returns:
        The per-test outcomes, output tails, timeout flag and containment violations.
    """
    names = collect_test_names(test_code)
    prefix = _netns_prefix()
    limits = {
        "cpu_s": math.ceil(timeout_s) + 1,
        "memory_bytes": memory_mb * 2**20,
        "file_size_bytes": file_size_mb * 2**20,
        "open_files": open_files,
    }
    nonce = secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="affectlens-sandbox-", ignore_cleanup_errors=True)
        )
        out, err, channel = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(3))
        payload = {
            "code": code,
            "tests": test_code,
            "test_names": names,
            "channel_fd": channel.fileno(),
            "nonce": nonce,
            "limits": limits,
        }
        command = [*prefix, sys.executable, "-I", "-S", "-B", "-u", os.path.abspath(__file__)]
        started = time.monotonic()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env=CHILD_ENV,
            pass_fds=(channel.fileno(),),
            start_new_session=True,
        )
        timed_out = _communicate(proc, json.dumps(payload).encode(), timeout_s)
        duration = time.monotonic() - started
        events = _read_events(channel, nonce)
        stdout, stderr = (_tail(f, tail_chars) for f in (out, err))
    return _assemble(
        names, events, proc.returncode, timed_out, timeout_s, stdout, stderr, duration, prefix
    )


def _communicate(proc: subprocess.Popen[bytes], payload: bytes, timeout_s: float) -> bool:
    """Send ``payload`` and wait; on timeout (or any error) kill the group. True if timed out."""
    try:
        proc.communicate(payload, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return True
    except BaseException:
        _kill(proc)
        raise
    return False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group and the child itself, then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.wait()


def _tail(handle: Any, n_chars: int) -> str:
    """Last ``n_chars`` characters written to the temporary file ``handle``."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - 4 * n_chars))
    return handle.read().decode("utf-8", errors="replace")[-n_chars:]


def _read_events(channel: Any, nonce: str) -> list[dict[str, Any]]:
    """Parse the child's JSON lines, dropping malformed ones and any without the run's nonce."""
    channel.seek(0)
    events = []
    for line in channel.read().decode("utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.pop("nonce", None) == nonce:
            events.append(event)
    return events


def _assemble(
    names: list[str],
    events: list[dict[str, Any]],
    returncode: int | None,
    timed_out: bool,
    timeout_s: float,
    stdout: str,
    stderr: str,
    duration: float,
    prefix: tuple[str, ...],
) -> SandboxResult:
    """Turn the child's event stream and exit status into a ``SandboxResult``."""
    reported = {e["name"]: e for e in events if e.get("event") == "test" and "name" in e}
    collection = [str(e.get("message", "")) for e in events if e.get("event") == "collect_error"]
    violations = [str(e["message"]) for e in events if e.get("event") == "violation"]
    finished = any(e.get("event") == "done" for e in events)
    if collection:
        missing = "not run: the candidate or the test module failed to load"
    else:
        missing = "not run: the test process ended before this test finished"
    tests = [
        CaseOutcome(n, bool(reported[n].get("passed")), str(reported[n].get("message", "")))
        if n in reported
        else CaseOutcome(n, False, missing)
        for n in names
    ]
    if timed_out:
        violations.append(f"timeout: wall-clock limit of {timeout_s:g} s exceeded, group killed")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            violations.append("cpu: CPU time limit exceeded")
        elif sig == signal.SIGKILL:
            violations.append("killed: SIGKILL (memory limit or external kill)")
        else:
            violations.append(f"crash: killed by signal {sig}")
    elif not finished:
        violations.append(f"exit: the process exited early with status {returncode}")
    return SandboxResult(
        tests=tests,
        collection_error="\n".join(collection),
        stdout_tail=stdout,
        stderr_tail=stderr,
        timed_out=timed_out,
        violations=list(dict.fromkeys(violations)),
        returncode=returncode,
        duration_s=duration,
        isolation="netns+audit" if prefix else "audit",
    )


# ---------------------------------------------------------------------------------------------
# Child side: everything below runs inside the sandboxed process.
# ---------------------------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_READABLE_DEVICES = ("/dev/null", "/dev/urandom", "/dev/zero")
_PROCESS_EVENTS = {
    "os.fork": "process: fork blocked",
    "os.forkpty": "process: fork blocked",
    "os.system": "process: os.system blocked",
    "subprocess.Popen": "process: subprocess blocked",
    "os.exec": "process: exec blocked",
    "os.spawn": "process: spawn blocked",
    "os.posix_spawn": "process: spawn blocked",
    "os.kill": "process: signal to a process blocked",
    "os.killpg": "process: signal to a process blocked",
    "signal.pthread_kill": "process: signal to a process blocked",
    "resource.setrlimit": "limits: changing resource limits blocked",
    "resource.prlimit": "limits: changing resource limits blocked",
    "gc.get_objects": "tamper: gc introspection blocked",
    "gc.get_referrers": "tamper: gc introspection blocked",
    "gc.get_referents": "tamper: gc introspection blocked",
}
# Path-taking events and the positions of their path arguments that must stay in the sandbox.
_PATH_EVENTS = {
    "os.chdir": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.mkdir": (0,),
    "os.mkfifo": (0,),
    "os.mknod": (0,),
    "os.remove": (0,),
    "os.rename": (0, 1),
    "os.rmdir": (0,),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "shutil.rmtree": (0,),
}
_LISTING_EVENTS = ("os.listdir", "os.scandir")
_BLOCKED_IMPORTS = {
    "_ctypes": "tamper: ctypes blocked",
    "_posixsubprocess": "process: subprocess blocked",
}


def _child_main() -> None:
    """Entry point of the sandboxed child process."""
    payload = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    channel_fd, nonce = int(payload["channel_fd"]), str(payload["nonce"])

    def emit(event: dict[str, Any]) -> None:
        os.write(channel_fd, (json.dumps({**event, "nonce": nonce}) + "\n").encode())

    _apply_limits(payload["limits"])
    workdir = os.path.realpath(os.getcwd())
    _install_guard(workdir, channel_fd, emit)
    _run_tests(payload["code"], payload["tests"], payload["test_names"], workdir, emit)
    emit({"event": "done"})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _apply_limits(limits: dict[str, int]) -> None:
    """Set the child's rlimits (RLIMIT_NPROC only binds for non-root users)."""
    import resource

    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _install_guard(workdir: str, channel_fd: int, emit: Callable[[dict[str, Any]], None]) -> None:
    """Install the audit hook that contains the candidate; see the module docstring."""
    import _posixsubprocess
    import sysconfig

    paths = sysconfig.get_paths()
    readonly = tuple(
        {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")} | {"/usr/share/zoneinfo"}
    )
    denied = tuple({os.path.realpath(paths[k]) for k in ("purelib", "platlib")})
    seen: set[str] = set()

    def refuse(message: str) -> PermissionError:
        if message not in seen and len(seen) < MAX_VIOLATIONS:
            seen.add(message)
            emit({"event": "violation", "message": message})
        return PermissionError(f"sandbox: {message}")

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def resolve(path: Any) -> str | None:
        if path is None:
            return os.getcwd()
        if isinstance(path, int):
            return None
        return os.path.realpath(os.fsdecode(path))

    def check_open(path: Any, mode: Any, flags: Any) -> None:
        if isinstance(path, int):
            if path == channel_fd:
                raise refuse("tamper: opening the harness channel blocked")
            return
        real = resolve(path) or ""
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        )
        if inside(real, (workdir,)) or real == os.devnull:
            return
        library = inside(real, readonly) and not inside(real, denied)
        if not writing and (real in _READABLE_DEVICES or library):
            return
        raise refuse(f"fs: {'write' if writing else 'open'} outside sandbox {real}")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            check_open(*args[:3])
        elif event.startswith("socket."):
            raise refuse("network: socket blocked")
        elif event.startswith("ctypes."):
            raise refuse("tamper: ctypes blocked")
        elif event in _PROCESS_EVENTS:
            raise refuse(_PROCESS_EVENTS[event])
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                real = resolve(args[i])
                if real is not None and not inside(real, (workdir,)):
                    raise refuse(f"fs: {event} outside sandbox {real}")
        elif event in _LISTING_EVENTS:
            real = resolve(args[0])
            if real is not None and not inside(real, (workdir, *readonly)):
                raise refuse(f"fs: {event} outside sandbox {real}")
        elif event == "import" and args[0] in _BLOCKED_IMPORTS:
            raise refuse(_BLOCKED_IMPORTS[args[0]])

    def blocked_fork_exec(*_args: Any, **_kwargs: Any) -> None:
        raise refuse("process: subprocess blocked")

    _posixsubprocess.fork_exec = blocked_fork_exec
    sys.addaudithook(hook)


def _run_tests(
    code: str, tests: str, names: list[str], workdir: str, emit: Callable[[dict[str, Any]], None]
) -> None:
    """Load the candidate and the test module in memory, then run each named test."""
    import linecache
    import traceback
    import types

    harness = os.path.abspath(__file__)
    # Tracebacks through the guard must not make linecache read the harness file.
    linecache.cache[harness] = (0, None, [], harness)
    sys.path.insert(0, workdir)

    def own(filename: str) -> bool:
        """Whether a traceback frame is the candidate's or the tests' (not stdlib/harness)."""
        return not os.path.isabs(filename) or filename.startswith(workdir + "/")

    def describe(exc: BaseException) -> str:
        if isinstance(exc, MemoryError):
            emit({"event": "violation", "message": "memory limit: allocation refused"})
        elif isinstance(exc, OSError) and exc.errno == errno.EFBIG:
            emit({"event": "violation", "message": "fs: file size limit exceeded"})
        report = traceback.TracebackException.from_exception(exc, lookup_lines=False)
        for part in (report, report.__cause__, report.__context__):
            if part is not None:
                frames = [f for f in part.stack if own(f.filename)]
                part.stack = traceback.StackSummary.from_list(frames)
        text = "".join(report.format())
        return text if len(text) <= MAX_MESSAGE_CHARS else "[...]\n" + text[-MAX_MESSAGE_CHARS:]

    def load(name: str, source: str) -> types.ModuleType:
        filename = f"{name}.py"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(name)
        module.__file__ = os.path.join(workdir, filename)
        sys.modules[name] = module
        exec(compile(source, filename, "exec"), module.__dict__)
        return module

    try:
        load(SOLUTION_MODULE, code)
        test_module = load(TEST_MODULE, tests)
    except BaseException as exc:  # noqa: BLE001 - the candidate may raise anything
        emit({"event": "collect_error", "message": describe(exc)})
        return
    for name in names:
        test = test_module.__dict__.get(name)
        if not callable(test):
            emit({"event": "test", "name": name, "passed": False, "message": "test removed"})
            continue
        try:
            test()
        except BaseException as exc:  # noqa: BLE001 - SystemExit and skips count as failures
            emit({"event": "test", "name": name, "passed": False, "message": describe(exc)})
        else:
            emit({"event": "test", "name": name, "passed": True, "message": ""})


if __name__ == "__main__":
    _child_main()
