"""Guardrail policies: parsing and refusals, trigger statistics, hysteresis, shadow mode, and
the engine applying a firing to one row only."""

from __future__ import annotations

import pytest
import yaml

from affectlens.engine import Engine, GenerationRequest, ReadoutSpec, SamplingParams
from affectlens.errors import AffectlensError
from affectlens.guardrails import GuardrailPolicy, load_policy
from conftest import build_emotion_vectors, build_family_loaded

STEER = {
    "name": "desperate-hot",
    "when": {"emotion": "desperate", "stat": "ema", "window": 3, "above": 1.5},
    "until": {"below": 0.8},
    "action": {"steer": {"calm": 0.1}},
}


def _policy(*rules, **extra) -> GuardrailPolicy:
    return GuardrailPolicy.from_dict({"name": "t", "rules": list(rules), **extra})


def _actions(policy, emotion, values):
    run = policy.start()
    return [[e.action for e in run.observe(i, {emotion: v})] for i, v in enumerate(values)], run


def test_ema_fires_at_the_token_it_crosses_and_hysteresis_holds():
    values = [0.0, 3.0, 3.0, 1.0, 1.0, 0.0, 0.0, 4.0]
    alpha, ema, expected = 0.5, None, []  # window 3: alpha = 2 / (3 + 1)
    for value in values:
        ema = value if ema is None else alpha * value + (1 - alpha) * ema
        expected.append(ema)
    # by hand: 0, 1.5, 2.25, 1.625, 1.3125, 0.65625, 0.328, 2.164
    actions, run = _actions(_policy(STEER), "desperate", values)
    assert actions == [[], [], ["steer_on"], [], [], ["steer_off"], [], ["steer_on"]]
    assert run.events[0].values["desperate"] == pytest.approx(expected[2])
    assert run.steering == {"calm": 0.1} and not run.stopped


def test_steer_stays_on_between_the_thresholds():
    rule = dict(STEER, when={"emotion": "desperate", "above": 1.5})
    actions, run = _actions(_policy(rule), "desperate", [2.0, 1.0, 1.4, 0.9, 0.7, 1.2, 1.6])
    assert actions == [["steer_on"], [], [], [], ["steer_off"], [], ["steer_on"]]


def test_for_counts_consecutive_tokens_and_a_flag_rearms():
    rule = {"name": "f", "when": {"emotion": "afraid", "above": 3.0, "for": 3}, "action": "flag"}
    values = [4, 4, 2, 4, 4, 4, 4, 1, 4, 4, 4]
    actions, run = _actions(_policy(rule), "afraid", values)
    assert [i for i, a in enumerate(actions) if a] == [5, 10]
    assert run.steering == {} and not run.stopped


def test_window_mean_and_stop():
    rule = {
        "name": "s",
        "when": {"emotion": "hostile", "stat": "mean", "window": 2, "above": 4.0},
        "action": "stop",
    }
    actions, run = _actions(_policy(rule), "hostile", [5.0, 2.0, 6.0, 3.0])
    # means 5, 3.5, 4, 4.5: fires at token 0, re-arms at 1, fires again at 3
    assert actions == [["stop"], [], [], ["stop"]] and run.stopped
    actions, run = _actions(_policy(rule), "hostile", [1.0, 5.0, 4.0, 5.0])
    assert actions == [[], [], ["stop"], []]  # means 1, 3, 4.5


def test_shadow_mode_records_the_same_events_and_changes_nothing():
    values = [3.0, 3.0, 0.0, 0.0, 5.0]
    stop = {"name": "s", "when": {"emotion": "desperate", "above": 4.5}, "action": "stop"}
    live_actions, live = _actions(_policy(STEER, stop), "desperate", values)
    shadow_actions, shadow = _actions(_policy(STEER, stop, shadow=True), "desperate", values)
    assert shadow_actions == live_actions and live.stopped
    assert all(e.shadow for e in shadow.events)
    assert shadow.steering == {} and not shadow.stopped


def test_round_trip_through_yaml_and_the_example_file(tmp_path):
    policy = _policy(
        STEER, {"name": "f", "when": {"emotion": "afraid", "above": 3}, "action": "flag"}
    )
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy.to_dict()))
    assert load_policy(path) == policy
    example = load_policy("examples/guardrails/calm-down.yaml")
    assert example.emotions() == {"desperate", "afraid", "hostile"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"rules": []}, "rules must be a non-empty list"),
        ({"rules": [STEER], "colour": 1}, "unknown key 'colour'"),
        ({"rules": [dict(STEER, when={"emotion": "desperate"})]}, "when.above"),
        ({"rules": [dict(STEER, when={"emotion": "x", "above": 1, "stat": "ema"})]}, "window"),
        ({"rules": [dict(STEER, when={"emotion": "x", "above": 1, "window": 0})]}, "window"),
        ({"rules": [dict(STEER, when={"emotion": "x", "above": 1, "stat": "max"})]}, "stat"),
        ({"rules": [dict(STEER, until={"below": 2.0})]}, "must be lower than"),
        ({"rules": [dict(STEER, until=None)]}, "needs until"),
        ({"rules": [dict(STEER, action="explode")]}, "action must be"),
        ({"rules": [STEER, STEER]}, "unique"),
        ({"rules": [STEER], "units": "kelvin"}, "units"),
    ],
)
def test_malformed_policies_are_refused_in_one_line(data, message):
    with pytest.raises(AffectlensError, match=message) as caught:
        GuardrailPolicy.from_dict(data)
    assert "\n" not in str(caught.value)


def test_check_refuses_unknown_emotions_and_alphas_out_of_range():
    with pytest.raises(AffectlensError, match="did you mean desperate"):
        _policy(dict(STEER, when={"emotion": "desprate", "above": 2})).check(["desperate", "calm"])
    with pytest.raises(AffectlensError, match="outside"):
        _policy(dict(STEER, action={"steer": {"calm": 1.5}})).check(["desperate", "calm"])
    with pytest.raises(AffectlensError, match="not found"):
        load_policy("nope.yaml")


def test_observe_is_cheap():
    import time

    policy = _policy(
        STEER,
        {"name": "f", "when": {"emotion": "afraid", "above": 3, "for": 4}, "action": "flag"},
        {"name": "s", "when": {"emotion": "hostile", "above": 4}, "action": "stop"},
    )
    run = policy.start()
    readouts = {"desperate": 1.0, "afraid": 2.0, "hostile": 0.5}
    started = time.perf_counter()
    for index in range(10000):
        run.observe(index, readouts)
    assert (time.perf_counter() - started) / 10000 < 1e-4  # well under a decode step


def _engine_request(prompt, policy=None, n=10):
    return GenerationRequest(
        prompt=prompt,
        sampling=SamplingParams(max_new_tokens=n),
        readouts=ReadoutSpec(layers=(1,), units="raw"),
        guardrail=policy,
    )


def test_the_engine_fires_at_the_crossing_and_steers_that_row_only():
    model = build_family_loaded("llama", 3)
    vectors = build_emotion_vectors(model)
    engine = Engine(model, vectors)
    prompts = ["The lights went out and", "Snow fell all night on the quiet village"]
    free = engine.run([_engine_request(p) for p in prompts])
    calm = [r["calm"] for r in free[0].token_readouts]
    crossing = 3  # put the threshold between the readouts, so it is crossed at token 3
    threshold = (max(calm[:crossing]) + calm[crossing]) / 2
    if calm[crossing] <= max(calm[:crossing]):
        threshold = max(calm[:crossing]) - 1e-6
        crossing = next(i for i, v in enumerate(calm) if v > threshold)
    rule = {
        "name": "calm-hot",
        "when": {"emotion": "calm", "above": threshold},
        "until": {"below": threshold - 1e6},  # stays on once on
        "action": {"steer": {"afraid": 1.0}},
    }
    guarded, neighbour = engine.run(
        [_engine_request(prompts[0], _policy(rule, units="raw")), _engine_request(prompts[1])]
    )
    [event] = guarded.guardrail_events
    assert event.token_index == crossing and event.action == "steer_on"
    assert event.values["calm"] == pytest.approx(calm[crossing])
    assert guarded.token_ids[: crossing + 1] == free[0].token_ids[: crossing + 1]
    # the steer starts with the pass that reads token crossing + 1, so what it samples next on
    assert guarded.token_ids[crossing + 2 :] != free[0].token_ids[crossing + 2 :]
    assert neighbour.token_ids == free[1].token_ids
    shadow = engine.run([_engine_request(prompts[0], _policy(rule, shadow=True, units="raw"))])[0]
    assert shadow.token_ids == free[0].token_ids
    assert [e.token_index for e in shadow.guardrail_events] == [crossing]


def test_a_stop_rule_ends_the_row_with_reason_guardrail():
    model = build_family_loaded("qwen2", 3)
    vectors = build_emotion_vectors(model)
    engine = Engine(model, vectors)
    free = engine.run([_engine_request("Hi there")])[0]
    angry = [r["angry"] for r in free.token_readouts]
    # the first token whose readout exceeds every earlier one: a threshold between them
    crossing = next(i for i in range(1, len(angry)) if angry[i] > max(angry[:i]))
    when = {"emotion": "angry", "above": (angry[crossing] + max(angry[:crossing])) / 2}
    policy = _policy({"name": "stop", "when": when, "action": "stop"}, units="raw")
    stopped = engine.run([_engine_request("Hi there", policy)])[0]
    assert stopped.finish_reason == "guardrail"
    assert stopped.token_ids == free.token_ids[: crossing + 1]
