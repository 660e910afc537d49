"""Writing text and JSON files atomically, so a reader or a crash never leaves half a file.

JSON is written strictly: NaN and infinities (an undefined CI, a correlation of a constant)
become ``null``, which every JSON reader accepts, instead of Python's non-standard ``NaN``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO


@contextmanager
def atomic_writer(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """A text handle on a temporary name beside ``path``, renamed to ``path`` on success.

    For outputs written piece by piece (an export of many records): the file appears whole
    or not at all. On an exception the temporary file is removed. The parent folder is
    created if needed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8", newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary name beside ``path``, flush it to disk, then rename it.

    The parent folder is created if needed.
    """
    with atomic_writer(path) as handle:
        handle.write(text)
    return path


def json_safe(value: Any) -> Any:
    """A JSON-safe copy: NaN/inf become ``None``, numpy scalars and tuples plain Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path: Path, data: Any, indent: int = 2) -> Path:
    """:func:`write_text_atomic` of strict JSON (see :func:`json_safe`)."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=indent, allow_nan=False))
