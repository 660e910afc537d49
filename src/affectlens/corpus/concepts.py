"""The 171 emotion concepts: each word, its definition and the words its stories must not use.

Concepts live in ``data/concepts/part*.jsonl`` inside the package, in the paper's order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from affectlens.errors import AffectlensError


@dataclass(frozen=True)
class Concept:
    """One emotion concept: the word, a one-line definition and its forbidden words."""

    emotion: str
    definition: str
    forbidden: tuple[str, ...]

    def forbidden_pattern(self) -> re.Pattern[str]:
        """A case-insensitive whole-word regex matching any forbidden word or phrase."""
        terms = sorted({self.emotion.lower(), *self.forbidden}, key=len, reverse=True)
        alternation = "|".join(re.escape(t).replace(r"\ ", r"[\s-]+") for t in terms)
        return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)


def slug(emotion: str) -> str:
    """File-name form of an emotion: lower case, non-alphanumeric runs replaced by ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", emotion.lower()).strip("_")


def package_data_dir() -> Path:
    """The folder holding the shipped corpus data."""
    return Path(str(resources.files("affectlens") / "data"))


@cache
def load_concepts(directory: Path | None = None) -> dict[str, Concept]:
    """All concepts, keyed by emotion, in the paper's order (the order of the part files)."""
    directory = directory or package_data_dir() / "concepts"
    concepts: dict[str, Concept] = {}
    for path in sorted(directory.glob("part*.jsonl"), key=_part_number):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                concept = Concept(
                    emotion=record["emotion"],
                    definition=record["definition"],
                    forbidden=tuple(word.lower() for word in record["forbidden"]),
                )
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise AffectlensError(f"{path.name}:{number}: bad concept record ({exc})") from exc
            concepts[concept.emotion] = concept
    return concepts


def emotion_names() -> list[str]:
    """The shipped emotion words in the paper's order."""
    return list(load_concepts())


def _part_number(path: Path) -> int:
    digits = re.sub(r"\D", "", path.stem)
    return int(digits) if digits else 0
