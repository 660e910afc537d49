"""Argument parsing shared by several sub-commands."""

from __future__ import annotations

import argparse
import difflib
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from affectlens.errors import AffectlensError

if TYPE_CHECKING:
    from affectlens.models.loading import LoadedModel


def parse_layers(value: str | None) -> list[int] | None:
    """``"6,10"`` or ``"4-12"`` (or a mix) to a sorted list; ``None`` stays ``None``."""
    if value is None:
        return None
    layers: set[int] = set()
    try:
        for part in value.split(","):
            if "-" in part.strip()[1:]:
                low, high = part.split("-", 1)
                layers.update(range(int(low), int(high) + 1))
            elif part.strip():
                layers.add(int(part))
    except ValueError:
        raise AffectlensError(f"bad --layers {value!r}: use e.g. 6,10 or 4-12") from None
    return sorted(layers)


def resolve_emotion(
    name: str, known: Collection[str], unknown: str = "unknown emotion {name!r}"
) -> str:
    """``name`` as one of ``known``, accepting ``at_ease`` (a story file's name) for ``at ease``.

    Case and ``_`` for spaces do not matter; an unknown name fails with the ``unknown``
    message and close matches.
    """
    if name in known:
        return name
    canonical = {" ".join(k.lower().replace("_", " ").split()): k for k in known}
    key = " ".join(name.lower().replace("_", " ").split())
    if key in canonical:
        return canonical[key]
    close = difflib.get_close_matches(key, list(canonical), n=3)
    hint = f"; did you mean {', '.join(canonical[c] for c in close)}?" if close else ""
    raise AffectlensError(unknown.format(name=name) + hint)


def parse_emotions(
    value: str, known: Collection[str], flag: str, unknown: str = "unknown emotion {name!r}"
) -> list[str]:
    """A comma-separated list of emotions, each resolved with :func:`resolve_emotion`."""
    names = [resolve_emotion(n.strip(), known, unknown) for n in value.split(",") if n.strip()]
    if not names:
        raise AffectlensError(f"{flag} names no emotion")
    return list(dict.fromkeys(names))


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_writable(path: Path, flag: str, *, folder: bool = False) -> None:
    """Refuse an output ``path`` (a file, or with ``folder`` a folder) that cannot be written.

    Run before any work starts, so a long job never dies at its last step. The nearest
    existing folder on the way to ``path`` (missing ones are created later) is probed by
    creating and removing a temporary file: that is what the real write will need, and unlike
    permission bits it also holds for root and for read-only file systems.
    """
    path = Path(path).expanduser()
    if path.is_dir() and not folder:
        raise AffectlensError(f"{flag} {path} is a folder; name a file in it")
    if path.exists() and not path.is_dir() and folder:
        raise AffectlensError(f"{flag} {path} is a file, not a folder")
    if path.is_file() and not os.access(path, os.W_OK):
        raise AffectlensError(f"{flag} {path} is not writable")
    start = path if folder else path.parent
    existing = _nearest_existing(start)
    if not existing.is_dir():
        raise AffectlensError(f"{flag} {path} cannot be created: {existing} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".affectlens-probe-")
    except OSError as exc:
        where = "" if existing == start else f" (its nearest existing folder, {existing})"
        reason = exc.strerror or type(exc).__name__
        raise AffectlensError(f"{flag} {path} cannot be written{where}: {reason}") from None
    os.close(handle)
    os.unlink(probe)


def add_model_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--model`` plus ``--device`` and ``--dtype`` overrides.

    With no default, ``--model`` falls back to the model a vectors file records.
    """
    from affectlens.models.packs import PACKS

    fallback = default or "the model recorded in the vectors file"
    parser.add_argument(
        "--model",
        default=default,
        help=f"offline pack ({', '.join(PACKS)}), local folder, .gguf file or hub id "
        f"(default: {fallback})",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="weight precision (default: float32 on cpu, bfloat16 on accelerators)",
    )


def load_model_from_args(args: argparse.Namespace, spec: str) -> LoadedModel:
    """Load ``spec`` with the command's ``--device`` and ``--dtype``."""
    import torch

    from affectlens.models.loading import load_model

    dtype = getattr(torch, args.dtype) if args.dtype else None
    return load_model(spec, dtype=dtype, device=args.device)
