"""Growing the story corpus with a language model.

Each candidate story is asked for with a paper-style prompt (topic, named character, emotion and
its definition, the words it must avoid), cleaned of titles and preambles, then filtered through
the corpus rules: :func:`check_story` (forbidden words, length) plus the opening and near-duplicate
rules against the stories of that emotion already in the output file. Accepted stories are
appended to the JSONL file one record at a time, so an interrupted run resumes where it stopped.

Any model can write the stories through a :class:`StoryBackend`; :class:`LocalModelBackend` runs
a loaded transformers model through the shared batched generation code.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from affectlens.corpus.concepts import Concept
from affectlens.corpus.stories import Split, Story, load_stories
from affectlens.corpus.validate import (
    MAX_NGRAM_JACCARD,
    MIN_WORDS,
    OPENING_WORDS,
    _ngrams,
    check_story,
    words,
)
from affectlens.errors import AffectlensError
from affectlens.models.loading import LoadedModel
from affectlens.progress import count_progress

Messages = list[dict]

# The topic list of docs/CORPUS_GUIDE.md, in its order.
TOPICS = [
    "work",
    "family",
    "travel",
    "school",
    "health",
    "sport",
    "money",
    "nature",
    "technology",
    "romance",
    "friendship",
    "food",
    "weather",
    "bureaucracy",
    "art",
    "music",
    "home",
    "pets",
    "community",
    "science",
    "childhood",
    "ageing",
    "crime",
    "law",
    "religion",
    "fashion",
    "transport",
    "history",
    "military",
    "farming",
]

NAMES = (
    "Amara Okafor", "Luis Herrera", "Mei Lin", "Tomasz Nowak", "Priya Raman", "Jonas Berg",
    "Fatima Haddad", "Kenji Watanabe", "Olga Petrova", "Samuel Mensah", "Isabel Duarte",
    "Arjun Mehta", "Hannah Weiss", "Kwame Asante", "Sofia Rossi", "Dmitri Volkov",
    "Leila Karimi", "Mateo Silva", "Aiyana Begay", "Ruth Goldberg", "Chen Wei", "Nia Adeyemi",
    "Pedro Alvarez", "Ingrid Larsen", "Yusuf Demir", "Grace O'Neill", "Hiroshi Tanaka",
    "Zanele Dlamini", "Marek Horvat", "Ana Lima", "Omar Farouk", "Elsie Thompson",
)  # fmt: skip

AGES = (
    "a seven-year-old child", "a ten-year-old", "a teenager", "a university student",
    "a young parent", "someone in their thirties", "someone in their forties",
    "a middle-aged worker", "a recently retired person", "a seventy-year-old",
    "an elderly person in their eighties",
)  # fmt: skip

OPENINGS = (
    "Open with a detail of the place.",
    "Open with a line of dialogue.",
    "Open with the time of day or the weather.",
    "Open in the middle of an action.",
    "Open with an object the character is holding or looking at.",
    "Open with a sound.",
    "Open with what had happened just before.",
)

SYSTEM_PROMPT = "You are a careful fiction writer. You reply with the story only."

_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|here(?:'s| is| are)|below is|title\b|story\b)",
    re.IGNORECASE,
)
_EPILOGUE = re.compile(
    r"^(?:i hope|hope you|note\b|this story|in this story|the end\b|word count|\(\d+ words)",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")
_QUOTES = "\"'\u201c\u201d\u2018\u2019`"


class StoryBackend(Protocol):
    """Anything that can complete chat prompts: a local model, or a server.

    :class:`affectlens.backends.OpenAICompatible` is the server one.
    """

    def complete(
        self,
        prompts: list[list[dict]],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        """One reply per chat prompt (a list of ``{role, content}`` messages)."""
        ...


class LocalModelBackend:
    """A loaded transformers model, generating one left-padded batch per call."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model

    def complete(
        self,
        prompts: list[list[dict]],
        *,
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[str]:
        from affectlens.generation import generate_batch

        return generate_batch(
            self.model, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )


def derive_seed(seed: int, emotion: str, index: int, attempt: int = 0) -> int:
    """A stable 31-bit seed for one (emotion, story index, attempt)."""
    digest = hashlib.sha256(f"{seed}:{emotion}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _stable(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


@dataclass(frozen=True)
class StoryRequest:
    """What one candidate is asked for: its emotion, topic, character and the prompt."""

    emotion: str
    index: int
    attempt: int
    topic: str
    messages: list[dict]


def topic_for(emotion: str, index: int) -> str:
    """Topics cycle through the guide's list, from an emotion-specific starting point."""
    return TOPICS[(_stable(emotion) + index) % len(TOPICS)]


def build_request(concept: Concept, index: int, attempt: int = 0, seed: int = 0) -> StoryRequest:
    """The chat prompt for story ``index`` of ``concept`` (``attempt`` varies the character)."""
    topic = topic_for(concept.emotion, index)
    pick = derive_seed(seed, concept.emotion, index, attempt)
    name = NAMES[pick % len(NAMES)]
    age = AGES[(pick // len(NAMES)) % len(AGES)]
    opening = OPENINGS[(index + attempt) % len(OPENINGS)]
    banned = sorted({concept.emotion.lower(), *concept.forbidden})
    user = (
        f"Write a one-paragraph story of 60 to 150 words about {topic} in which a character, "
        f"{name}, {age}, feels {concept.emotion}: "
        f"{concept.definition.rstrip('.').lower()}.\n"
        "Show the feeling only through what happens, what the character notices, what their "
        "body does and what they do or say next. Give the story a concrete setting.\n"
        f"Never write the word {concept.emotion!r} or any of these words: "
        f"{', '.join(banned)}. Do not name any emotion at all.\n"
        f"{opening} Plain prose, no title, no preamble, no closing remarks."
    )
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]
    return StoryRequest(concept.emotion, index, attempt, topic, messages)


def clean_story(text: str) -> str:
    """One plain paragraph: preamble, title, closing remarks, markdown and wrapping quotes gone.

    A story cut off mid-sentence (the token budget ran out) is trimmed to its last full sentence.
    """
    text = text.replace("\r", "").replace("**", "").replace("__", "")
    lines = [line.strip() for line in text.split("\n")]
    lines = [line.lstrip("#>*- ").strip() for line in lines if line.strip()]
    while lines and _is_preamble(lines[0], more=len(lines) > 1):
        lines.pop(0)
    while len(lines) > 1 and _EPILOGUE.match(lines[-1]):
        lines.pop()
    story = " ".join(lines)
    story = re.sub(r"\s+", " ", story).strip()
    if len(story) >= 2 and story[0] in _QUOTES and story[-1] in _QUOTES:
        inner = story[1:-1].strip()
        if not any(q in inner for q in '"\u201c\u201d'):
            story = inner
    ends = list(_SENTENCE_END.finditer(story))
    if ends and ends[-1].end() < len(story):
        story = story[: ends[-1].end()]
    return story.strip()


def _is_preamble(line: str, *, more: bool) -> bool:
    """A leading line that is no part of the story: a preamble, a heading or a short title."""
    if _PREAMBLE.match(line) and (line.endswith(":") or len(words(line)) <= 12 or more):
        return True
    if line.endswith(":"):
        return True
    # A short line with no sentence punctuation, followed by more text, is a title.
    return more and len(words(line)) <= 10 and not re.search(r"[.!?][\"')]*$", line)


@dataclass
class EmotionReport:
    """What happened for one emotion: stories already there, accepted, rejected by reason."""

    emotion: str
    wanted: int
    existing: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def candidates(self) -> int:
        return self.accepted + sum(self.rejected.values())

    @property
    def missing(self) -> int:
        return max(0, self.wanted - self.existing - self.accepted)


class _Judge:
    """The corpus rules for new candidates of one emotion, against the stories already kept."""

    def __init__(self, concept: Concept, kept: Sequence[Story]) -> None:
        self.concept = concept
        self.openings: set[tuple[str, ...]] = set()
        self.grams: list[set[tuple[str, ...]]] = []
        for story in kept:
            self.keep(story.text)

    def keep(self, text: str) -> None:
        tokens = words(text)
        self.openings.add(tuple(tokens[:OPENING_WORDS]))
        self.grams.append(_ngrams(tokens))

    def reason(self, text: str, split: Split, topic: str) -> str | None:
        """Why ``text`` is rejected, or ``None`` if it may be kept."""
        if not text.strip():
            return "empty"
        story = Story(emotion=self.concept.emotion, split=split, topic=topic, text=text)
        if check_story(story, self.concept):
            if self.concept.forbidden_pattern().search(text):
                return "forbidden word"
            return "too short" if len(words(text)) < MIN_WORDS else "too long"
        tokens = words(text)
        if tuple(tokens[:OPENING_WORDS]) in self.openings:
            return "same opening"
        grams = _ngrams(tokens)
        for other in self.grams:
            union = grams | other
            if union and len(grams & other) / len(union) > MAX_NGRAM_JACCARD:
                return "near-duplicate"
        return None


def existing_stories(path: Path) -> list[Story]:
    """The stories already in ``path`` (none if it does not exist yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    return load_stories(path)


def generate_stories(
    backend: StoryBackend,
    concepts: Sequence[Concept],
    out: Path,
    *,
    per_emotion: int,
    split: Split = "train",
    max_new_tokens: int = 220,
    temperature: float = 0.9,
    seed: int = 0,
    batch_size: int = 8,
    max_attempts: int = 4,
    progress: bool = True,
) -> list[EmotionReport]:
    """Generate until ``out`` holds ``per_emotion`` ``split`` stories of every concept.

    Stories of the emotion already in ``out`` count towards the target (so a rerun resumes),
    and every new candidate must differ in opening and 5-grams from all of them. Each story
    slot gets ``max_attempts`` candidates; slots still empty after that are left missing.
    """
    if per_emotion < 0:
        raise AffectlensError("--per-emotion cannot be negative")
    if batch_size < 1 or max_attempts < 1:
        raise AffectlensError("batch size and attempts must be at least 1")
    if max_new_tokens < 1:
        raise AffectlensError("--max-new-tokens must be at least 1")
    if temperature < 0:
        raise AffectlensError("--temperature cannot be negative")
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = existing_stories(out)
    reports = []
    plan = []
    for concept in concepts:
        own = [s for s in kept if s.emotion == concept.emotion]
        report = EmotionReport(
            concept.emotion, per_emotion, existing=sum(s.split == split for s in own)
        )
        reports.append(report)
        plan.append((concept, own, report))
    total = sum(report.missing for report in reports)
    bar = count_progress(disable=not progress, unit="stories")
    with bar, out.open("a", encoding="utf-8") as sink:
        if _lacks_final_newline(out):
            # A hand-written file may end without a newline: appending straight after its
            # last record would merge two records into one line and corrupt the file.
            sink.write("\n")
            sink.flush()
        task = bar.add_task("stories", total=total, status="")
        for concept, own, report in plan:
            judge = _Judge(concept, own)
            start = report.existing
            # Open slots: story index -> attempts used so far.
            slots = {start + k: 0 for k in range(report.missing)}
            while slots:
                batch = sorted(slots)[:batch_size]
                requests = [build_request(concept, i, slots[i], seed) for i in batch]
                batch_seed = derive_seed(seed, concept.emotion, batch[0], slots[batch[0]])
                bar.update(task, description=concept.emotion)
                replies = backend.complete(
                    [r.messages for r in requests],
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    seed=batch_seed,
                )
                if len(replies) != len(requests):
                    raise AffectlensError(
                        f"the backend returned {len(replies)} replies for {len(requests)} prompts"
                    )
                for request, reply in zip(requests, replies, strict=True):
                    text = clean_story(reply)
                    reason = judge.reason(text, split, request.topic)
                    if reason is None:
                        record = {
                            "emotion": concept.emotion,
                            "split": split,
                            "topic": request.topic,
                            "text": text,
                        }
                        sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                        sink.flush()
                        judge.keep(text)
                        report.accepted += 1
                        del slots[request.index]
                        bar.advance(task)
                    else:
                        report.rejected[reason] += 1
                        slots[request.index] += 1
                        if slots[request.index] >= max_attempts:
                            del slots[request.index]
                bar.update(
                    task,
                    status=f"{report.accepted} kept, {sum(report.rejected.values())} rejected",
                )
    return reports


def _lacks_final_newline(path: Path) -> bool:
    """Whether ``path`` is non-empty and its last byte is not a newline."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


def summary_lines(reports: Sequence[EmotionReport]) -> list[str]:
    """One line per emotion and a total: kept, rejected by reason, still missing."""
    lines = []
    reasons: Counter[str] = Counter()
    for r in reports:
        reasons.update(r.rejected)
        why = ", ".join(f"{n} {reason}" for reason, n in r.rejected.most_common()) or "none"
        lines.append(
            f"{r.emotion}: {r.existing} already there, {r.accepted} accepted of "
            f"{r.candidates} candidates, rejected: {why}; {r.missing} still missing"
        )
    accepted = sum(r.accepted for r in reports)
    candidates = sum(r.candidates for r in reports)
    rate = f" ({accepted / candidates:.0%})" if candidates else ""
    why = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()) or "none"
    lines.append(f"total: {accepted} accepted of {candidates} candidates{rate}; rejected: {why}")
    return lines


__all__ = [
    "EmotionReport",
    "LocalModelBackend",
    "StoryBackend",
    "StoryRequest",
    "build_request",
    "clean_story",
    "derive_seed",
    "existing_stories",
    "generate_stories",
    "summary_lines",
    "topic_for",
]
