"""Extraction benchmarks on the default offline model, each ratio measured side by side.

    python benchmarks/bench_extraction.py [--stories 64] [--skip-conversion]

Prints: extraction tokens/s against a bare forward pass without logits and against a
repeng-style collection (``output_hidden_states=True`` with full logits, texts batched in
corpus order as repeng does, so padding counts against it); peak RSS of
extraction at corpus sizes N and 4N (each in a fresh process); cached reload time against
GGUF conversion time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from affectlens.capture import capture_residuals
from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.extract import (
    ExtractionSettings,
    TextBatch,
    batch_means,
    extract_vectors,
    make_batches,
)
from affectlens.models import load_model
from affectlens.models.packs import DEFAULT_PACK


def interleaved_rates(runners: dict) -> dict[str, float]:
    """Real tokens/s of each (run, batches) pair, taking turns batch by batch.

    Every runner gets the same texts, possibly batched differently; turns alternate so drift
    and background load hit all alike.
    """
    for run, batches in runners.values():
        run(batches[0])  # warm-up
    spent = dict.fromkeys(runners, 0.0)
    for index in range(max(len(batches) for _, batches in runners.values())):
        for name, (run, batches) in runners.items():
            if index < len(batches):
                started = time.perf_counter()
                run(batches[index])
                spent[name] += time.perf_counter() - started
    return {
        name: sum(b.num_tokens for b in batches) / spent[name]
        for name, (_, batches) in runners.items()
    }


def corpus_order_batches(model, texts: list[str], batch_size: int) -> list[TextBatch]:
    """Pad texts into batches in the order given, as repeng-style collectors do (no bucketing)."""
    batches = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        bucketed = make_batches(model, chunk, ExtractionSettings(batch_size=len(chunk)))
        batches.extend(bucketed)
    return batches


def throughput(args) -> None:
    model = load_model(DEFAULT_PACK)
    stories = [s.text for s in load_stories() if s.split == "train"][: args.stories]
    settings = ExtractionSettings(batch_size=8)
    layers = list(range(model.num_layers))
    batches = make_batches(model, stories, settings)
    decoder = model.model.get_decoder()

    def bare(batch):
        with torch.inference_mode():
            decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)

    def ours(batch):
        with capture_residuals(model, layers) as captured:
            batch_means(model, captured, batch, layers, settings)

    def repeng_style(batch):
        with torch.inference_mode():
            out = model.model(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                output_hidden_states=True,
                use_cache=False,
            )
            torch.stack(out.hidden_states[1:]).mean(dim=2)

    in_order = corpus_order_batches(model, stories, settings.batch_size)
    rates = interleaved_rates(
        {
            "bare": (bare, batches),
            "ours": (ours, batches),
            "repeng": (repeng_style, in_order),
            "repeng_bucketed": (repeng_style, batches),
        }
    )
    print(
        f"real tokens/s (all {len(layers)} layers, {len(stories)} stories, batch "
        f"{settings.batch_size}, interleaved): affectlens {rates['ours']:.0f}, bare forward "
        f"{rates['bare']:.0f}, repeng-style {rates['repeng']:.0f} "
        f"(given our length buckets: {rates['repeng_bucketed']:.0f})"
    )
    print(f"  extraction / bare forward      = {rates['ours'] / rates['bare']:.2f}x (goal >= 0.95)")
    print(
        f"  extraction / repeng-style      = {rates['ours'] / rates['repeng']:.2f}x (goal >= 1.5)"
    )
    print(
        f"    of which logits + all-layer outputs alone "
        f"= {rates['ours'] / rates['repeng_bucketed']:.2f}x, length bucketing the rest"
    )


def peak_rss_child(per_emotion: int) -> None:
    """Run in a subprocess: extract at two layers with ``per_emotion`` stories; print peak RSS."""
    model = load_model(DEFAULT_PACK)
    stories = load_stories()
    emotions = sorted({s.emotion for s in stories})[:8]
    stories = [s for s in stories if s.emotion in emotions]
    settings = ExtractionSettings(layers=(4, 8), max_stories_per_emotion=per_emotion)
    extract_vectors(model, stories, load_neutral()[:20], settings, show_progress=False)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def memory() -> None:
    peaks = {}
    for n in (3, 12):
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks[n] = float(out.stdout.strip().splitlines()[-1])
    print(
        f"peak RSS: N=3 stories/emotion {peaks[3]:.0f} MiB, 4N=12 {peaks[12]:.0f} MiB, "
        f"ratio {peaks[12] / peaks[3]:.2f} (goal: flat, ~1.0)"
    )


def reload_vs_conversion() -> None:
    started = time.perf_counter()
    load_model(DEFAULT_PACK)
    reload = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, AFFECTLENS_CACHE=cache)
        started = time.perf_counter()
        code = f"from affectlens.models import load_model; load_model({DEFAULT_PACK!r})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
        convert = time.perf_counter() - started
    print(
        f"load: cached reload {reload:.1f} s, first load with GGUF conversion {convert:.1f} s, "
        f"ratio {convert / reload:.0f}x (goal: reload <= 5 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stories", type=int, default=64)
    parser.add_argument("--skip-conversion", action="store_true")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        peak_rss_child(args.rss_child)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    throughput(args)
    memory()
    if not args.skip_conversion:
        reload_vs_conversion()


if __name__ == "__main__":
    main()
