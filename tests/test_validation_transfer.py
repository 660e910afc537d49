"""Transfer sets: the shipped files obey their rules, the checker catches each rule, and the
scoring recovers planted answers with hand-checked Wilson intervals and confusion counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.validation.transfer import (
    BASIC_EMOTIONS,
    FORMS,
    TRANSFER_EMOTIONS,
    TransferText,
    check_quota,
    check_transfer_set,
    load_transfer,
    name_forms,
    select_split,
)
from affectlens.validation.transfer_score import score_task, score_transfer, transfer_section
from conftest import build_emotion_vectors

# --- the shipped sets ---


def test_shipped_transfer_sets_obey_their_rules():
    texts = load_transfer()
    assert {t.form for t in texts} == set(FORMS)
    problems = check_transfer_set(texts)
    assert problems == [], "\n".join(str(p) for p in problems[:30])


# --- the checker, one rule at a time ---

CLEAN = {
    "second_person": "You unlock the front door and find the hallway flooded, a grey tide "
    "lapping at the bottom stair, your shoes floating past the radiator like little boats.",
    "diary": "Tuesday. I found the old photo album in the loft today and sat on the floor for "
    "an hour turning the pages, the smell of the paper and the glue of the corners.",
    "dialogue": "Ana: Did you take the last of the milk again?\nBen: I bought more, it is in "
    "the door of the fridge.\nAna: Then why is the carton on the counter empty and warm?",
    "social_post": "Third time this week the bus drove straight past the stop with me waving "
    "at it like a lunatic. Walked the whole way in the rain. #mondays",
}


def _item(form: str, text: str, emotion: str = "sad", split: str = "dev", line: int = 1):
    return TransferText(emotion, form, split, text, source=f"{form}.jsonl:{line}")


def _messages(texts: list[TransferText]) -> list[str]:
    return [p.message for p in check_transfer_set(texts, quota={})]


def test_clean_texts_pass():
    assert _messages([_item(form, text) for form, text in CLEAN.items()]) == []


@pytest.mark.parametrize(
    ("emotion", "text", "found"),
    [
        ("afraid", "terrified", "terrified"),  # the emotion's own forbidden word
        ("sad", "happily", "happily"),  # another of the 24 words, in another form
        ("sad", "Anger", "Anger"),  # any case
        ("sad", "#SoHappy", "#SoHappy"),  # inside a hashtag
        ("sad", "#sadtimes", "#sadtimes"),
        ("angry", "calm down", "calm"),
    ],
)
def test_naming_an_emotion_is_caught(emotion, text, found):
    base = CLEAN["social_post"].replace("#mondays", text)
    messages = _messages([_item("social_post", base, emotion)])
    assert messages == [f"names an emotion: {found!r} ({emotion})"]


def test_words_that_only_contain_a_name_pass():
    # a whole-word rule: "crusader" holds "sad" but is not it; a hashtag names a short word
    # only when it starts or ends with it
    text = CLEAN["social_post"].replace("#mondays", "the crusader statue #crusades")
    assert _messages([_item("social_post", text)]) == []


def test_name_forms_cover_inflections_but_not_other_words():
    forms = set(name_forms())
    assert {"anger", "angrily", "hope", "hoping", "boredom", "tiring", "relief"} <= forms
    assert not {"fury", "content", "worried", "pride"} & forms  # synonyms, not forms


def test_length_limits_per_form():
    short = _item("diary", "I sat and looked at the wall for a while, nothing else.")
    long_post = _item("social_post", " ".join(["we walked"] * 36))
    assert _messages([short]) == ["12 words, outside 25-120"]
    assert _messages([long_post]) == ["72 words, outside 12-70"]


def test_form_shapes():
    not_you = _item("second_person", "The " + CLEAN["second_person"][4:])
    monologue = _item("dialogue", "Ana: " + CLEAN["diary"])
    one_speaker = _item("dialogue", "Ana: Hello there, the train is late again.\n" * 3)
    not_lines = _item("dialogue", CLEAN["dialogue"].replace("Ben:", "and Ben said"))
    emoji = _item("social_post", CLEAN["social_post"] + " \U0001f327")
    assert _messages([not_you]) == ["a second-person scenario must start with 'You'"]
    assert _messages([monologue]) == ["a dialogue must be 2-6 lines of 'Name: ...'"]
    assert "a dialogue needs at least two speakers" in _messages([one_speaker])
    assert _messages([not_lines]) == ["a dialogue must be 2-6 lines of 'Name: ...'"]
    assert _messages([emoji]) == ["a social post must be plain ASCII (no emoji)"]


def test_repeated_openings_and_runs_within_a_form():
    first = _item("second_person", CLEAN["second_person"], line=1)
    same_opening = _item(
        "second_person",
        "You unlock the car and the smell of the dog hits you before the door is "
        "halfway open, wet fur and something older underneath it.",
        line=2,
    )
    shared_run = _item(
        "second_person",
        "You come home late and see your shoes floating past the radiator, the rug "
        "heavy with water, the cat up on top of the bookcase.",
        line=3,
    )
    assert _messages([first, same_opening, shared_run]) == [
        "opens like second_person.jsonl:1: 'you unlock the'",
        "shares 'your shoes floating past the' with second_person.jsonl:1",
    ]
    # the same run in another form is not a repeat
    other_form = _item("diary", "I " + shared_run.text[4:].replace("your", "my"), line=9)
    assert _messages([first, other_form]) == []


def test_labels_and_file_form_are_checked():
    assert _messages([_item("diary", CLEAN["diary"], emotion="zesty")]) == [
        "emotion 'zesty' is not one of the 24"
    ]
    wrong = TransferText("sad", "diary", "train", CLEAN["diary"], "dialogue.jsonl:3")
    assert _messages([wrong]) == ["unknown split 'train'", "form 'diary' in the dialogue file"]


def test_quota_and_dev_before_test():
    texts = [_item("diary", "x", "sad", split) for split in ["dev"] * 12 + ["test"] * 13]
    problems = {str(p) for p in check_quota(texts)}
    assert "diary/sad: 12 dev, 13 test; need 12 dev, 13 test" not in problems
    assert len(problems) == len(FORMS) * len(TRANSFER_EMOTIONS) - 1
    assert "diary/happy: 0 dev, 0 test; need 12 dev, 13 test" in problems
    swapped = texts[:11] + [texts[-1]] + texts[11:-1]  # a test text among the dev ones
    assert "diary/sad: a dev text after a test text" in {str(p) for p in check_quota(swapped)}


# --- loading ---


def test_load_transfer_reads_a_folder_and_refuses_bad_records(tmp_path):
    folder = tmp_path / "transfer"
    folder.mkdir()
    record = {"emotion": "sad", "form": "diary", "split": "dev", "text": CLEAN["diary"]}
    (folder / "diary.jsonl").write_text(json.dumps(record) + "\n\n", encoding="utf-8")
    (folder / "dialogue.jsonl").write_text(
        json.dumps(record | {"form": "dialogue", "split": "test"}) + "\n", encoding="utf-8"
    )
    texts = load_transfer(folder)
    assert [(t.form, t.source) for t in texts] == [
        ("dialogue", "dialogue.jsonl:1"),
        ("diary", "diary.jsonl:1"),
    ]
    assert [t.form for t in select_split(texts, "dev")] == ["diary"]
    with pytest.raises(AffectlensError, match="unknown transfer split"):
        select_split(texts, "train")
    (folder / "bad.jsonl").write_text('{"emotion": "sad"}\n', encoding="utf-8")
    with pytest.raises(AffectlensError, match=r"bad.jsonl:1: bad transfer record"):
        load_transfer(folder)
    with pytest.raises(AffectlensError, match="transfer set not found"):
        load_transfer(tmp_path / "none")


# --- scoring on planted activations ---


def _planted_task():
    """Vectors are basis directions; each text's activation is the centre plus the basis
    direction of a chosen prediction, so every prediction is known in advance."""
    emotions = list(BASIC_EMOTIONS) + ["calm"]
    hidden, layers = 16, [3, 5]
    basis = torch.eye(hidden)[: len(emotions)]
    vectors = build_emotion_vectors_like(emotions, layers, basis)
    centre = vectors.raw_means.float().mean(dim=0)
    texts, predicted = [], []
    # diary: all 12 right (2 per basic emotion); dialogue: 7 of 12 right, the 5 wrong ones
    # afraid texts read as angry (2), sad as happy (2), one disgusted as sad
    for emotion in BASIC_EMOTIONS:
        for _ in range(2):
            texts.append(TransferText(emotion, "diary", "dev", "t"))
            predicted.append(emotion)
    wrong = {"afraid": ["angry", "angry"], "sad": ["happy", "happy"], "disgusted": ["sad"]}
    for emotion in BASIC_EMOTIONS:
        guesses = wrong.get(emotion, [])
        guesses = guesses + [emotion] * (2 - len(guesses))
        for guess in guesses:
            texts.append(TransferText(emotion, "dialogue", "dev", "t"))
            predicted.append(guess)
    texts.append(TransferText("calm", "dialogue", "dev", "t"))  # not a basic emotion
    predicted.append("calm")
    rows = torch.stack([basis[emotions.index(p)] for p in predicted])
    # layer 3 as planned; layer 5 reads every text as "happy"
    happy = basis[emotions.index("happy")].expand(len(texts), hidden)
    acts = centre[None] + 4 * torch.stack([rows, happy], dim=1)
    return acts, texts, vectors


def build_emotion_vectors_like(emotions, layers, basis):
    from affectlens.vectors import EmotionVectors

    vectors = torch.stack([basis] * len(layers), dim=1)  # [E, L, H]
    offset = 30 * torch.ones(basis.shape[1])
    return EmotionVectors(
        emotions=emotions,
        layers=layers,
        vectors=vectors,
        raw_means=offset + 2 * vectors,
        residual_norms=torch.ones(len(layers)),
        neutral_pcs={},
        provenance={},
    )


def test_basic6_accuracy_ci_and_confusion_by_hand():
    acts, texts, vectors = _planted_task()
    task = score_task(acts, texts, vectors, BASIC_EMOTIONS)
    assert task["n"] == 24 and task["ignored"] == 1  # the calm text
    assert task["chance"] == pytest.approx(1 / 6)
    diary, dialogue = (task["per_form"][f]["per_layer"][0]["top1"] for f in ("diary", "dialogue"))
    assert (diary["hits"], diary["n"], diary["value"]) == (12, 12, 1.0)
    assert (dialogue["hits"], dialogue["n"]) == (7, 12)
    # Wilson 95% for 7/12 and 12/12 (z = 1.95996), computed by hand
    assert (dialogue["low"], dialogue["high"]) == pytest.approx((0.31951, 0.80674), abs=1e-5)
    assert (diary["low"], diary["high"]) == pytest.approx((0.75751, 1.0), abs=1e-5)
    pooled = task["pooled"]["per_layer"]
    assert pooled[0]["top1"]["hits"] == 19 and pooled[0]["top1"]["n"] == 24
    assert pooled[1]["top1"]["hits"] == 4  # layer 5: only the 4 happy texts are right
    expected = np.diag([2, 4, 3, 4, 2, 4])
    order = list(BASIC_EMOTIONS)  # afraid angry disgusted happy sad surprised
    expected[order.index("afraid"), order.index("angry")] = 2
    expected[order.index("sad"), order.index("happy")] = 2
    expected[order.index("disgusted"), order.index("sad")] = 1
    assert task["confusion"]["3"] == expected.tolist()
    assert np.array(task["confusion"]["5"])[:, order.index("happy")].tolist() == [4] * 6


def test_set24_uses_only_the_emotions_the_artifact_has():
    acts, texts, vectors = _planted_task()
    scored = score_transfer(acts, texts, vectors)
    task = scored["set24"]
    assert task["emotions"] == list(BASIC_EMOTIONS) + ["calm"]
    assert len(task["missing"]) == 24 - 7 and "desperate" in task["missing"]
    assert task["chance"] == pytest.approx(1 / 7)
    assert task["pooled"]["per_layer"][0]["top1"]["hits"] == 20 and task["n"] == 25
    few = build_emotion_vectors_like(["happy", "calm"], [3], torch.eye(4)[:2])
    assert "skipped" in score_task(acts[:, :1, :4], texts, few, BASIC_EMOTIONS)


# --- end to end on a tiny random model ---


def _texts_for(emotions):
    scenes = {
        "happy": "You open the envelope and the offer is there in black ink, the salary and "
        "the start date, and you read it three times grinning at the kitchen wall.",
        "sad": "You clear out the old bedroom, fold the small jumpers into a box and find the "
        "drawing taped inside the wardrobe door, a house with four people and a dog.",
        "afraid": "You hear the back door handle turn at three in the night, slowly, and then "
        "the soft weight of a foot on the kitchen tiles below your room.",
        "angry": "You find the scratch along the side of your new car and the neighbour's boy "
        "on the wall with a key in his hand, smirking as you walk up.",
    }
    texts = []
    for emotion in emotions:
        for split, count in (("dev", 2), ("test", 1)):
            for i in range(count):
                text = f"{scenes[emotion]} Day {i} of it, {split}."
                texts.append(TransferText(emotion, "second_person", split, text))
    return texts


def test_transfer_section_reads_like_held_out_stories(emo_model):
    """Vectors planted as the dev texts' own centred means classify them perfectly, through
    the same reading as held-out stories; the test split is not read unless asked."""
    from affectlens.validation.classification import read_activations, settings_from

    emotions = ["happy", "sad", "afraid", "angry"]
    texts = _texts_for(emotions)
    vectors = build_emotion_vectors(emo_model, emotions)
    vectors.provenance["settings"] = {"start_token": 2}
    dev = select_split(texts, "dev")
    acts = read_activations(emo_model, dev, vectors.layers, settings_from(vectors))
    labels = torch.tensor([emotions.index(t.emotion) for t in dev])
    means = torch.stack([acts[labels == e].mean(dim=0) for e in range(len(emotions))])
    vectors.raw_means = means
    centred = means - means.mean(dim=0)
    vectors.vectors = centred / centred.norm(dim=-1, keepdim=True)

    section = transfer_section(emo_model, vectors, texts)
    assert section["split"] == "dev" and section["n_texts"] == 8
    assert section["readout"]["start_token"] == 2 and not section["readout"]["chat_template"]
    basic = section["basic6"]
    assert basic["emotions"] == ["afraid", "angry", "happy", "sad"]
    assert basic["missing"] == ["disgusted", "surprised"]
    assert all(r["top1"]["value"] == 1.0 for r in basic["pooled"]["per_layer"])
    assert list(basic["per_form"]) == ["second_person"]

    tested = transfer_section(emo_model, vectors, texts, split="test")
    assert tested["split"] == "test" and tested["n_texts"] == 4
    empty = transfer_section(emo_model, vectors, dev, split="test")
    assert "skipped" in empty
