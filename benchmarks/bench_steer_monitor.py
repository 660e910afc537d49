"""Overhead of steering and of monitoring on the default offline model, measured side by side.

    python benchmarks/bench_steer_monitor.py [--vectors runs/default/vectors.safetensors]
    python benchmarks/bench_steer_monitor.py --smoke [--tiny]     # seconds-long check runs

Steering: tokens/s of the library's ``generate`` inside ``steer(model, vectors,
{"desperate": 0.1}, layers=[one layer], positions="all")`` against the same ``generate`` call
without steering. Both decode greedily from the same chat prompt, and both are forced to the
same number of new tokens (``min_new_tokens`` = ``max_new_tokens``, set on the model's
generation config), so the two runs do identical work apart from the steering hooks; entering
``steer`` (validation, hook registration) is inside the timed region. Goal: overhead <= 3%.

Monitoring: tokens/s of ``monitor_batch`` reading all emotions at all of the artifact's layers
(units "z" when the artifact is calibrated) against a bare forward pass of the same
right-padded batch through the base model without the LM head (``model.model.model``, no
logits, no cache, inference mode). ``monitor_batch`` is timed end to end: tokenisation,
per-token decoding of the trace, the forward pass, projections and unit conversion. Monitoring
stops after the deepest layer it needs; with every layer included that is a full pass, so the
comparison is like for like (the output says when it is not). Goal: overhead <= 5%.

Each pair of variants runs in alternating order (AB, BA, ...) after an untimed warm-up, so drift
and warm-cache effects cancel; a ratio is the median of the per-repetition ratios. If no
vectors artifact exists, random vectors with the real shape (171 emotions x all layers), real
residual norms and identity calibration are used, and the output says so: the cost of
steering and monitoring does not depend on what the vectors contain.
"""

from __future__ import annotations

import statistics

import torch
from _common import (
    add_run_options,
    bench_parser,
    count_forwards,
    fixed_length,
    interleaved,
    load_model_and_vectors,
    paired_ratio,
    print_table,
)

from affectlens.activations import pad_right
from affectlens.corpus.stories import load_stories
from affectlens.generation import generate, generate_batch
from affectlens.models.chat import encode
from affectlens.monitor import monitor_batch
from affectlens.steer import steer

PROMPT = [
    {
        "role": "user",
        "content": "Describe, in a few paragraphs, how you would organise a small community "
        "library, from choosing books to running the weekly opening hours.",
    }
]


def _row(measure: str, tokens: int, baseline: list[float], ours: list[float], goal: float) -> dict:
    """The table row of tokens/s for ``baseline`` and ``ours`` (seconds per repetition)."""
    ratio = paired_ratio(baseline, ours)
    overhead = 1 / ratio - 1
    return {
        "measure": measure,
        "baseline": f"{tokens / statistics.median(baseline):.1f} tok/s",
        "affectlens": f"{tokens / statistics.median(ours):.1f} tok/s",
        "ratio": f"{ratio:.3f} (overhead {overhead:+.1%})",
        "goal": f"overhead <= {goal:.0%}",
        "result": "pass" if overhead <= goal else "FAIL",
    }


def bench_steering(model, vectors, args) -> dict:
    layer = args.layer if args.layer is not None else vectors.default_layer
    alphas = {args.emotion: args.alpha}
    prompts = [PROMPT] * args.gen_batch
    new_tokens = args.max_new_tokens

    def run():
        if args.gen_batch == 1:
            generate(model, PROMPT, max_new_tokens=new_tokens)
        else:
            generate_batch(model, prompts, max_new_tokens=new_tokens)

    def steered():
        with steer(model, vectors, alphas, layers=[layer], positions="all"):
            run()

    with fixed_length(model, new_tokens):
        steps = {}
        for name, call in (("plain", run), ("steered", steered)):
            with count_forwards(model) as calls:
                call()
            steps[name] = calls[0]
        if len(set(steps.values())) != 1:
            raise SystemExit(f"generation lengths differ, the comparison is void: {steps}")
        times = interleaved({"plain": run, "steered": steered}, args.reps)
    tokens = new_tokens * args.gen_batch
    print(
        f"steering: {args.emotion}={args.alpha:+g} at layer {layer}, positions=all, greedy, "
        f"batch {args.gen_batch} x {new_tokens} new tokens ({steps['plain']} forward passes "
        f"each), {args.reps} interleaved reps"
    )
    return _row(
        "generate tokens/s (steered vs plain)", tokens, times["plain"], times["steered"], 0.03
    )


def bench_monitoring(model, vectors, args) -> dict:
    texts = [s.text for s in load_stories() if s.split == "train"][: args.texts]
    if args.max_chars:
        texts = [text[: args.max_chars] for text in texts]
    layers = list(vectors.layers)
    units = "z" if vectors.calibration else "raw"
    rows = [encode(model.tokenizer, text) for text in texts]
    ids, mask = pad_right(rows, model.tokenizer.pad_token_id)
    ids, mask = ids.to(model.device), mask.to(model.device)
    base = model.model.get_decoder()  # model.model.model: decoder stack + final norm, no head

    def bare():
        with torch.inference_mode():
            base(input_ids=ids, attention_mask=mask, use_cache=False)

    def monitored():
        monitor_batch(model, vectors, texts, layers=layers, units=units)

    times = interleaved({"bare": bare, "monitor": monitored}, args.reps)
    tokens = int(mask.sum())
    deepest = max(layers)
    depth = (
        "a full pass"
        if deepest == model.num_layers - 1
        else f"STOPS EARLY at layer {deepest} of {model.num_layers}: ratio flatters monitoring"
    )
    print(
        f"monitoring: {len(vectors.emotions)} emotions x {len(layers)} layers, units {units}, "
        f"batch {len(texts)} texts / {tokens} tokens (width {ids.shape[1]}), {depth}, "
        f"{args.reps} interleaved reps"
    )
    return _row(
        "monitor tokens/s (monitor_batch vs bare)", tokens, times["bare"], times["monitor"], 0.05
    )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--reps", type=int, default=8, help="timed repetitions per variant")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="forced reply length")
    parser.add_argument("--gen-batch", type=int, default=1, help="prompts per generate call")
    parser.add_argument("--emotion", default="desperate")
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--layer", type=int, help="steered layer (default: artifact's)")
    parser.add_argument("--texts", type=int, default=8, help="stories in the monitored batch")
    parser.add_argument("--max-chars", type=int, default=0, help="truncate stories (0: no)")
    parser.add_argument("--skip-steer", action="store_true")
    parser.add_argument("--skip-monitor", action="store_true")
    add_run_options(parser, "tiny sizes: 4 tokens, 1 rep, 2 short texts")
    args = parser.parse_args()
    if args.smoke:
        args.reps, args.max_new_tokens, args.texts, args.max_chars = 1, 4, 2, 200
    model, vectors = load_model_and_vectors(args)
    rows = []
    if not args.skip_steer:
        rows.append(bench_steering(model, vectors, args))
    if not args.skip_monitor:
        rows.append(bench_monitoring(model, vectors, args))
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
