"""``affectlens corpus generate``: candidates filtered by the corpus rules, appended, resumable.

A stub :class:`StoryBackend` returns canned replies, so these tests need no real model.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from affectlens.cli import main
from affectlens.corpus import generate as gen
from affectlens.corpus.concepts import load_concepts
from affectlens.corpus.generate import (
    TOPICS,
    LocalModelBackend,
    build_request,
    clean_story,
    derive_seed,
    generate_stories,
    summary_lines,
    topic_for,
)
from affectlens.corpus.stories import load_stories
from affectlens.corpus.validate import check_story
from affectlens.errors import AffectlensError

# Stories written for these tests (60-150 words, no forbidden word, distinct openings).
AFRAID = [
    "The ferry rocked hard as it left the harbour, and Ines gripped the rail with both hands. "
    "Below her the water was black and close. She had never learned to swim, and every lurch "
    "of the deck sent her stomach up into her throat. A child ran past laughing and she "
    "flinched, pressing her back against the cabin wall. She counted the minutes on her watch, "
    "kept her eyes on the far shore and refused the seat by the open window. When the engine "
    "coughed and went quiet, her breath stopped until it roared back into life.",
    "A letter from the clinic sat unopened on the kitchen table for two days. Bongani walked "
    "around it to make coffee, slid it under the fruit bowl, then pulled it out again. The "
    "last scan had shown a shadow, the nurse had said, probably nothing. At night he lay awake "
    "with a hand pressed to his side, feeling for the lump and rehearsing the word the doctor "
    "might use. On the third morning his fingers shook so badly that he tore the envelope in "
    "half and had to lay the two pieces side by side to read them.",
    "Footsteps again, behind her on the gravel path. Yuki walked faster and the footsteps "
    "kept pace. The park lamps stood far apart, and between them the dark was thick enough "
    "to hide anyone. She slid her keys between her fingers the way her mother had shown her "
    "and felt her heart knock against her ribs. At the gate she risked a glance back and saw "
    "a tall shape stop when she stopped. She ran the last two streets without turning and "
    "locked the door twice before she let herself breathe.",
    "Nobody else in the class seemed to mind the climbing wall. Oskar stood at the bottom "
    "with the harness cutting into his thighs and looked up at the red holds that went on "
    "forever. His palms were wet before he had touched anything. Halfway up he made the "
    "mistake of looking down, and the floor swung away beneath him. He pressed his cheek "
    "against the plastic, could not make his left hand let go, and whispered to the teacher "
    "that he wanted to come down now, please, right now.",
]

CALM = [
    "Rain drummed on the tin roof of the allotment shed while Farid potted out the last "
    "tomato seedlings. He worked slowly, pressing soil around each stem with his thumbs, "
    "and did not hurry when the radio announced that the bus strike would go on another "
    "week. There was tea in the flask and nowhere he needed to be. When a gust blew the "
    "door open he got up, latched it, watched a blackbird shake water from its wings on "
    "the fence, and went back to his pots, breathing long and even.",
    "At four in the morning the ward was quiet except for the monitors. Nurse Adaeze checked "
    "the drip on bed six, wrote the numbers down in her neat square hand and smoothed the "
    "blanket over the sleeping man's feet. A buzzer sounded down the corridor; she walked to "
    "it without rushing, found an old woman who could not find her glasses, and found them "
    "for her. Back at the desk she drank the rest of her cooling coffee and watched the sky "
    "over the car park turn grey.",
    "Snow had closed the pass, the radio said, and the coach would not move before morning. "
    "While the other passengers argued with the driver, Marta unfolded her scarf into a "
    "pillow, took out the crossword she had been saving and sharpened her pencil with a "
    "small knife. Outside the window the flakes drifted past the single lamp. She solved "
    "three clues, offered a boy across the aisle half of her orange, and when the lights "
    "dimmed she let her head rest on the glass and listened to the engine tick as it cooled.",
]

FORBIDDEN = AFRAID[3].replace("His palms were wet", "His palms were wet with fear")
TOO_SHORT = "Oskar looked up at the wall and did not move."


def emotion_of(prompt: list[dict]) -> str:
    return re.search(r"feels (.+?): ", prompt[-1]["content"]).group(1)


class CannedBackend:
    """A :class:`StoryBackend` that hands out canned replies per emotion, in order.

    It records every call, and when ``out`` is given, how many records that file held at
    the moment of each call. ``fail_after`` makes it raise once that many calls were served.
    """

    def __init__(self, replies: dict[str, list[str]], out=None, fail_after=None):
        self.replies = {emotion: list(texts) for emotion, texts in replies.items()}
        self.out = out
        self.fail_after = fail_after
        self.calls: list[dict] = []

    def complete(self, prompts, *, max_new_tokens, temperature, seed):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("power cut")
        lines = None
        if self.out is not None and self.out.exists():
            lines = len(self.out.read_text(encoding="utf-8").splitlines())
        emotions = [emotion_of(p) for p in prompts]
        self.calls.append(
            {
                "emotions": emotions,
                "prompts": prompts,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
                "lines_on_disk": lines,
            }
        )
        replies = []
        for emotion in emotions:
            queue = self.replies.get(emotion)
            assert queue, f"the generator asked for more {emotion} stories than were canned"
            replies.append(queue.pop(0))
        return replies


@pytest.fixture(scope="module")
def concepts():
    return load_concepts()


def read_records(path):
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def run(backend, concepts, out, emotions=("afraid",), **kwargs):
    kwargs.setdefault("progress", False)
    return generate_stories(backend, [concepts[e] for e in emotions], out, **kwargs)


def test_canned_stories_are_valid(concepts):
    for emotion, texts in [("afraid", AFRAID), ("calm", CALM)]:
        for text in texts:
            assert clean_story(text) == text
            assert check_story(_story(emotion, text), concepts[emotion]) == []
    assert check_story(_story("afraid", FORBIDDEN), concepts["afraid"])


def _story(emotion, text):
    from affectlens.corpus.stories import Story

    return Story(emotion=emotion, split="train", topic="work", text=text)


def test_only_valid_candidates_are_appended(tmp_path, concepts):
    out = tmp_path / "sub" / "new.jsonl"
    same_opening = AFRAID[0].replace("harbour", "port").replace("life.", "life again.")
    near_duplicate = "That evening, t" + AFRAID[0][1:]
    backend = CannedBackend(
        {
            "afraid": [
                FORBIDDEN,  # slot 0, attempt 0
                TOO_SHORT,  # slot 1, attempt 0
                AFRAID[0],  # slot 2: kept
                same_opening,  # slot 0, attempt 1
                near_duplicate,  # slot 1, attempt 1
                f"Sure! Here is a story:\n\n**{AFRAID[1]}**\n\nI hope you enjoyed it!",
                AFRAID[2] + " Then she",  # cut off by the token budget
            ]
        }
    )
    (report,) = run(backend, concepts, out, per_emotion=3, max_new_tokens=77, temperature=0.5)

    assert [len(call["emotions"]) for call in backend.calls] == [3, 2, 2]
    assert all(call["max_new_tokens"] == 77 for call in backend.calls)
    assert all(call["temperature"] == 0.5 for call in backend.calls)
    assert backend.replies == {"afraid": []}
    assert (report.existing, report.accepted, report.missing, report.candidates) == (0, 3, 0, 7)
    assert report.rejected == Counter(
        {"forbidden word": 1, "too short": 1, "same opening": 1, "near-duplicate": 1}
    )

    records = read_records(out)
    assert [r["text"] for r in records] == [AFRAID[0], AFRAID[1], AFRAID[2]]
    assert [r["topic"] for r in records] == [topic_for("afraid", i) for i in (2, 0, 1)]
    assert all(set(r) == {"emotion", "split", "topic", "text"} for r in records)
    assert {(r["emotion"], r["split"]) for r in records} == {("afraid", "train")}
    for story in load_stories(out):
        assert check_story(story, concepts["afraid"]) == []


def test_prompt_names_emotion_definition_topic_and_forbidden_words(concepts):
    concept = concepts["afraid"]
    request = build_request(concept, index=4, attempt=1, seed=3)
    user = request.messages[-1]["content"]
    assert request.topic == topic_for("afraid", 4) in TOPICS
    assert f"about {request.topic} " in user
    assert "feels afraid: " in user
    assert concept.definition.rstrip(".").lower() in user
    for word in concept.forbidden:
        assert re.search(rf"\b{re.escape(word)}\b", user)
    assert request.messages[0]["role"] == "system"
    # Another attempt at the same slot keeps the topic; the seed and the character vary.
    assert build_request(concept, 4, attempt=2, seed=3).topic == request.topic
    assert derive_seed(3, "afraid", 4, 1) == derive_seed(3, "afraid", 4, 1)
    assert len({derive_seed(3, "afraid", 4, a) for a in range(8)}) == 8
    assert len({topic_for("afraid", i) for i in range(len(TOPICS))}) == len(TOPICS)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Here's a story about travel:\n\nThe Long Night\n\nShe ran. He hid.", "She ran. He hid."),
        ('"She ran. He hid."', "She ran. He hid."),
        ("### Title\n**She ran.** He hid.\n\nNote: 60 words.", "She ran. He hid."),
        ("She ran. He hid. Then the", "She ran. He hid."),
        ('"Run," she said. "Now."', '"Run," she said. "Now."'),
        ("", ""),
    ],
)
def test_clean_story(reply, expected):
    assert clean_story(reply) == expected


def test_records_are_written_one_at_a_time_and_an_interrupted_run_resumes(tmp_path, concepts):
    out = tmp_path / "new.jsonl"
    first = CannedBackend({"afraid": [AFRAID[0], AFRAID[1]]}, out=out, fail_after=2)
    with pytest.raises(RuntimeError, match="power cut"):
        run(first, concepts, out, per_emotion=4, batch_size=1)
    # Each accepted story was on disk before the next prompt went out.
    assert [call["lines_on_disk"] for call in first.calls] == [0, 1]
    assert [r["text"] for r in read_records(out)] == AFRAID[:2]

    second = CannedBackend({"afraid": [AFRAID[1], AFRAID[2], AFRAID[3]]}, out=out)
    (report,) = run(second, concepts, out, per_emotion=4, batch_size=1)
    assert (report.existing, report.accepted, report.missing) == (2, 2, 0)
    assert report.rejected == Counter({"same opening": 1})  # AFRAID[1] is already there
    assert [call["lines_on_disk"] for call in second.calls] == [2, 2, 3]
    records = read_records(out)
    assert [r["text"] for r in records] == AFRAID
    assert [r["topic"] for r in records] == [topic_for("afraid", i) for i in range(4)]


def test_second_run_does_not_redo_emotions_at_their_count(tmp_path, concepts):
    out = tmp_path / "new.jsonl"
    backend = CannedBackend({"afraid": AFRAID[:2], "calm": CALM[:2]})
    run(backend, concepts, out, emotions=("afraid", "calm"), per_emotion=2)
    before = out.read_bytes()
    assert [r["emotion"] for r in read_records(out)] == ["afraid", "afraid", "calm", "calm"]

    idle = CannedBackend({})
    reports = run(idle, concepts, out, emotions=("afraid", "calm"), per_emotion=2)
    assert idle.calls == []
    assert [(r.existing, r.accepted, r.candidates) for r in reports] == [(2, 0, 0), (2, 0, 0)]
    assert out.read_bytes() == before

    # Asking for one more of each asks only for the one missing story of each.
    more = CannedBackend({"afraid": AFRAID[2:3], "calm": CALM[2:3]})
    run(more, concepts, out, emotions=("calm", "afraid"), per_emotion=3)
    assert [call["emotions"] for call in more.calls] == [["calm"], ["afraid"]]
    texts = [r["text"] for r in read_records(out)]
    assert len(texts) == len(set(texts)) == 6


def test_resume_counts_only_the_requested_split_but_checks_against_all(tmp_path, concepts):
    out = tmp_path / "new.jsonl"
    run(CannedBackend({"afraid": AFRAID[:2]}), concepts, out, per_emotion=2)
    backend = CannedBackend({"afraid": [AFRAID[0], AFRAID[2]]})
    (report,) = run(backend, concepts, out, per_emotion=1, split="test")
    assert (report.existing, report.accepted) == (0, 1)
    assert report.rejected == Counter({"same opening": 1})
    records = read_records(out)
    assert [(r["split"], r["text"]) for r in records][-1] == ("test", AFRAID[2])
    assert len(records) == 3


def test_slots_left_missing_after_max_attempts(tmp_path, concepts):
    out = tmp_path / "new.jsonl"
    backend = CannedBackend({"afraid": [TOO_SHORT] * 3 + [FORBIDDEN] * 3})
    (report,) = run(backend, concepts, out, per_emotion=2, max_attempts=3)
    assert [len(call["emotions"]) for call in backend.calls] == [2, 2, 2]
    assert (report.accepted, report.candidates, report.missing) == (0, 6, 2)
    assert read_records(out) == []
    assert summary_lines([report]) == [
        "afraid: 0 already there, 0 accepted of 6 candidates, rejected: "
        "3 too short, 3 forbidden word; 2 still missing",
        "total: 0 accepted of 6 candidates (0%); rejected: 3 too short, 3 forbidden word",
    ]


def test_appending_to_a_file_without_a_final_newline_keeps_it_valid(tmp_path, concepts):
    out = tmp_path / "hand_written.jsonl"
    existing = {"emotion": "calm", "split": "train", "topic": "work", "text": CALM[0]}
    out.write_text(json.dumps(existing), encoding="utf-8")  # no trailing newline
    run(CannedBackend({"afraid": AFRAID[:1]}), concepts, out, per_emotion=1)
    assert [r["text"] for r in read_records(out)] == [CALM[0], AFRAID[0]]


def test_wrong_number_of_replies_is_an_error(tmp_path, concepts):
    class Short:
        def complete(self, prompts, **kwargs):
            return AFRAID[: len(prompts) - 1]

    with pytest.raises(AffectlensError, match="returned 1 replies for 2 prompts"):
        run(Short(), concepts, tmp_path / "new.jsonl", per_emotion=2)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"per_emotion": -1},
        {"per_emotion": 1, "batch_size": 0},
        {"per_emotion": 1, "max_attempts": 0},
        {"per_emotion": 1, "max_new_tokens": 0},
        {"per_emotion": 1, "temperature": -0.1},
    ],
)
def test_bad_settings_are_refused_before_writing(tmp_path, concepts, kwargs):
    out = tmp_path / "new.jsonl"
    with pytest.raises(AffectlensError):
        run(CannedBackend({}), concepts, out, **kwargs)
    assert not out.exists()


def test_local_model_backend_runs_the_tiny_model(tmp_path, concepts, emo_model):
    backend = LocalModelBackend(emo_model)
    replies = backend.complete(
        [[{"role": "user", "content": "Hi"}]] * 2, max_new_tokens=4, temperature=0.0, seed=0
    )
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    # A random model's few tokens can never make a 50-word story: nothing is written.
    out = tmp_path / "new.jsonl"
    (report,) = run(backend, concepts, out, per_emotion=1, max_new_tokens=4, max_attempts=2)
    assert (report.accepted, report.candidates, report.missing) == (0, 2, 1)
    assert read_records(out) == []


# --- The ``corpus generate`` command ---------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if the command gets as far as loading a model."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model should not be loaded")

    monkeypatch.setattr("affectlens.models.loading.load_model", refuse)


@pytest.mark.parametrize(
    ("emotions", "per_emotion", "message"),
    [
        ("afraid,afriad", "2", "error: unknown emotion 'afriad'; did you mean afraid?"),
        (" , ", "2", "error: --emotions names no emotion"),
        ("afraid", "0", "error: --per-emotion must be at least 1"),
    ],
)
def test_cli_generate_bad_input_is_one_line_and_writes_nothing(
    tmp_path, capsys, no_model, emotions, per_emotion, message
):
    out = tmp_path / "new.jsonl"
    argv = ["corpus", "generate", "--emotions", emotions, "--per-emotion", per_emotion]
    assert main([*argv, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [message]
    assert not out.exists()


def test_cli_generate_writes_stories_and_a_summary(tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(
        "affectlens.models.loading.load_model",
        lambda spec, **kwargs: loaded.append((spec, kwargs)) or "model",
    )
    canned = {"afraid": [TOO_SHORT, AFRAID[0], AFRAID[1]], "calm": CALM[:1]}

    class Backend(CannedBackend):
        def __init__(self, model):
            assert model == "model"
            super().__init__(canned)

    monkeypatch.setattr(gen, "LocalModelBackend", Backend)
    out = tmp_path / "new.jsonl"
    argv = ["corpus", "generate", "--emotions", "afraid,calm", "--out", str(out)]
    argv += ["--no-progress", "--model", "some-model", "--device", "cpu"]
    assert main([*argv, "--per-emotion", "1"]) == 0
    assert loaded == [("some-model", {"dtype": None, "device": "cpu"})]
    assert capsys.readouterr().out.splitlines() == [
        "afraid: 0 already there, 1 accepted of 2 candidates, rejected: 1 too short; "
        "0 still missing",
        "calm: 0 already there, 1 accepted of 1 candidates, rejected: none; 0 still missing",
        "total: 2 accepted of 3 candidates (67%); rejected: 1 too short",
    ]
    assert [r["text"] for r in read_records(out)] == [AFRAID[0], CALM[0]]

    # Asking for two of each leaves calm short (no canned story left): exit status 1.
    canned["calm"] = [TOO_SHORT] * 4
    assert main([*argv, "--per-emotion", "2"]) == 1
    assert capsys.readouterr().out.splitlines()[1] == (
        "calm: 1 already there, 0 accepted of 4 candidates, rejected: 4 too short; 1 still missing"
    )
    assert [r["text"] for r in read_records(out)] == [AFRAID[0], CALM[0], AFRAID[1]]
