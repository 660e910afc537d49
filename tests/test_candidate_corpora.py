"""The training corpora of issue 16 obey the corpus rules.

Mixed forms (the winner of the candidate search, now in ``data/stories``): 12 texts per
emotion, for all 171, in three forms other than the third-person story, all in the train split;
the corpus check covers their words, openings and near-duplicates together with the stories.
``data/candidates/neutral_twins``: one emotionally flat twin per train story of the 24 transfer
emotions, same topic; no emotion's name appears in any twin.
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


def test_every_emotion_has_twelve_train_texts_in_three_other_forms():
    concepts = load_concepts()
    corpus = load_stories()
    counts: dict[str, Counter] = {e: Counter() for e in concepts}
    for story in corpus:
        if story.form != "story":
            assert story.split == "train", story.source
            counts[story.emotion][story.form] += 1
    assert {e: dict(c) for e, c in counts.items() if c != FORMS} == {}
    assert [str(p) for p in check_corpus(corpus, concepts)] == []


@pytest.mark.parametrize("emotion", TRANSFER_EMOTIONS)
def test_each_train_story_has_one_flat_twin_on_its_topic(emotion):
    twins = records("neutral_twins", emotion)
    originals = [
        s
        for s in load_stories()
        if s.emotion == emotion and s.split == "train" and s.form == "story"
    ]
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
