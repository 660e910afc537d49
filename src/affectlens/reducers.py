"""Streaming reducers: running sums and counts, so memory stays flat in corpus size.

Each reducer can hand out and take back its state, which is what extraction checkpoints.
"""

from __future__ import annotations

import torch


class GroupMeanReducer:
    """Mean, per group, of per-item vectors [layer, hidden] (e.g. story means per emotion)."""

    def __init__(self, groups: list[str], num_layers: int, hidden: int) -> None:
        self.groups = groups
        self.sums = torch.zeros(len(groups), num_layers, hidden, dtype=torch.float64)
        self.counts = torch.zeros(len(groups), dtype=torch.long)

    def add(self, group_ids: torch.Tensor, items: torch.Tensor) -> None:
        """Add items [n, layer, hidden] belonging to groups ``group_ids`` [n]."""
        self.sums.index_add_(0, group_ids, items.double())
        self.counts.index_add_(0, group_ids, torch.ones_like(group_ids))

    def means(self) -> torch.Tensor:
        """[group, layer, hidden] means; groups with no items are NaN."""
        return (
            (self.sums / self.counts[:, None, None].clamp(min=1))
            .float()
            .where(self.counts[:, None, None] > 0, torch.tensor(float("nan")))
        )

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running state, for checkpoints."""
        return {"sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a checkpointed state."""
        self.sums, self.counts = state["sums"].clone(), state["counts"].clone()


class ScalarMeanReducer:
    """Mean of a per-layer scalar over many tokens (e.g. the residual norm)."""

    def __init__(self, num_layers: int) -> None:
        self.sums = torch.zeros(num_layers, dtype=torch.float64)
        self.counts = torch.zeros(num_layers, dtype=torch.float64)

    def add(self, sums: torch.Tensor, counts: torch.Tensor) -> None:
        """Add per-layer sums and counts."""
        self.sums += sums.double()
        self.counts += counts.double()

    def means(self) -> torch.Tensor:
        """Per-layer means."""
        return (self.sums / self.counts.clamp(min=1)).float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running state, for checkpoints."""
        return {"sums": self.sums, "counts": self.counts}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a checkpointed state."""
        self.sums, self.counts = state["sums"].clone(), state["counts"].clone()
