"""The story corpus: concepts, the validator's rules, the shipped corpus and ``corpus check``."""

from __future__ import annotations

import json
import re

import pytest

from affectlens.cli import main
from affectlens.corpus.concepts import Concept, load_concepts, slug
from affectlens.corpus.generate import TOPICS
from affectlens.corpus.stories import Story, load_stories
from affectlens.corpus.validate import (
    MAX_NGRAM_JACCARD,
    MAX_WORDS,
    MIN_TOPICS,
    MIN_WORDS,
    NGRAM,
    OPENING_WORDS,
    QUOTA,
    check_corpus,
    check_emotion_group,
    check_story,
    split_counts,
    words,
)
from affectlens.errors import AffectlensError

# A story for "afraid" written for these tests: 96 words, none of them forbidden.
GOOD_AFRAID = (
    "The ferry rocked hard as it left the harbour, and Ines gripped the rail with both hands. "
    "Below her the water was black and close. She had never learned to swim, and every lurch "
    "of the deck sent her stomach up into her throat. A child ran past laughing and she "
    "flinched, pressing her back against the cabin wall. She counted the minutes on her watch, "
    "kept her eyes on the far shore and refused the seat by the open window. When the engine "
    "coughed and went quiet, her breath stopped until it roared back into life."
)


def filler(tag: str, n: int = 80) -> str:
    """``n`` words that no other tag shares: distinct openings and no common 5-grams."""
    return " ".join(f"{tag}x{i}" for i in range(n)) + "."


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def record(text, emotion="afraid", split="train", topic="travel"):
    return {"emotion": emotion, "split": split, "topic": topic, "text": text}


def full_group(emotion: str, prefix: str = "s") -> list[dict]:
    """12 train + 3 test filler stories over 15 topics: a group that breaks no rule."""
    return [
        record(filler(f"{prefix}{i}"), emotion, "train" if i < 12 else "test", TOPICS[i])
        for i in range(15)
    ]


@pytest.fixture(scope="module")
def concepts():
    return load_concepts()


@pytest.fixture(scope="module")
def afraid(concepts):
    return concepts["afraid"]


def story(text, emotion="afraid", split="train", topic="travel", source="t.jsonl:1"):
    return Story(emotion=emotion, split=split, topic=topic, text=text, source=source)


# --- Concepts -------------------------------------------------------------------------------


def test_shipped_concepts_are_171_with_definitions_and_own_word_forbidden(concepts):
    assert len(concepts) == 171
    assert len({e.lower() for e in concepts}) == 171
    for emotion, concept in concepts.items():
        assert concept.emotion == emotion
        assert len(concept.definition.split()) >= 5, emotion
        assert concept.forbidden, emotion
        assert emotion.lower() in concept.forbidden, emotion
        assert all(word == word.lower() and word.strip() == word for word in concept.forbidden)
        # The pattern catches the emotion word itself, capitalised, inside a sentence.
        assert concept.forbidden_pattern().search(f"Nobody felt {emotion.upper()} that day.")


def test_concepts_load_in_part_order_and_bad_records_name_their_line(tmp_path):
    folder = tmp_path / "concepts"
    folder.mkdir()
    for number, emotion in [(10, "zeta"), (2, "beta"), (1, "alpha")]:
        entry = {"emotion": emotion, "definition": "A state.", "forbidden": ["X"]}
        write_jsonl(folder / f"part{number}.jsonl", [entry])
    loaded = load_concepts(folder)
    assert list(loaded) == ["alpha", "beta", "zeta"]  # numeric, not lexical, part order
    assert loaded["alpha"].forbidden == ("x",)  # lower-cased on load

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "part1.jsonl").write_text('{"emotion": "a", "definition": "d"}\n')
    with pytest.raises(AffectlensError, match=r"part1\.jsonl:1: bad concept record"):
        load_concepts(broken)


@pytest.mark.parametrize(
    ("emotion", "expected"),
    [("afraid", "afraid"), ("at ease", "at_ease"), ("grief-stricken", "grief_stricken")],
)
def test_slug(emotion, expected):
    assert slug(emotion) == expected


# --- Single-story rules: forbidden words and length ------------------------------------------


def test_rule_limits_are_those_of_the_corpus_guide():
    assert (MIN_WORDS, MAX_WORDS, MIN_TOPICS, QUOTA) == (50, 180, 8, {"train": 12, "test": 3})
    assert (MAX_NGRAM_JACCARD, NGRAM, OPENING_WORDS) == (0.4, 5, 3)


def test_good_story_has_no_problems(afraid):
    assert MIN_WORDS <= len(words(GOOD_AFRAID)) <= MAX_WORDS
    assert check_story(story(GOOD_AFRAID), afraid) == []


@pytest.mark.parametrize(
    ("inserted", "found"),
    [
        ("fearful", "fearful"),
        ("Fearful", "Fearful"),
        ("SCARED", "SCARED"),
        ("afraid", "afraid"),
        ("fear's", "fear"),  # an apostrophe ends the word
        ("(terrified)", "terrified"),
    ],
)
def test_forbidden_word_is_found_case_insensitively(afraid, inserted, found):
    text = GOOD_AFRAID.replace("Below her", f"Below her, {inserted},")
    problems = check_story(story(text, source="afraid.jsonl:7"), afraid)
    assert [str(p) for p in problems] == [f"afraid.jsonl:7: forbidden word {found!r} (afraid)"]


@pytest.mark.parametrize(
    "inserted", ["fearless", "afraidness", "unafraid", "scarecrow", "fear-lit"]
)
def test_forbidden_words_match_whole_words_only(afraid, inserted):
    # Whole-word matching: a forbidden word inside a longer word (a hyphenated compound
    # included) is not a hit; the guide asks concept authors to list every form they mean.
    text = GOOD_AFRAID.replace("Below her", f"Below her, {inserted},")
    assert check_story(story(text), afraid) == []


def test_emotion_word_is_forbidden_even_when_not_listed():
    concept = Concept(emotion="Calm", definition="Settled.", forbidden=())
    assert check_story(story(filler("a") + " It was calm.", emotion="Calm"), concept)
    assert check_story(story(filler("a") + " Calmer now.", emotion="Calm"), concept) == []


@pytest.mark.parametrize("spelling", ["worn out", "Worn-Out", "worn \n out", "worn - out"])
def test_multi_word_forbidden_phrase_matches_spaces_and_hyphens(spelling):
    concept = Concept(emotion="worn out", definition="Spent.", forbidden=("worn out", "worn-out"))
    hit = f"{filler('a', 60)} She was {spelling} by noon."
    miss = f"{filler('a', 60)} The worn coat was out."
    assert len(check_story(story(hit, emotion="worn out"), concept)) == 1
    assert check_story(story(miss, emotion="worn out"), concept) == []


@pytest.mark.parametrize(
    ("count", "ok"), [(49, False), (50, True), (120, True), (180, True), (181, False), (0, False)]
)
def test_length_limits(afraid, count, ok):
    problems = check_story(story(filler("w", count), source="f.jsonl:3"), afraid)
    if ok:
        assert problems == []
    else:
        assert [str(p) for p in problems] == [f"f.jsonl:3: {count} words, outside 50-180 (afraid)"]


def test_word_count_treats_contractions_as_one_word_and_hyphens_as_two():
    assert words("Don't stop, well-known O'Neill!") == ["don't", "stop", "well", "known", "o'neill"]


def test_one_story_can_break_both_rules(afraid):
    problems = check_story(story("She was afraid."), afraid)
    assert len(problems) == 2


# --- Group rules, read from JSONL files ------------------------------------------------------


def problems_in(path, concepts, emotions=None):
    return [str(p) for p in check_corpus(load_stories(path), concepts, emotions=emotions)]


def test_full_good_group_in_a_file_has_no_problems(tmp_path, afraid):
    path = write_jsonl(tmp_path / "afraid.jsonl", full_group("afraid"))
    assert problems_in(path, {"afraid": afraid}) == []


def test_near_duplicate_just_over_the_threshold_is_reported(tmp_path, afraid):
    # Two 100-word stories sharing their last m words share m - 4 of their 96 5-grams each:
    # Jaccard (m-4) / (192-(m-4)) is 0.391 for m = 58 and 0.401 for m = 59 (limit 0.4).
    base = [f"basex{i}" for i in range(100)]

    def variant(m):
        return " ".join([f"newx{i}" for i in range(100 - m)] + base[100 - m :]) + "."

    records = full_group("afraid")
    records[0]["text"] = " ".join(base) + "."
    records[1]["text"] = variant(58)
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == []

    records[1]["text"] = variant(59)
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [
        "afraid.jsonl:2: near-duplicate of afraid.jsonl:1"
    ]


def test_exact_copy_is_a_near_duplicate_regardless_of_case_and_punctuation(tmp_path, afraid):
    records = full_group("afraid")
    records.append(record("Then " + GOOD_AFRAID.upper().replace(",", ";"), topic="home"))
    records.append(record(GOOD_AFRAID, split="test", topic="home"))
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [
        "afraid.jsonl:17: near-duplicate of afraid.jsonl:16"
    ]


def test_near_duplicates_only_count_within_one_emotion(tmp_path, concepts):
    chosen = {e: concepts[e] for e in ("afraid", "calm")}
    records = full_group("afraid", "a") + full_group("calm", "c")
    records[15]["text"] = records[0]["text"]  # calm's first story copies afraid's first
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    assert problems_in(path, chosen) == []
    records[1]["text"] = records[0]["text"].replace("a0x0", "other")
    path = write_jsonl(tmp_path / "mixed.jsonl", records)
    assert problems_in(path, chosen) == ["mixed.jsonl:2: near-duplicate of mixed.jsonl:1"]


def test_same_opening_is_reported_ignoring_case_and_punctuation(tmp_path, afraid):
    records = full_group("afraid")
    records[0]["text"] = "The bus was late again. " + filler("p")
    records[5]["text"] = "THE BUS, WAS empty. " + filler("q")
    records[7]["text"] = "The bus is gone. " + filler("r")  # differs in the third word
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [
        "afraid.jsonl:6: opens like afraid.jsonl:1: 'the bus was'"
    ]


@pytest.mark.parametrize(
    ("drop_split", "expected"),
    [
        ("train", "afraid: 11 train stories, below the quota of 12"),
        ("test", "afraid: 2 test stories, below the quota of 3"),
    ],
)
def test_emotion_below_quota(tmp_path, afraid, drop_split, expected):
    records = full_group("afraid")
    del records[next(i for i, r in enumerate(records) if r["split"] == drop_split)]
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [expected]


def test_missing_emotion_breaks_quota_and_topics(afraid):
    problems = [str(p) for p in check_emotion_group("afraid", [], quota=QUOTA)]
    assert problems == [
        "afraid: 0 train stories, below the quota of 12",
        "afraid: 0 test stories, below the quota of 3",
        f"afraid: 0 distinct topics, need {MIN_TOPICS}",
    ]


def test_too_few_topics(tmp_path, afraid):
    records = full_group("afraid")
    for i, r in enumerate(records):
        r["topic"] = TOPICS[i % (MIN_TOPICS - 1)]
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [
        f"afraid: {MIN_TOPICS - 1} distinct topics, need {MIN_TOPICS}"
    ]
    for i, r in enumerate(records):
        r["topic"] = TOPICS[i % MIN_TOPICS]
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == []


def test_empty_topics_do_not_count(tmp_path, afraid):
    records = full_group("afraid")
    for r in records[MIN_TOPICS - 1 :]:
        r["topic"] = ""
    path = write_jsonl(tmp_path / "afraid.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == [
        f"afraid: {MIN_TOPICS - 1} distinct topics, need {MIN_TOPICS}"
    ]


def test_unknown_emotion_is_reported_and_not_counted(tmp_path, afraid):
    records = [*full_group("afraid"), record(filler("u"), emotion="fearsome")]
    path = write_jsonl(tmp_path / "stories.jsonl", records)
    assert problems_in(path, {"afraid": afraid}) == ["stories.jsonl:16: unknown emotion 'fearsome'"]


def test_quota_is_checked_only_for_the_named_emotions(tmp_path, concepts):
    path = write_jsonl(tmp_path / "afraid.jsonl", full_group("afraid"))
    assert problems_in(path, concepts, emotions=["afraid"]) == []
    everything = problems_in(path, concepts)
    # Every other emotion has no stories: two quota problems and one topic problem each.
    assert len(everything) == 3 * (len(concepts) - 1)
    assert not any(p.startswith("afraid") for p in everything)


def test_texts_in_other_forms_load_train_only_and_do_not_count_towards_the_quota(tmp_path, afraid):
    mixed = [
        {**record(filler(f"m{i}"), topic="cooking"), "form": form}
        for i, form in enumerate(("first_person", "second_person", "dialogue"))
    ]
    records = full_group("afraid")
    path = write_jsonl(tmp_path / "afraid.jsonl", records + mixed)
    loaded = load_stories(path)
    assert [s.form for s in loaded] == ["story"] * 15 + [
        "first_person",
        "second_person",
        "dialogue",
    ]
    assert problems_in(path, {"afraid": afraid}) == []
    # twelve train texts, but only eleven of them stories: below the story quota
    del records[0]
    path = write_jsonl(tmp_path / "afraid.jsonl", records + mixed)
    assert problems_in(path, {"afraid": afraid}) == [
        "afraid: 11 train stories, below the quota of 12"
    ]
    # a text in another form is never held out (the test split is stories only)
    path = write_jsonl(
        tmp_path / "afraid.jsonl", full_group("afraid") + [{**mixed[0], "split": "test"}]
    )
    assert problems_in(path, {"afraid": afraid}) == [
        "afraid.jsonl:16: a first_person text must be in the train split"
    ]
    # and a mixed-form text that opens like a story of its emotion is caught like a story
    copy = {**mixed[1], "text": records[3]["text"]}
    path = write_jsonl(tmp_path / "afraid.jsonl", full_group("afraid") + [copy])
    assert any("near-duplicate" in p for p in problems_in(path, {"afraid": afraid}))


def test_loader_rejects_bad_records(tmp_path):
    bad_split = write_jsonl(tmp_path / "a.jsonl", [record(filler("a"), split="dev")])
    with pytest.raises(AffectlensError, match=r"a\.jsonl:1: split must be"):
        load_stories(bad_split)
    no_text = write_jsonl(tmp_path / "b.jsonl", [{"emotion": "afraid", "split": "train"}])
    with pytest.raises(AffectlensError, match=r"b\.jsonl:1: story record lacks 'text'"):
        load_stories(no_text)
    bad_form = write_jsonl(tmp_path / "c.jsonl", [{**record(filler("c")), "form": "poem"}])
    with pytest.raises(AffectlensError, match=r"c\.jsonl:1: form must be one of story, "):
        load_stories(bad_form)


# --- The shipped corpus ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return load_stories()


def test_shipped_corpus_has_every_emotion_at_quota(shipped, concepts):
    counts = split_counts(shipped)
    assert set(counts) == set(concepts)
    short = {
        emotion: dict(counts[emotion])
        for emotion in concepts
        if counts[emotion]["train"] < QUOTA["train"] or counts[emotion]["test"] < QUOTA["test"]
    }
    assert short == {}


def test_shipped_corpus_breaks_no_rule(shipped, concepts):
    assert [str(p) for p in check_corpus(shipped, concepts)] == []


def test_shipped_stories_sit_in_their_emotion_file_with_guide_topics(shipped):
    misplaced = [s.source for s in shipped if s.source.split(":")[0] != f"{slug(s.emotion)}.jsonl"]
    assert misplaced == []
    # stories keep to the guide's topics; texts in other forms may take any everyday topic
    assert {s.topic for s in shipped if s.form == "story"} <= set(TOPICS)


# --- ``affectlens corpus check`` ---------------------------------------------------------------


def test_cli_check_shipped_corpus_passes(capsys, shipped):
    assert main(["corpus", "check"]) == 0
    out = capsys.readouterr().out
    assert "stories per emotion and split" in out
    assert out.splitlines()[-1] == f"{len(shipped)} stories, 171 emotions checked, 0 problems"


def test_cli_check_only_some_emotions(capsys):
    assert main(["corpus", "check", "--only", "afraid, calm", "--quiet"]) == 0
    # 2 x (15 third-person stories + 12 texts in the other forms)
    assert capsys.readouterr().out == "54 stories, 2 emotions checked, 0 problems\n"


def test_cli_check_bad_file_lists_one_line_per_problem(tmp_path, capsys):
    records = full_group("afraid")
    records[3]["text"] = GOOD_AFRAID.replace("Below her", "Terrified, below her")
    records[4]["text"] = "Too short to be a story."
    records.append(record(filler("u"), emotion="fearsome"))
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    assert main(["corpus", "check", str(path), "--only", "afraid", "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "bad.jsonl:4: forbidden word 'Terrified' (afraid)",
        f"bad.jsonl:5: 6 words, outside {MIN_WORDS}-{MAX_WORDS} (afraid)",
        "bad.jsonl:16: unknown emotion 'fearsome'",
        "16 stories, 1 emotions checked, 3 problems",
    ]


def test_cli_check_without_only_checks_every_quota(tmp_path, capsys):
    path = write_jsonl(tmp_path / "afraid.jsonl", full_group("afraid"))
    assert main(["corpus", "check", str(path), "--quiet"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 * 170 + 1
    assert lines[-1] == f"15 stories, 171 emotions checked, {3 * 170} problems"
    assert "calm: 0 train stories, below the quota of 12" in lines


def test_cli_check_reads_a_folder(tmp_path, capsys):
    folder = tmp_path / "stories"
    folder.mkdir()
    write_jsonl(folder / "afraid.jsonl", full_group("afraid", "a"))
    write_jsonl(folder / "calm.jsonl", full_group("calm", "c"))
    (folder / "notes.txt").write_text("not a story file")
    assert main(["corpus", "check", str(folder), "--only", "afraid,calm", "--quiet"]) == 0
    assert capsys.readouterr().out == "30 stories, 2 emotions checked, 0 problems\n"


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_cli_check_missing_path(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["corpus", "check", str(missing)]) == 2
    assert one_error_line(capsys) == f"error: corpus not found: {missing}"


@pytest.mark.parametrize("kind", ["empty file", "blank lines", "empty folder"])
def test_cli_check_empty_path(tmp_path, capsys, kind):
    if kind == "empty folder":
        path = tmp_path / "stories"
        path.mkdir()
    else:
        path = tmp_path / "stories.jsonl"
        path.write_text("" if kind == "empty file" else "\n  \n")
    assert main(["corpus", "check", str(path)]) == 2
    assert one_error_line(capsys) == f"error: no stories found in {path}"


def test_cli_check_invalid_json_names_the_line(tmp_path, capsys):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(record(filler("a"))) + "\n{not json\n")
    assert main(["corpus", "check", str(path)]) == 2
    assert re.fullmatch(r"error: broken\.jsonl:2: not valid JSON \(.+\)", one_error_line(capsys))


def test_cli_check_unknown_only_emotion(capsys):
    assert main(["corpus", "check", "--only", "afraid,afriad"]) == 2
    assert one_error_line(capsys) == "error: unknown emotion 'afriad'; did you mean afraid?"
