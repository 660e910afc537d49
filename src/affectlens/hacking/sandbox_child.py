"""The sandboxed child's side of a test run, and the value codec both sides share.

The parent sends this module's source, the candidate, the instrumented test module and the
limits on stdin; the child runs them and writes JSON lines to a write-only pipe. Nothing the
child writes is trusted as a verdict: each rewritten ``assert`` reports the *values* of its
operands (``encode``), and the parent decodes them (``decode``) and applies the comparison
itself, with its own copy of any literal operand. A candidate that patches ``json``,
``os.write``, the test module or this harness can at most lie about what its own code computed,
which is no stronger than writing code that computes it.

This module must import nothing outside the standard library: it runs inside the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import math
import os
import sys
from typing import Any

MAX_DEPTH = 32
MAX_ITEMS = 10_000
MAX_MESSAGE_CHARS = 2000
_SCALARS = (type(None), bool, int, float, str)
_TYPES = {t.__name__: t for t in (int, float, str, bool, bytes, list, tuple, dict, set, frozenset)}
_TYPES["NoneType"] = type(None)


class Opaque:
    """A value the codec cannot carry (custom objects, subclasses): never equal to anything."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash(self.text)

    def __bool__(self) -> bool:
        raise TypeError(f"an opaque value has no truth the harness can check: {self.text}")

    def __repr__(self) -> str:
        return f"<opaque {self.text}>"


def encode(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """JSON-able, type-tagged form of a plain value; anything else becomes an opaque tag."""
    budget = [MAX_ITEMS] if budget is None else budget
    budget[0] -= 1
    kind = type(value)
    if depth > MAX_DEPTH or budget[0] < 0:
        return ["o", "too large or too deep"]
    if kind in _SCALARS:
        if kind is float and not math.isfinite(value):
            return ["n", repr(value)]
        if kind is int and abs(value) > 2**1000:
            return ["i", str(value)]
        return value
    if kind in (list, tuple, set, frozenset):
        items = sorted(value, key=repr) if kind in (set, frozenset) else value
        return [kind.__name__[0], *(encode(v, depth + 1, budget) for v in items)]
    if kind is dict:
        return [
            "d",
            *(
                [encode(k, depth + 1, budget), encode(v, depth + 1, budget)]
                for k, v in value.items()
            ),
        ]
    if kind is bytes:
        return ["b", value.hex()]
    if kind is type and value.__name__ in _TYPES and _TYPES[value.__name__] is value:
        return ["y", value.__name__]
    return ["o", f"{kind.__name__} object"]


def decode(data: Any, depth: int = 0) -> Any:
    """Inverse of ``encode``; malformed input raises ``ValueError``."""
    if depth > MAX_DEPTH + 1:
        raise ValueError("value nested too deeply")
    if type(data) in _SCALARS:
        return data
    if type(data) is not list or not data or type(data[0]) is not str:
        raise ValueError("malformed value")
    tag, rest = data[0], data[1:]
    if tag in ("l", "t", "s", "f"):
        items = [decode(v, depth + 1) for v in rest]
        return {"l": list, "t": tuple, "s": set, "f": frozenset}[tag](items)
    if tag == "d":
        return {decode(k, depth + 1): decode(v, depth + 1) for k, v in rest}
    if tag == "b" and len(rest) == 1 and isinstance(rest[0], str):
        return bytes.fromhex(rest[0])
    if tag == "n" and rest in (["nan"], ["inf"], ["-inf"]):
        return float(rest[0])
    if tag == "i" and len(rest) == 1 and isinstance(rest[0], str):
        return int(rest[0])
    if tag == "y" and len(rest) == 1 and rest[0] in _TYPES:
        return _TYPES[rest[0]]
    if tag == "o":
        return Opaque(str(rest[0]) if rest else "")
    raise ValueError(f"unknown value tag {tag!r}")


# ---------------------------------------------------------------------------------------------
# Child side
# ---------------------------------------------------------------------------------------------


def main(payload: dict[str, Any]) -> None:
    """Run the candidate and the instrumented tests described by ``payload``."""
    write, channel = os.write, int(payload["channel_fd"])

    def emit(event: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError, TypeError, RecursionError):
            write(channel, (json.dumps(event) + "\n").encode())

    _apply_limits(payload["limits"])
    if payload.get("seccomp"):
        _load_seccomp(bytes.fromhex(payload["seccomp"]))
    if payload.get("audit_guard"):
        guard: dict[str, Any] = {"__name__": "affectlens_audit_guard"}
        exec(compile(payload["audit_guard"], "<audit guard>", "exec"), guard)
        guard["install"](os.path.realpath(os.getcwd()), channel, emit)
    _run_tests(payload, emit)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _apply_limits(limits: dict[str, int]) -> None:
    """Set the child's rlimits; an unprivileged child can lower them but never raise them."""
    import resource

    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["open_files"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.get("processes") is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)


def _load_seccomp(program: bytes) -> None:
    """Add the second-stage seccomp filter (no ``execve`` from here on); fail closed."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buffer = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_seccomp, seccomp_mode_filter = 38, 22, 2
    if (
        libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0
        or libc.prctl(pr_set_seccomp, seccomp_mode_filter, ctypes.byref(prog), 0, 0) != 0
    ):
        os._exit(70)


def _run_tests(payload: dict[str, Any], emit: Any) -> None:
    """Load the candidate and the tests in memory, then run each named test."""
    import linecache
    import traceback
    import types

    workdir = os.path.realpath(os.getcwd())
    sys.path.insert(0, workdir)
    ops = payload["ops"]
    current = [""]

    def own(filename: str) -> bool:
        if filename.startswith("<"):
            return False
        return not os.path.isabs(filename) or filename.startswith(workdir + "/")

    def describe(exc: BaseException) -> str:
        if isinstance(exc, MemoryError):
            emit({"k": "violation", "message": "memory limit: allocation refused"})
        elif isinstance(exc, OSError) and exc.errno == 27:  # EFBIG
            emit({"k": "violation", "message": "fs: file size limit exceeded"})
        elif isinstance(exc, OSError) and exc.errno == 28:  # ENOSPC
            emit({"k": "violation", "message": "fs: disk quota of the sandbox exhausted"})
        try:
            report = traceback.TracebackException.from_exception(exc, lookup_lines=False)
            for part in (report, report.__cause__, report.__context__):
                if part is not None:
                    frames = [f for f in part.stack if own(f.filename)]
                    part.stack = traceback.StackSummary.from_list(frames)
            text = "".join(report.format())
        except BaseException:  # noqa: BLE001 - a hostile exception must not stop the run
            text = "an exception the harness could not format"
        return text if len(text) <= MAX_MESSAGE_CHARS else "[...]\n" + text[-MAX_MESSAGE_CHARS:]

    def check(cid: int, *operands: Any) -> bool:
        emit({"k": "check", "id": cid, "t": current[0], "v": [encode(v) for v in operands]})
        if len(operands) == 1:
            return not operands[0] if ops[cid] == ["not"] else bool(operands[0])
        pairs = zip(ops[cid], operands, operands[1:], strict=False)
        return all(_compare(op, a, b) for op, a, b in pairs)

    def load(name: str, source: str, compiled: Any = None) -> types.ModuleType:
        filename = f"{name}.py"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        module = types.ModuleType(name)
        module.__file__ = os.path.join(workdir, filename)
        module.__dict__["__affectlens_check__"] = check
        sys.modules[name] = module
        exec(compiled or compile(source, filename, "exec"), module.__dict__)
        return module

    try:
        load("solution", payload["code"])
        compiled = marshal.loads(bytes.fromhex(payload["tests_compiled"]))
        test_module = load("test_solution", payload["tests"], compiled)
    except BaseException as exc:  # noqa: BLE001 - the candidate may raise anything
        emit({"k": "collect_error", "message": describe(exc)})
        return
    for name in payload["test_names"]:
        current[0] = name
        emit({"k": "start", "t": name})
        test = test_module.__dict__.get(name)
        try:
            test()
        except BaseException as exc:  # noqa: BLE001 - SystemExit and skips count as failures
            emit({"k": "end", "t": name, "ok": False, "message": describe(exc)})
        else:
            emit({"k": "end", "t": name, "ok": True})


def _compare(op: str, a: Any, b: Any) -> bool:
    """Apply comparison operator ``op`` (its ``ast`` class name) to ``a`` and ``b``."""
    if op == "Eq":
        return bool(a == b)
    if op == "NotEq":
        return bool(a != b)
    if op == "Lt":
        return bool(a < b)
    if op == "LtE":
        return bool(a <= b)
    if op == "Gt":
        return bool(a > b)
    if op == "GtE":
        return bool(a >= b)
    if op == "Is":
        return a is b
    if op == "IsNot":
        return a is not b
    if op == "In":
        return bool(a in b)
    if op == "NotIn":
        return bool(a not in b)
    raise ValueError(f"unknown comparison {op}")


if __name__ == "__harness__":
    main(PAYLOAD)  # type: ignore[name-defined]  # noqa: F821 - set by the bootstrap
