"""Choosing a row's next token: greedy, or temperature / top-k / top-p with its own generator.

Each request samples from its own ``torch.Generator`` seeded from the request's seed, so its
text depends only on that seed and its own logits, not on what else shares the batch.
"""

from __future__ import annotations

import torch

from affectlens.engine.requests import SamplingParams

# Below this temperature, logits / temperature can overflow to inf (softmax gives NaN), and
# sampling there picks the argmax but on exact ties: such requests decode greedily.
GREEDY_BELOW = 1e-5


def make_generator(params: SamplingParams) -> torch.Generator | None:
    """The request's generator (``None`` for greedy); an unseeded request gets a random seed."""
    if params.temperature == 0:
        return None
    generator = torch.Generator(device="cpu")
    if params.seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(params.seed))
    return generator


def next_token(
    logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None
) -> int:
    """The next token id from one row's logits [vocab]."""
    if params.temperature < GREEDY_BELOW or generator is None:
        return int(torch.argmax(logits))
    scores = logits.float().cpu() / params.temperature
    if params.top_k > 0:
        kth = torch.topk(scores, min(params.top_k, scores.shape[-1])).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= params.top_p
        drop[0] = False  # the most likely token always stays, however small top_p is
        scores = scores.index_fill(0, order[drop], float("-inf"))
    probabilities = torch.softmax(scores, dim=-1)
    return int(torch.multinomial(probabilities, 1, generator=generator))
