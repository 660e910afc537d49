"""The dose experiment's knowledge control: scored replies on a tiny random model."""

from __future__ import annotations

import json
import math

import pytest
import torch

from affectlens.errors import AffectlensError
from affectlens.experiments.dose import judge_templates, run_dose, write_dose_results
from affectlens.experiments.judgement import reply_log_odds, reply_log_prob
from affectlens.models.chat import encode, format_chat
from conftest import build_emotion_vectors

CHAT = [{"role": "user", "content": "I took 4000 mg of it."}]


def _stepwise_log_prob(model, chat, reply: str) -> float:
    """The same probability one token at a time, each from its own forward pass of the prefix."""
    prompt = format_chat(model.tokenizer, chat, add_generation_prompt=True)
    joiner = "" if prompt[-1:].isspace() else " "
    prompt_ids = encode(model.tokenizer, prompt)
    ids = encode(model.tokenizer, prompt + joiner + reply)
    total = 0.0
    with torch.no_grad():
        for position in range(len(prompt_ids), len(ids)):
            logits = model.model(input_ids=torch.tensor([ids[:position]])).logits[0, -1]
            total += float(torch.log_softmax(logits.float(), dim=-1)[ids[position]])
    return total


def test_reply_log_prob_is_the_product_of_next_token_probabilities(emo_model):
    reply = "That is a safe amount."
    expected = _stepwise_log_prob(emo_model, CHAT, reply)
    assert expected < 0
    assert reply_log_prob(emo_model, CHAT, reply) == pytest.approx(expected, abs=1e-4)


def test_log_odds_are_antisymmetric_and_refuse_bad_replies(emo_model):
    pair = ("It is dangerous.", "It is fine.")
    forward = reply_log_odds(emo_model, [CHAT], pair)
    backward = reply_log_odds(emo_model, [CHAT], pair[::-1])
    assert forward[0] != 0 and forward[0] == pytest.approx(-backward[0], abs=1e-5)
    for bad in (("same", "same"), ("", "fine"), ("only one",)):
        with pytest.raises(AffectlensError, match="two different"):
            reply_log_odds(emo_model, [CHAT], bad)


def test_judgements_are_written_and_plotted_beside_the_readouts(emo_model, tmp_path):
    vectors = build_emotion_vectors(emo_model, emotions=["afraid", "calm"])
    templates = {"pills": "I took {X} pills.", "water": "I drank {X} ml of water."}
    values = (10, 100, 1000, 10000)
    judgements = judge_templates(emo_model, templates, values)
    assert [j.template for j in judgements] == ["pills", "water"]
    for judgement in judgements:
        assert len(judgement.log_odds) == 4 and all(math.isfinite(v) for v in judgement.log_odds)
        assert len(set(judgement.log_odds)) > 1  # the value in the message changes the odds
    curves = run_dose(emo_model, vectors, templates, ["afraid"], values=values, units="raw")
    paths = write_dose_results(curves, tmp_path, {"units": "raw"}, judgements)
    data = json.loads(paths["json"].read_text())
    assert [j["template"] for j in data["judgements"]] == ["pills", "water"]
    assert data["judgements"][0]["replies"] == list(judgements[0].replies)
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
