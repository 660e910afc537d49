"""The reward-hacking policy samples each rollout with its own seed."""

from __future__ import annotations

import pytest

from affectlens.experiments.reward_hacking import ModelPolicy


def test_a_rollouts_reply_is_the_same_alone_in_a_batch_of_8_and_after_a_resume(
    emo_model, emo_vectors
):
    policy = ModelPolicy(
        emo_model,
        emo_vectors,
        {"desperate": 0.3},
        layers=[1],
        max_new_tokens=6,
        temperature=1.0,
        units="raw",
    )
    conversations = [[{"role": "user", "content": f"Task {i}: sum a list."}] for i in range(8)]
    seeds = [1000 + 7 * i for i in range(8)]
    batch = policy.respond(conversations, seeds=seeds)
    alone = policy.respond(conversations[5:6], seeds=seeds[5:6])
    resumed = policy.respond(conversations[4:], seeds=seeds[4:])  # rows 0-3 already stored
    assert batch[5].text == alone[0].text == resumed[1].text
    for kind, scores in batch[5].readouts.items():
        assert scores == pytest.approx(alone[0].readouts[kind], abs=1e-5)
    assert len({reply.text for reply in batch}) > 1
