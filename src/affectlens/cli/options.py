"""Argument parsing shared by several sub-commands."""

from __future__ import annotations

import argparse
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
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])


def load_model_from_args(args: argparse.Namespace, spec: str) -> LoadedModel:
    """Load ``spec`` with the command's ``--device`` and ``--dtype``."""
    import torch

    from affectlens.models.loading import load_model

    dtype = getattr(torch, args.dtype) if args.dtype else None
    return load_model(spec, dtype=dtype, device=args.device)
