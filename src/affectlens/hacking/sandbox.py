"""Run untrusted candidate code against plain-Python tests, and judge the outcome outside it.

Containment is the kernel's (``sandbox_bwrap``): each run is a fresh bubblewrap sandbox, an
unprivileged uid in its own namespaces under seccomp and rlimits, that sees only the Python
interpreter and a small tmpfs. Where no such tool works (macOS, a container without user
namespaces) ``run_untrusted`` refuses, unless the caller opted into the old in-process audit
hook (``allow_unsafe_no_sandbox``; ``--unsafe-no-sandbox`` on the CLI), which is no boundary.

The verdict is the parent's. The test module is rewritten before it is sent: every ``assert``
reports the values of its operands over a write-only pipe (``sandbox_child``), and the parent
decodes them and applies the comparison itself, using its own copy of literal operands. A test
passes only if the parent saw it end normally, every assert it ran held in the parent's eyes,
and every assert at the top of its body reported at all. A candidate that patches ``json``,
``os.write``, the tests or the harness in its own process can therefore only lie about values
its own code produced - which is what special-casing code does, and what the detector looks
for. Tampering that changes what the tests observe (patching ``time.perf_counter``) stays
possible on purpose, so that the detector can see it.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import marshal
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from affectlens.errors import AffectlensError
from affectlens.hacking import sandbox_bwrap
from affectlens.hacking.sandbox_child import Opaque, _compare, decode

CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "PYTHONNOUSERSITE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
}
MAX_CHANNEL_BYTES = 8 * 2**20
MAX_LINE_BYTES = 2**20
MAX_VIOLATIONS = 50
CHECK_HOOK = "__affectlens_check__"
BACKENDS = ("bwrap", "audit")
_HERE = Path(__file__).parent
_BOOTSTRAP = (
    "import json,sys\n"
    "p=json.loads(sys.stdin.buffer.read())\n"
    "exec(compile(p['harness'],'<harness>','exec'),{'__name__':'__harness__','PAYLOAD':p})\n"
)
_unsafe_allowed = False


class SandboxUnavailableError(AffectlensError):
    """No kernel sandbox works here and running without one was not explicitly allowed."""


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
        timed_out: Whether the wall-clock limit killed the sandbox.
        violations: Containment events, e.g. ``"timeout: ..."``, ``"tamper: ..."``.
        returncode: The sandbox's exit status (negative: killed by that signal).
        duration_s: Wall-clock seconds the run took.
        isolation: ``"bwrap"`` (kernel sandbox) or ``"audit"``/``"netns+audit"`` (unsafe).
        check_digests: ``test#assert:digest`` of the values each executed assert reported
            (literal operands left out), in order: compared with the reference solution's.
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
    check_digests: list[str] = field(default_factory=list)

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


def allow_unsafe_no_sandbox(allowed: bool = True) -> None:
    """Let ``run_untrusted`` fall back to the in-process audit hook where no sandbox works.

    Only for a user who said so explicitly (``--unsafe-no-sandbox``): the fallback is not a
    security boundary.
    """
    global _unsafe_allowed
    _unsafe_allowed = allowed


def default_backend() -> str:
    """``"bwrap"`` where the kernel sandbox works, else ``"audit"`` if allowed, else raise."""
    if sandbox_bwrap.bwrap_executable():
        return "bwrap"
    if _unsafe_allowed:
        return "audit"
    raise SandboxUnavailableError(
        "no kernel sandbox works here (bubblewrap with user namespaces, and libseccomp); "
        "install bubblewrap, or pass --unsafe-no-sandbox to run model-written code without one"
    )


def collect_test_names(test_code: str) -> list[str]:
    """Names of the module-level ``test_*`` functions in ``test_code``, in definition order."""
    tree = ast.parse(test_code)
    names = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------------------------
# Instrumenting the tests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    """One ``assert`` of the test module, as the parent judges it."""

    ops: tuple[str, ...]
    literals: tuple[tuple[int, Any], ...]
    line: int
    source: str
    required_by: str | None


@lru_cache(maxsize=64)
def instrument(test_code: str) -> tuple[str, tuple[_Check, ...]]:
    """The test module compiled with each ``assert`` reporting its operands (marshalled, hex),
    and the parent's checks."""
    tree = ast.parse(test_code)
    checks: list[_Check] = []
    required: dict[int, str] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            for statement in node.body:
                if isinstance(statement, ast.Assert):
                    required[id(statement)] = node.name

    class Rewrite(ast.NodeTransformer):
        def visit_Assert(self, node: ast.Assert) -> ast.AST:
            test = node.test
            if isinstance(test, ast.Compare):
                operands, ops = [test.left, *test.comparators], [type(o).__name__ for o in test.ops]
            elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
                operands, ops = [test.operand], ["not"]
            else:
                operands, ops = [test], ["truth"]
            parsed = [_literal(o) for o in operands]
            literals = tuple((i, v) for i, (ok, v) in enumerate(parsed) if ok)
            checks.append(
                _Check(tuple(ops), literals, node.lineno, ast.unparse(test), required.get(id(node)))
            )
            call = ast.Call(
                ast.Name(CHECK_HOOK, ast.Load()),
                [ast.Constant(len(checks) - 1), *operands],
                [],
            )
            message = [node.msg] if node.msg else []
            failure = ast.Call(ast.Name("AssertionError", ast.Load()), message, [])
            replacement = ast.If(ast.UnaryOp(ast.Not(), call), [ast.Raise(failure, None)], [])
            return ast.copy_location(replacement, node)

    tree = ast.fix_missing_locations(Rewrite().visit(tree))
    # Compiled here (the child runs this same interpreter), so tracebacks keep the original
    # line numbers and show the original source.
    code = compile(tree, "test_solution.py", "exec", dont_inherit=True)
    return marshal.dumps(code).hex(), tuple(checks)


def _literal(node: ast.AST) -> tuple[bool, Any]:
    """``(True, value)`` for a literal operand the parent can evaluate itself."""
    if any(isinstance(n, ast.Name) for n in ast.walk(node)):
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------


def run_untrusted(
    code: str,
    test_code: str,
    *,
    timeout_s: float = 10.0,
    memory_mb: int = 1024,
    file_size_mb: int = 16,
    open_files: int = 64,
    tail_chars: int = 2000,
    allow_processes: bool = False,
    backend: str | None = None,
) -> SandboxResult:
    """Run ``code`` as module ``solution`` and then the ``test_*`` functions of ``test_code``.

    Args:
        code: Candidate module source (untrusted).
        test_code: Test module source; it imports the candidate via ``from solution import ...``.
        timeout_s: Wall-clock limit for the whole run; the CPU-time limit is derived from it.
        memory_mb: Address-space limit of the child.
        file_size_mb: Largest file the child may write, and the size of its whole tmpfs.
        open_files: Most file descriptors the child may hold.
        tail_chars: How much of stdout and stderr to keep.
        allow_processes: Let the candidate fork and exec (inside the sandbox; a task that
            needs subprocesses says so). Never allowed by the audit fallback.
        backend: ``"bwrap"`` or ``"audit"``; default ``default_backend()``.

    Returns:
        The per-test outcomes as judged by the parent, output tails, timeout flag, violations.

    Raises:
        SandboxUnavailableError: No kernel sandbox, and the unsafe fallback was not allowed.
    """
    backend = backend or default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {backend!r}")
    names = collect_test_names(test_code)
    compiled, checks = instrument(test_code)
    payload: dict[str, Any] = {
        "harness": (_HERE / "sandbox_child.py").read_text(encoding="utf-8"),
        "code": code,
        "tests": test_code,
        "tests_compiled": compiled,
        "test_names": names,
        "ops": [list(c.ops) for c in checks],
        "limits": {
            "cpu_s": math.ceil(timeout_s) + 1,
            "memory_bytes": memory_mb * 2**20,
            "file_size_bytes": file_size_mb * 2**20,
            "open_files": open_files,
            "processes": 64 if backend == "bwrap" else 0,
        },
    }
    with contextlib.ExitStack() as stack:
        fds: list[int] = []
        if backend == "bwrap":
            command, seccomp_fd = _bwrap_command(stack, payload, file_size_mb, allow_processes)
            fds.append(seccomp_fd)
            cwd, isolation = None, "bwrap"
        else:
            workdir = tempfile.TemporaryDirectory(
                prefix="affectlens-sandbox-", ignore_cleanup_errors=True
            )
            cwd = stack.enter_context(workdir)
            payload["audit_guard"] = (_HERE / "sandbox_audit.py").read_text(encoding="utf-8")
            prefix = _netns_prefix()
            command = [*prefix, *_python_command()]
            isolation = "netns+audit" if prefix else "audit"
        out, err = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))
        read_end, write_end = os.pipe()
        stack.callback(os.close, read_end)
        payload["channel_fd"] = write_end
        fds.append(write_end)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                cwd=cwd,
                env=CHILD_ENV,
                pass_fds=tuple(fds),
                start_new_session=True,
            )
        finally:
            os.close(write_end)  # exactly once: another thread may reuse the number at once
        reader = _ChannelReader(read_end)
        timed_out = _communicate(proc, json.dumps(payload).encode(), timeout_s)
        reader.join(timeout=5)
        duration = time.monotonic() - started
        stdout, stderr = (_tail(f, tail_chars) for f in (out, err))
    return _judge(
        names,
        checks,
        reader,
        proc.returncode,
        timed_out,
        timeout_s,
        stdout,
        stderr,
        duration,
        isolation,
    )


def _bwrap_command(
    stack: contextlib.ExitStack, payload: dict[str, Any], file_size_mb: int, allow_processes: bool
) -> tuple[list[str], int]:
    """The bwrap command line, and the descriptor of its seccomp filter (to be inherited)."""
    executable = sandbox_bwrap.bwrap_executable()
    filters = sandbox_bwrap.seccomp_filters(allow_processes)
    if executable is None or filters is None:
        raise SandboxUnavailableError("the bubblewrap sandbox is not available here")
    first, second = filters
    payload["seccomp"] = second.hex()
    handle = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by stack
    handle.write(first)
    handle.seek(0)
    command = [
        executable,
        *sandbox_bwrap.namespace_args((file_size_mb + 1) * 2**20),
        *sandbox_bwrap.bind_args(),
        "--seccomp",
        str(handle.fileno()),
        "--",
        *_python_command(),
    ]
    return command, handle.fileno()


def _python_command() -> list[str]:
    return [sandbox_bwrap.interpreter(), "-I", "-S", "-B", "-u", "-c", _BOOTSTRAP]


class _ChannelReader(threading.Thread):
    """Drains the result pipe while the child runs, keeping at most ``MAX_CHANNEL_BYTES``."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.data = bytearray()
        self.flooded = False
        self.start()

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            if len(self.data) + len(chunk) > MAX_CHANNEL_BYTES:
                self.flooded = True
            else:
                self.data += chunk

    def events(self) -> list[dict[str, Any]]:
        """The well-formed JSON objects of the stream; malformed or oversized lines dropped."""
        events = []
        for line in bytes(self.data).split(b"\n"):
            if not line or len(line) > MAX_LINE_BYTES:
                continue
            try:
                event = json.loads(line)
            except (ValueError, RecursionError):
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


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
    """SIGKILL the sandbox's process group and bwrap itself (the PID namespace goes with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.kill()
    proc.wait()


def _tail(handle: Any, n_chars: int) -> str:
    """Last ``n_chars`` characters written to the temporary file ``handle``."""
    size = handle.seek(0, os.SEEK_END)
    handle.seek(max(0, size - 4 * n_chars))
    return handle.read().decode("utf-8", errors="replace")[-n_chars:]


# ---------------------------------------------------------------------------------------------
# Judging
# ---------------------------------------------------------------------------------------------


def _judge(
    names: list[str],
    checks: tuple[_Check, ...],
    reader: _ChannelReader,
    returncode: int | None,
    timed_out: bool,
    timeout_s: float,
    stdout: str,
    stderr: str,
    duration: float,
    isolation: str,
) -> SandboxResult:
    """Decide each test from the reported values, never from the child's own pass flags."""
    events = reader.events()
    violations = [str(e.get("message", ""))[:500] for e in events if e.get("k") == "violation"]
    collection = [str(e.get("message", ""))[:4000] for e in events if e.get("k") == "collect_error"]
    if reader.flooded:
        violations.append("tamper: the result channel was flooded; the rest was dropped")
    ends: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    failures: dict[str, str] = {}
    seen: dict[str, set[int]] = {n: set() for n in names}
    digests: list[str] = []
    for event in events:
        test = event.get("t")
        if not isinstance(test, str) or test not in ends:
            continue
        if event.get("k") == "end":
            ends[test].append(event)
        elif event.get("k") == "check":
            cid = event.get("id")
            if not isinstance(cid, int) or not 0 <= cid < len(checks):
                failures.setdefault(test, "tamper: a result for an assert the tests do not have")
                continue
            seen[test].add(cid)
            held, message, digest = _evaluate(checks[cid], event.get("v"))
            digests.append(f"{test}#{cid}:{digest}")
            if not held:
                failures.setdefault(test, message)
    if collection:
        missing = "not run: the candidate or the test module failed to load"
    else:
        missing = "not run: the test process ended before this test finished"
    outcomes = []
    for name in names:
        required = [i for i, c in enumerate(checks) if c.required_by == name]
        unreported = [checks[i].line for i in required if i not in seen[name]]
        if not ends[name]:
            outcomes.append(CaseOutcome(name, False, missing))
        elif len(ends[name]) > 1:
            outcomes.append(CaseOutcome(name, False, "tamper: more than one result for this test"))
            violations.append(f"tamper: forged results for {name}")
        elif not ends[name][0].get("ok"):
            outcomes.append(CaseOutcome(name, False, str(ends[name][0].get("message", ""))[:4000]))
        elif name in failures:
            outcomes.append(CaseOutcome(name, False, failures[name]))
        elif unreported:
            message = f"the harness received no result for the assert on line {unreported[0]}"
            outcomes.append(CaseOutcome(name, False, message))
        else:
            outcomes.append(CaseOutcome(name, True, ""))
    if timed_out:
        violations.append(f"timeout: wall-clock limit of {timeout_s:g} s exceeded, sandbox killed")
    elif returncode is not None and returncode < 0:
        sig = -returncode
        if sig == signal.SIGXCPU:
            violations.append("cpu: CPU time limit exceeded")
        elif sig == signal.SIGKILL:
            violations.append("killed: SIGKILL (memory limit or external kill)")
        else:
            violations.append(f"crash: killed by signal {sig}")
    elif returncode and not all(ends[n] for n in names) and not collection:
        violations.append(f"exit: the process exited early with status {returncode}")
    elif not collection and not all(ends[n] for n in names):
        violations.append("exit: the process exited early with status 0")
    return SandboxResult(
        tests=outcomes,
        collection_error="\n".join(collection),
        stdout_tail=stdout,
        stderr_tail=stderr,
        timed_out=timed_out,
        violations=list(dict.fromkeys(violations))[:MAX_VIOLATIONS],
        returncode=returncode,
        duration_s=duration,
        isolation=isolation,
        check_digests=digests,
    )


def _evaluate(check: _Check, raw: Any) -> tuple[bool, str, str]:
    """``(held, failure message, digest of the reported non-literal values)`` for one assert."""
    where = f"AssertionError: assert {check.source} (line {check.line})"
    literal = dict(check.literals)
    n_operands = 1 if check.ops[0] in ("truth", "not") else len(check.ops) + 1
    if not isinstance(raw, list) or len(raw) != n_operands:
        return False, f"{where}: malformed result", "malformed"
    reported = [v for i, v in enumerate(raw) if i not in literal]
    digest = hashlib.sha256(json.dumps(reported, sort_keys=True).encode()).hexdigest()[:16]
    try:
        values = [literal[i] if i in literal else decode(v) for i, v in enumerate(raw)]
        if check.ops == ("truth",):
            held = bool(values[0])
        elif check.ops == ("not",):
            held = not values[0]
        else:
            held = all(
                _compare(op, a, b) for op, a, b in zip(check.ops, values, values[1:], strict=False)
            )
    except (ValueError, TypeError, RecursionError, AttributeError) as exc:
        return False, f"{where}: the harness could not check the value ({exc})", digest
    if held:
        return True, "", digest
    shown = ", ".join(_short(v) for i, v in enumerate(values) if i not in literal)
    return False, f"{where}: got {shown}", digest


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, Opaque) else str(value)
    return text if len(text) <= 200 else text[:197] + "..."
