"""The engine against plain transformers, and against itself, measured side by side.

    python benchmarks/bench_engine.py [--new-tokens 64] [--reps 3]
    python benchmarks/bench_engine.py --smoke                 # seconds-long check, tiny model

Every reply is forced to the same length (``min_new_tokens`` = ``max_new_tokens``), greedy,
so variants do identical token work. Pairs run interleaved (AB, BA, ...) after a warm-up; a
ratio is the median of the per-repetition ratios. Vectors are random with the real shape
(171 emotions x all layers, measured residual norms, identity calibration): the cost of
steering, reading and guarding does not depend on what the vectors contain.

Measures (goals from the engine issue):
1. one greedy stream, engine vs ``model.generate`` with the same prompt and length (>= 0.97x);
2. the engine reading all 171 emotions at one layer vs the engine reading none (>= 0.97x);
3. 8 concurrent requests with 8 different steering settings vs 8 unsteered (>= 0.95x);
4. aggregate tokens/s of 8 concurrent requests vs 1 (>= 4x on the 2-core CPU);
5. time to first token of a request arriving while 7 others decode, against its own prefill
   time plus 2 decode steps of the running batch (ratio <= 1 passes);
6. a 3-rule guardrail policy on every row vs none, 8 rows reading emotions (>= 0.98x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import (
    CHAT_PROMPTS,
    interleaved,
    load_bench_model,
    paired_ratio,
    print_table,
    random_vectors,
)

from affectlens.engine import (
    Engine,
    GenerationRequest,
    ReadoutSpec,
    SamplingParams,
    SteeringSpec,
    TokenEvent,
)
from affectlens.engine.validation import prompt_ids
from affectlens.guardrails import GuardrailPolicy

PROMPTS = CHAT_PROMPTS
EMOTIONS = ["calm", "desperate", "afraid", "happy", "angry", "sad", "proud", "hostile"]
POLICY = {
    "name": "bench",
    "rules": [
        {
            "name": "desperate-hot",
            "when": {"emotion": "desperate", "stat": "ema", "window": 8, "above": 50.0},
            "until": {"below": 40.0},
            "action": {"steer": {"calm": 0.1}},
        },
        {
            "name": "afraid-flag",
            "when": {"emotion": "afraid", "stat": "value", "above": 50.0, "for": 4},
            "action": "flag",
        },
        {"name": "hostile-stop", "when": {"emotion": "hostile", "above": 50.0}, "action": "stop"},
    ],
}


def _request(model, index: int, new_tokens: int, **extra) -> GenerationRequest:
    prompt = [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}]
    sampling = SamplingParams(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    return GenerationRequest(messages=prompt, sampling=sampling, **extra)


def _hf_generate(model, request: GenerationRequest, new_tokens: int) -> None:
    ids = torch.tensor([prompt_ids(model.tokenizer, request)])
    with torch.inference_mode():
        model.model.generate(
            input_ids=ids.to(model.device),
            attention_mask=torch.ones_like(ids).to(model.device),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.tokenizer.pad_token_id,
        )


def _tokens_per_s(times: list[float], tokens: int) -> float:
    return tokens / statistics.median(times)


def _ttft(engine: Engine, model, new_tokens: int) -> tuple[float, float, float]:
    """(time to first token of a late joiner, its prefill alone, one decode step at batch 7)."""
    with engine:
        handles = [engine.submit(_request(model, i, new_tokens * 4)) for i in range(7)]
        for handle in handles:  # wait until all 7 are decoding
            next(event for event in handle if isinstance(event, TokenEvent))
        steps, started = engine.stats().steps, time.perf_counter()
        while engine.stats().steps < steps + 4:
            time.sleep(0.001)
        step_time = (time.perf_counter() - started) / (engine.stats().steps - steps)
        late = _request(model, 7, new_tokens)
        submitted = time.perf_counter()
        handle = engine.submit(late)
        next(event for event in handle if isinstance(event, TokenEvent))
        ttft = time.perf_counter() - submitted
        for other in handles:
            other.cancel()
    ids = torch.tensor([prompt_ids(model.tokenizer, late)])
    with torch.inference_mode():
        model.model(input_ids=ids, use_cache=True)
        started = time.perf_counter()
        model.model(input_ids=ids, use_cache=True)
        prefill = time.perf_counter() - started
    return ttft, prefill, step_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per reply")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per pair")
    parser.add_argument("--smoke", action="store_true", help="tiny random model, few tokens")
    args = parser.parse_args()
    tiny = args.smoke
    new_tokens = 8 if tiny else args.new_tokens
    reps = 2 if tiny else args.reps
    torch.manual_seed(0)
    model = load_bench_model(tiny)
    vectors = random_vectors(model)
    layer = vectors.default_layer
    engine = Engine(model, vectors)
    policy = GuardrailPolicy.from_dict(POLICY)
    print(f"model: {model.name}  new tokens per reply: {new_tokens}  reps: {reps}")
    print(f"torch threads: {torch.get_num_threads()}; random vectors; layer {layer}")
    rows = []

    def row(measure, base, ours, ratio, goal, passed):
        rows.append(
            {
                "measure": measure,
                "baseline": base,
                "affectlens": ours,
                "ratio": f"{ratio:.3f}x",
                "goal": goal,
                "result": "pass" if passed else "FAIL",
            }
        )

    def compare(measure: str, runs: dict, tokens: int, goal: float) -> None:
        """Time the two ``runs`` (baseline first) interleaved; a row of their tokens/s."""
        times = interleaved(runs, reps)
        base, ours = runs
        ratio = paired_ratio(times[base], times[ours])
        row(
            measure,
            f"{_tokens_per_s(times[base], tokens):.1f}",
            f"{_tokens_per_s(times[ours], tokens):.1f}",
            ratio,
            f">= {goal:.2f}x",
            ratio >= goal,
        )

    one = _request(model, 0, new_tokens)
    compare(
        "1 stream: engine vs HF generate, tokens/s (",
        {"hf": lambda: _hf_generate(model, one, new_tokens), "engine": lambda: engine.run([one])},
        new_tokens,
        0.97,
    )

    reading = _request(model, 0, new_tokens, readouts=ReadoutSpec(layers=(layer,)))
    compare(
        "1 stream: 171 readouts vs none, tokens/s (",
        {"plain": lambda: engine.run([one]), "read": lambda: engine.run([reading])},
        new_tokens,
        0.97,
    )

    unsteered = [_request(model, i, new_tokens) for i in range(8)]
    steered = [
        _request(
            model,
            i,
            new_tokens,
            steering=SteeringSpec({EMOTIONS[i]: 0.05 + 0.01 * i}, (layer,)),
        )
        for i in range(8)
    ]
    compare(
        "8 requests: 8 steering settings vs unsteered, tokens/s (",
        {"plain": lambda: engine.run(unsteered), "steered": lambda: engine.run(steered)},
        8 * new_tokens,
        0.95,
    )

    times = interleaved(
        {"one": lambda: engine.run([one]), "eight": lambda: engine.run(unsteered)}, reps
    )
    ratio = statistics.median(
        (8 * new_tokens / e) / (new_tokens / o)
        for o, e in zip(times["one"], times["eight"], strict=True)
    )
    row(
        "8 concurrent vs 1, aggregate tokens/s (",
        f"{_tokens_per_s(times['one'], new_tokens):.1f}",
        f"{_tokens_per_s(times['eight'], 8 * new_tokens):.1f}",
        ratio,
        ">= 4x",
        ratio >= 4,
    )

    ttft, prefill, step = _ttft(engine, model, new_tokens)
    bound = prefill + 2 * step
    row(
        "late joiner's time to first token vs prefill + 2 steps, ms (",
        f"{1000 * bound:.0f}",
        f"{1000 * ttft:.0f}",
        ttft / bound,
        "<= 1.00x",
        ttft <= bound,
    )

    read = ReadoutSpec(emotions=tuple(EMOTIONS), layers=(layer,))
    free = [_request(model, i, new_tokens, readouts=read) for i in range(8)]
    guarded = [_request(model, i, new_tokens, readouts=read, guardrail=policy) for i in range(8)]
    compare(
        "8 requests: 3-rule guardrail vs none, tokens/s (",
        {"free": lambda: engine.run(free), "guarded": lambda: engine.run(guarded)},
        8 * new_tokens,
        0.98,
    )
    print_table(rows)


if __name__ == "__main__":
    main()
