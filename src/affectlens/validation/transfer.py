"""Out-of-genre transfer sets: loading them and enforcing their writing rules.

The sets (``data/transfer/<form>.jsonl``, one file per form) hold short texts in four forms
other than the corpus's third-person stories: second-person scenarios, diary entries,
dialogues and social-media posts, for 24 emotions, each split into a ``dev`` half (for
looking and tuning) and a ``test`` half (scored once per method). Scoring lives in
:mod:`affectlens.validation.transfer_score`.

:func:`check_transfer_set` enforces the rules the writers follow, returning every problem
(as ``affectlens corpus check`` does) rather than stopping at the first:

- the text names neither its emotion (the concept's forbidden words) nor any of the 24
  emotion words in any form (the word and the entries of its own forbidden list that share
  its first three letters: *anger* for *angry*, *hope* for *hopeful*), hashtags included;
- 25-120 words (social posts 12-70);
- no two texts of a form share their first three words or any run of five words;
- the form's shape: a second-person text starts with *You*, a dialogue is 2-6 ``Name: ...``
  lines of at least two speakers, a social post is plain ASCII (a diary entry's first person
  is not checked: diaries drop the pronoun, "Sat in the queue for an hour.");
- 12 ``dev`` then 13 ``test`` texts per emotion and form (the first twelve written are dev).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from affectlens.corpus.concepts import Concept, load_concepts, package_data_dir
from affectlens.corpus.stories import jsonl_records
from affectlens.corpus.validate import Problem, repeated_opening, words
from affectlens.errors import AffectlensError

FORMS = ("second_person", "diary", "dialogue", "social_post")
BASIC_EMOTIONS = ("afraid", "angry", "disgusted", "happy", "sad", "surprised")
TRANSFER_EMOTIONS = (
    *BASIC_EMOTIONS,
    "desperate", "calm", "frustrated", "anxious", "proud", "ashamed", "guilty", "hopeful",
    "lonely", "grateful", "jealous", "bored", "excited", "relieved", "hostile", "nostalgic",
    "embarrassed", "tired",
)  # fmt: skip
SPLITS = ("dev", "test")
QUOTA = {"dev": 12, "test": 13}
LENGTHS = {"social_post": (12, 70)}
DEFAULT_LENGTH = (25, 120)
OPENING_WORDS = 3
RUN_WORDS = 5

_SPEAKER = re.compile(r"^[A-Z][A-Za-z .'-]{0,29}: \S")
_HASHTAG = re.compile(r"#(\w+)")


@dataclass(frozen=True)
class TransferText:
    """One transfer text; ``source`` is ``file:line``."""

    emotion: str
    form: str
    split: str
    text: str
    source: str = ""


def default_transfer_path() -> Path:
    """The shipped transfer folder."""
    return package_data_dir() / "transfer"


def load_transfer(path: str | Path | None = None) -> list[TransferText]:
    """Every record of a transfer JSONL file or folder of them (file order, then line order).

    The shipped folder may hold no file yet (an empty list); a given path must exist. Values
    are not judged here (:func:`check_transfer_set` does that), only the record's shape.
    """
    folder = Path(path) if path is not None else default_transfer_path()
    if folder.is_dir():
        files = sorted(folder.glob("*.jsonl"))
    elif folder.is_file():
        files = [folder]
    elif path is None:
        return []
    else:
        raise AffectlensError(f"transfer set not found: {folder}")
    texts = []
    for where, record in jsonl_records(files):
        try:
            fields = [record[key] for key in ("emotion", "form", "split", "text")]
        except KeyError as exc:
            raise AffectlensError(f"{where}: bad transfer record (missing {exc})") from None
        if not all(isinstance(value, str) for value in fields):
            raise AffectlensError(f"{where}: emotion, form, split and text must be strings")
        texts.append(TransferText(*fields, source=where))
    return texts


def select_split(texts: Iterable[TransferText], split: str) -> list[TransferText]:
    """The texts of one split (``dev`` or ``test``)."""
    if split not in SPLITS:
        raise AffectlensError(f"unknown transfer split {split!r} (choose dev or test)")
    return [t for t in texts if t.split == split]


def name_forms(concepts: dict[str, Concept] | None = None) -> tuple[str, ...]:
    """The 24 emotion words in every form: each word and its own forbidden entries that share
    its first three letters (``angry`` -> angrily, angrier, anger, angered, angers)."""
    concepts = concepts or load_concepts()
    forms = set()
    for emotion in TRANSFER_EMOTIONS:
        forms.add(emotion)
        forms.update(w for w in concepts[emotion].forbidden if w[:3] == emotion[:3])
    return tuple(sorted(forms))


@cache
def _pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    ordered = sorted(terms, key=len, reverse=True)
    alternation = "|".join(re.escape(t).replace(r"\ ", r"[\s-]+") for t in ordered)
    return re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)


def _in_hashtag(tag: str, term: str) -> bool:
    """A hashtag names ``term`` when it contains it (short terms: at its start or end)."""
    squeezed = re.sub(r"[\s-]+", "", term)
    if len(squeezed) >= 4:
        return squeezed in tag
    return tag.startswith(squeezed) or tag.endswith(squeezed)


def _naming(item: TransferText, terms: tuple[str, ...]) -> str | None:
    hit = _pattern(terms).search(item.text)
    if hit:
        return hit.group(0)
    for tag in _HASHTAG.findall(item.text):
        found = next((t for t in terms if _in_hashtag(tag.lower(), t)), None)
        if found:
            return f"#{tag}"
    return None


def _shape(item: TransferText) -> str | None:
    """What is wrong with the text's form, if anything."""
    tokens = words(item.text)
    if item.form == "second_person" and not (tokens and tokens[0].startswith("you")):
        return "a second-person scenario must start with 'You'"
    if item.form == "dialogue":
        lines = [line.strip() for line in item.text.splitlines() if line.strip()]
        speakers = {line.split(":", 1)[0] for line in lines if _SPEAKER.match(line)}
        if not 2 <= len(lines) <= 6 or not all(_SPEAKER.match(line) for line in lines):
            return "a dialogue must be 2-6 lines of 'Name: ...'"
        if len(speakers) < 2:
            return "a dialogue needs at least two speakers"
    if item.form == "social_post" and not item.text.isascii():
        return "a social post must be plain ASCII (no emoji)"
    return None


def check_text(item: TransferText, concepts: dict[str, Concept], names: tuple[str, ...]) -> list:
    """The per-text rules: known labels, no emotion named, length and the form's shape."""
    problems = []
    if item.form not in FORMS:
        problems.append(Problem(item.source, f"unknown form {item.form!r}"))
    if item.split not in SPLITS:
        problems.append(Problem(item.source, f"unknown split {item.split!r}"))
    if item.emotion not in TRANSFER_EMOTIONS:
        return [*problems, Problem(item.source, f"emotion {item.emotion!r} is not one of the 24")]
    file_form = item.source.split(".jsonl:")[0]
    if file_form in FORMS and file_form != item.form:
        problems.append(Problem(item.source, f"form {item.form!r} in the {file_form} file"))
    terms = tuple(sorted({*concepts[item.emotion].forbidden, *names}))
    named = _naming(item, terms)
    if named:
        problems.append(Problem(item.source, f"names an emotion: {named!r} ({item.emotion})"))
    low, high = LENGTHS.get(item.form, DEFAULT_LENGTH)
    count = len(words(item.text))
    if not low <= count <= high:
        problems.append(Problem(item.source, f"{count} words, outside {low}-{high}"))
    shape = _shape(item)
    if shape:
        problems.append(Problem(item.source, shape))
    return problems


def check_repeats(texts: list[TransferText]) -> list[Problem]:
    """No two texts of a form share their first three words or a five-word run.

    The rule is per form, the unit each writer controls: across forms, stock phrases (*at two
    in the morning*, *in the middle of the*) recur without making texts alike.
    """
    by_form: dict[str, list[TransferText]] = defaultdict(list)
    for item in texts:
        by_form[item.form].append(item)
    return [p for group in by_form.values() for p in _repeats(group)]


def _repeats(texts: list[TransferText]) -> list[Problem]:
    problems = []
    openings: dict[tuple[str, ...], str] = {}
    runs: dict[tuple[str, ...], str] = {}
    for item in texts:
        tokens = words(item.text)
        if repeat := repeated_opening(tokens, item.source, openings, OPENING_WORDS):
            problems.append(repeat)
        shared = None
        for i in range(len(tokens) - RUN_WORDS + 1):
            run = tuple(tokens[i : i + RUN_WORDS])
            earlier = runs.get(run)
            if earlier is not None and earlier != item.source and shared is None:
                shared = (earlier, run)
            runs.setdefault(run, item.source)
        if shared:
            problems.append(
                Problem(item.source, f"shares {' '.join(shared[1])!r} with {shared[0]}")
            )
    return problems


def check_quota(texts: list[TransferText], quota: dict[str, int] | None = None) -> list[Problem]:
    """12 dev then 13 test texts for each of the 24 emotions in each form."""
    quota = QUOTA if quota is None else quota
    order: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in texts:
        order[(item.emotion, item.form)].append(item.split)
    problems = []
    for form in FORMS:
        for emotion in TRANSFER_EMOTIONS:
            splits = order.get((emotion, form), [])
            counts = {split: splits.count(split) for split in SPLITS}
            if counts != {split: quota.get(split, 0) for split in SPLITS}:
                wanted = ", ".join(f"{quota.get(s, 0)} {s}" for s in SPLITS)
                have = ", ".join(f"{counts[s]} {s}" for s in SPLITS)
                problems.append(Problem(f"{form}/{emotion}", f"{have}; need {wanted}"))
            elif "test" in splits and "dev" in splits[splits.index("test") :]:
                problems.append(Problem(f"{form}/{emotion}", "a dev text after a test text"))
    return problems


def check_transfer_set(
    texts: list[TransferText],
    concepts: dict[str, Concept] | None = None,
    *,
    quota: dict[str, int] | None = None,
) -> list[Problem]:
    """Every rule violation in ``texts`` (see the module docstring); empty when clean.

    ``quota`` replaces the 12 dev / 13 test per emotion and form, e.g. to check a set that
    is still being written with ``{}`` (no quota).
    """
    concepts = concepts or load_concepts()
    names = name_forms(concepts)
    problems = [p for item in texts for p in check_text(item, concepts, names)]
    problems += check_repeats(texts)
    if quota != {}:
        problems += check_quota(texts, quota)
    return problems
