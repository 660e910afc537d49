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


class ScatterReducer:
    """Per-layer scatter of per-item vectors [layer, hidden], and from it the within-group one.

    Holds ``Σ (m - s)(m - s)ᵀ`` per layer in float64, about a shift ``s`` fixed from the first
    batch (the items' mean there): the residual stream's large mean would otherwise dominate
    the sums and cost precision when the group means' part is subtracted. Memory is
    ``layers x hidden²`` float64 (24 x 896² is 154 MB), flat in the number of items.
    """

    def __init__(self, num_layers: int, hidden: int) -> None:
        self.shift = torch.zeros(num_layers, hidden, dtype=torch.float64)
        self.outer = torch.zeros(num_layers, hidden, hidden, dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.long)

    def add(self, items: torch.Tensor) -> None:
        """Add items [n, layer, hidden]."""
        items = items.double()
        if int(self.count) == 0:
            self.shift = items.mean(dim=0)
        centred = (items - self.shift).transpose(0, 1)  # [layer, n, hidden]
        self.outer.baddbmm_(centred.transpose(1, 2), centred)
        self.count += len(items)

    def within(self, column: int, groups: GroupMeanReducer) -> torch.Tensor:
        """``Σ_i (m_i - μ_g(i))(m_i - μ_g(i))ᵀ`` [hidden, hidden] at one layer column.

        ``groups`` must have seen the same items (it supplies each group's mean ``μ_g``):
        the scatter about the shift minus ``Σ_g n_g (μ_g - s)(μ_g - s)ᵀ``.
        """
        if int(groups.counts.sum()) != int(self.count):
            raise ValueError("the group reducer saw other items than the scatter reducer")
        present = groups.counts > 0
        counts = groups.counts[present].double()
        offsets = groups.sums[present, column] / counts[:, None] - self.shift[column]
        return self.outer[column] - (offsets.T * counts) @ offsets

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running state, for checkpoints."""
        return {"shift": self.shift, "outer": self.outer, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore a checkpointed state."""
        self.shift, self.outer = state["shift"].clone(), state["outer"].clone()
        self.count = state["count"].clone()
