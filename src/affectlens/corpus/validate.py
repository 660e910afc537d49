"""Rules that keep the story corpus honest.

Every rule returns :class:`Problem` records rather than raising, so ``affectlens corpus check``
can list every problem at once, one line each.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from affectlens.corpus.concepts import Concept
from affectlens.corpus.stories import Story

MIN_WORDS = 50
MAX_WORDS = 180
MAX_NGRAM_JACCARD = 0.4
NGRAM = 5
OPENING_WORDS = 3
MIN_TOPICS = 8
QUOTA = {"train": 12, "test": 3}

_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class Problem:
    """One rule violation, tied to the story (``file:line``) or emotion it concerns."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def words(text: str) -> list[str]:
    """Lower-cased word tokens, as counted for the length and duplicate rules."""
    return [w.lower() for w in _WORD.findall(text)]


def repeated_opening(
    tokens: list[str],
    source: str,
    openings: dict[tuple[str, ...], str],
    count: int = OPENING_WORDS,
) -> Problem | None:
    """A problem when ``tokens`` open with the same ``count`` words as an earlier text.

    ``openings`` maps each opening seen so far to the text that had it first; a new opening is
    recorded there under ``source``.
    """
    opening = tuple(tokens[:count])
    if opening not in openings:
        openings[opening] = source
        return None
    return Problem(source, f"opens like {openings[opening]}: {' '.join(opening)!r}")


def _ngrams(tokens: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def check_story(story: Story, concept: Concept) -> list[Problem]:
    """Forbidden words and length for one story."""
    problems = []
    hit = concept.forbidden_pattern().search(story.text)
    if hit:
        problems.append(Problem(story.source, f"forbidden word {hit.group(0)!r} ({story.emotion})"))
    if story.form != "story" and story.split != "train":
        problems.append(Problem(story.source, f"a {story.form} text must be in the train split"))
    count = len(words(story.text))
    if not MIN_WORDS <= count <= MAX_WORDS:
        problems.append(
            Problem(
                story.source, f"{count} words, outside {MIN_WORDS}-{MAX_WORDS} ({story.emotion})"
            )
        )
    return problems


def check_emotion_group(
    emotion: str, stories: list[Story], *, quota: dict[str, int]
) -> list[Problem]:
    """Quota, topic variety, repeated openings and near-duplicates within one emotion.

    The quota counts third-person stories (``form == "story"``, the test split's only form);
    texts in other forms are checked for openings and duplicates against them.
    """
    problems = []
    counts = Counter(s.split for s in stories if s.form == "story")
    for split, needed in quota.items():
        if counts[split] < needed:
            problems.append(
                Problem(emotion, f"{counts[split]} {split} stories, below the quota of {needed}")
            )
    topics = {s.topic for s in stories if s.topic}
    if len(topics) < MIN_TOPICS:
        problems.append(Problem(emotion, f"{len(topics)} distinct topics, need {MIN_TOPICS}"))
    openings: dict[tuple[str, ...], str] = {}
    grams = []
    for story in stories:
        tokens = words(story.text)
        if repeat := repeated_opening(tokens, story.source, openings):
            problems.append(repeat)
        grams.append(_ngrams(tokens))
    for i in range(len(stories)):
        for j in range(i + 1, len(stories)):
            union = grams[i] | grams[j]
            if union and len(grams[i] & grams[j]) / len(union) > MAX_NGRAM_JACCARD:
                problems.append(
                    Problem(stories[j].source, f"near-duplicate of {stories[i].source}")
                )
    return problems


def check_corpus(
    stories: Iterable[Story],
    concepts: dict[str, Concept],
    *,
    emotions: Iterable[str] | None = None,
    quota: dict[str, int] | None = None,
) -> list[Problem]:
    """Every problem in ``stories``; quotas are checked for ``emotions`` (default: all concepts)."""
    quota = QUOTA if quota is None else quota
    by_emotion: dict[str, list[Story]] = defaultdict(list)
    problems = []
    for story in stories:
        concept = concepts.get(story.emotion)
        if concept is None:
            problems.append(Problem(story.source, f"unknown emotion {story.emotion!r}"))
            continue
        problems.extend(check_story(story, concept))
        by_emotion[story.emotion].append(story)
    for emotion in concepts if emotions is None else emotions:
        problems.extend(check_emotion_group(emotion, by_emotion.get(emotion, []), quota=quota))
    return problems


def split_counts(stories: Iterable[Story]) -> dict[str, Counter[str]]:
    """Story counts per emotion and split."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for story in stories:
        counts[story.emotion][story.split] += 1
    return dict(counts)
