"""What a response says about its emotions: per-token readouts and the per-emotion summary."""

from __future__ import annotations

from collections.abc import Sequence


def summarise(token_readouts: Sequence[dict[str, float]]) -> dict[str, dict]:
    """Per emotion: mean and max over the reply's tokens, and the token index of the max."""
    summary: dict[str, dict] = {}
    if not token_readouts:
        return summary
    for emotion in token_readouts[0]:
        values = [readout[emotion] for readout in token_readouts]
        peak = max(range(len(values)), key=values.__getitem__)
        summary[emotion] = {
            "mean": sum(values) / len(values),
            "max": values[peak],
            "argmax_token": peak,
        }
    return summary
