"""Pull the Python solution out of a free-form model answer.

Handles fenced blocks (backticks or tildes, labelled ``python``/``py`` or unlabelled, indented,
or left unterminated at the end of the answer) and raw code mixed with prose. Among several
blocks it prefers the last one that defines the target function. Test code the model echoed back
(``test_*`` functions, ``from solution import ...``, top-level asserts and calls to tests, and
``if __name__ == "__main__":`` blocks) is stripped, since it never belongs in the solution module.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

PYTHON_LANGS = frozenset({"", "python", "python3", "py", "py3", "ipython"})
CODE_START = re.compile(r"^\s*(def |async def |class |import |from |@)")
MAX_RAW_LINES = 400


@dataclass(frozen=True)
class _Block:
    lang: str
    text: str


def extract_code(answer: str, function_name: str | None = None) -> str:
    """Return the solution code in ``answer`` (empty string if there is none).

    Args:
        answer: The model's full reply.
        function_name: The function the task asks for; blocks defining it are preferred.
    """
    answer = answer.replace("\r\n", "\n").replace("\r", "\n")
    blocks = [b for b in _fenced_blocks(answer) if b.lang in PYTHON_LANGS]
    code = _choose(blocks, function_name) if blocks else _raw_code(answer)
    return strip_echoed_tests(code).strip("\n") + "\n" if code.strip() else ""


def _fenced_blocks(answer: str) -> list[_Block]:
    """All fenced blocks in order; an unterminated last fence runs to the end of the answer."""
    blocks: list[_Block] = []
    fence: str | None = None
    lang = ""
    body: list[str] = []
    for line in answer.split("\n"):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"(`{3,}|~{3,})\s*([\w+#.-]*)", stripped)
            if match:
                fence, lang, body = match.group(1), match.group(2).lower(), []
        elif stripped.startswith(fence) and not stripped.lstrip(fence[0]).strip():
            blocks.append(_Block(lang, textwrap.dedent("\n".join(body))))
            fence = None
        else:
            body.append(line)
    if fence is not None:
        blocks.append(_Block(lang, textwrap.dedent("\n".join(body))))
    return blocks


def parses(code: str) -> bool:
    """Whether ``code`` is syntactically valid Python."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def _defines(code: str, function_name: str) -> bool:
    """Whether ``code`` parses and defines ``function_name`` at module level."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function_name
        for node in tree.body
    )


def _choose(blocks: list[_Block], function_name: str | None) -> str:
    """The best block: last defining the target, else last mentioning it, else last parsing."""
    texts = [b.text for b in blocks if b.text.strip()]
    if not texts:
        return ""
    if function_name:
        for test in (
            lambda t: _defines(t, function_name),
            lambda t: re.search(rf"\bdef\s+{re.escape(function_name)}\s*\(", t) is not None,
        ):
            chosen = [t for t in texts if test(t)]
            if chosen:
                return chosen[-1]
    parsing = [t for t in texts if parses(t)]
    return (parsing or texts)[-1]


def _raw_code(answer: str) -> str:
    """Code in an answer without fences: the whole answer, or the longest parsable stretch."""
    if parses(answer) and any(CODE_START.match(line) for line in answer.split("\n")):
        return answer
    lines = answer.split("\n")[:MAX_RAW_LINES]
    for start, line in enumerate(lines):
        if not CODE_START.match(line):
            continue
        for end in range(len(lines), start, -1):
            candidate = "\n".join(lines[start:end])
            if parses(candidate):
                return candidate
    return ""


def strip_echoed_tests(code: str) -> str:
    """Remove test scaffolding (see module docstring) from ``code``; unparsable code is kept."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code
    drop: set[int] = set()
    for node in tree.body:
        if _is_test_scaffolding(node):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            drop.update(range(first, (node.end_lineno or node.lineno) + 1))
    if not drop:
        return code
    kept = [line for i, line in enumerate(code.split("\n"), start=1) if i not in drop]
    stripped = re.sub(r"\n{3,}", "\n\n\n", "\n".join(kept))
    return stripped if parses(stripped) else code


def _is_test_scaffolding(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name.startswith("test_")
    if isinstance(node, ast.ClassDef):
        return node.name.startswith("Test")
    if isinstance(node, ast.ImportFrom):
        return node.module == "solution"
    if isinstance(node, ast.Import):
        return any(alias.name == "solution" for alias in node.names)
    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        func = node.value.func
        return isinstance(func, ast.Name) and func.id.startswith("test_")
    if isinstance(node, ast.If):
        return "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test)
    return False
