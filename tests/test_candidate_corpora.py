"""The candidate training corpora of issue 16 obey the corpus rules.

``data/candidates/mixed_forms``: 12 texts per transfer emotion in three forms other than the
third-person story; checked together with the emotion's stories, so openings and near-
duplicates are caught across both. ``data/candidates/neutral_twins``: one emotionally flat twin
per train story, same topic; no emotion's name appears in any twin.
"""

import json
import re
from collections import Counter

import pytest

from affectlens.corpus.concepts import load_concepts, package_data_dir
from affectlens.corpus.stories import Story, load_stories
from affectlens.corpus.validate import check_corpus
from affectlens.validation.transfer import TRANSFER_EMOTIONS

FOLDER = package_data_dir() / "candidates"
FORMS = {"first_person": 4, "second_person": 4, "dialogue": 4}


def records(kind: str, emotion: str) -> list[dict]:
    path = FOLDER / kind / f"{emotion}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def as_stories(kind: str, emotion: str) -> list[Story]:
    return [
        Story(r["emotion"], r["split"], r["topic"], r["text"], f"{kind}/{emotion}.jsonl:{i}")
        for i, r in enumerate(records(kind, emotion), 1)
    ]


@pytest.mark.parametrize("emotion", TRANSFER_EMOTIONS)
def test_mixed_form_texts_follow_the_corpus_rules_with_the_stories(emotion):
    mixed = records("mixed_forms", emotion)
    assert all(r["emotion"] == emotion and r["split"] == "train" for r in mixed)
    assert Counter(r["form"] for r in mixed) == FORMS
    stories = [s for s in load_stories() if s.emotion == emotion]
    problems = check_corpus(
        stories + as_stories("mixed_forms", emotion), load_concepts(), emotions=[emotion]
    )
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize("emotion", TRANSFER_EMOTIONS)
def test_each_train_story_has_one_flat_twin_on_its_topic(emotion):
    twins = records("neutral_twins", emotion)
    originals = [s for s in load_stories() if s.emotion == emotion and s.split == "train"]
    assert sorted(r["twin_of"] for r in twins) == list(range(1, len(originals) + 1))
    for twin in twins:
        assert twin["topic"] == originals[twin["twin_of"] - 1].topic
    concepts = load_concepts()
    twins_as_stories = as_stories("neutral_twins", emotion)
    problems = check_corpus(
        twins_as_stories, concepts, emotions=[emotion], quota={"train": len(originals)}
    )
    assert [str(p) for p in problems] == []
    names = re.compile(
        r"(?<![\w-])(?:" + "|".join(re.escape(e) for e in concepts) + r")(?![\w-])", re.I
    )
    for story in twins_as_stories:
        hit = names.search(story.text)
        assert hit is None, f"{story.source} names an emotion: {hit.group(0)!r}"
        # and none of the emotion's own forbidden words, checked as for its stories
        assert not concepts[emotion].forbidden_pattern().search(story.text)
