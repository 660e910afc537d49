"""Reading emotion stories and neutral passages from JSONL files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from affectlens.corpus.concepts import package_data_dir
from affectlens.errors import AffectlensError

Split = Literal["train", "test"]
FORMS = ("story", "first_person", "second_person", "dialogue")
"""The forms a corpus text can take: a third-person ``story`` (the paper's kind and every test
text), a past-tense ``first_person`` account, a present-tense ``second_person`` scenario, or a
``dialogue`` of ``Name: ...`` turns. Training on all of them makes the vectors transfer out of
the story genre (issue 16)."""


@dataclass(frozen=True)
class Story:
    """One text in which a character feels ``emotion``; ``source`` is ``file:line``.

    ``form`` is one of :data:`FORMS` (records without one are third-person stories).
    """

    emotion: str
    split: Split
    topic: str
    text: str
    source: str = ""
    form: str = "story"


@dataclass(frozen=True)
class NeutralPassage:
    """An emotionally neutral passage: plain ``text`` or a chat as a list of ``messages``."""

    kind: str
    topic: str
    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None


def default_stories_path() -> Path:
    """The shipped story folder."""
    return package_data_dir() / "stories"


def default_neutral_path() -> Path:
    """The shipped neutral corpus."""
    return package_data_dir() / "neutral.jsonl"


def _jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.jsonl"))
    if path.is_file():
        return [path]
    raise AffectlensError(f"corpus not found: {path}")


def jsonl_records(files: Iterable[Path]) -> Iterator[tuple[str, dict]]:
    """Each non-blank line of ``files`` as (``file:line``, JSON object); one error line else."""
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{file.name}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AffectlensError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise AffectlensError(f"{where}: a record must be a JSON object")
            yield where, record


def load_stories(path: Path | None = None) -> list[Story]:
    """All stories in a JSONL file or a folder of them (default: the shipped corpus)."""
    stories = []
    for where, record in jsonl_records(_jsonl_files(path or default_stories_path())):
        try:
            split = record["split"]
            if split not in ("train", "test"):
                raise AffectlensError(f"{where}: split must be 'train' or 'test', not {split!r}")
            form = record.get("form", "story")
            if form not in FORMS:
                raise AffectlensError(
                    f"{where}: form must be one of {', '.join(FORMS)}, not {form!r}"
                )
            stories.append(
                Story(
                    emotion=str(record["emotion"]),
                    split=split,
                    topic=str(record.get("topic", "")),
                    text=str(record["text"]),
                    source=where,
                    form=form,
                )
            )
        except KeyError as exc:
            raise AffectlensError(f"{where}: story record lacks {exc.args[0]!r}") from exc
    return stories


def load_neutral(path: Path | None = None) -> list[NeutralPassage]:
    """All neutral passages (default: the shipped neutral corpus)."""
    passages = []
    for where, record in jsonl_records(_jsonl_files(path or default_neutral_path())):
        messages = record.get("messages")
        text = record.get("text")
        if (messages is None) == (text is None):
            raise AffectlensError(f"{where}: a neutral record needs exactly one of text/messages")
        passages.append(
            NeutralPassage(
                kind=str(record.get("kind", "prose")),
                topic=str(record.get("topic", "")),
                text=text,
                messages=tuple(messages) if messages is not None else None,
            )
        )
    return passages
