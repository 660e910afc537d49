"""Whitening by a shrunk covariance: the map ``W = C^-1/2`` extraction runs its method through.

Within-emotion whitening (the default extraction method, see :mod:`affectlens.extract`) uses
the covariance of the story means about their own emotion's mean: the directions in which
stories of one emotion differ most (topic, length, form) are deflated before the emotion means
are compared. Shrinking that covariance towards its mean variance, ``(1 - a) C + a (tr C / d)
I``, keeps ``C^-1/2`` defined when there are fewer stories than hidden dimensions.

Extraction accumulates the scatter while batches stream
(:class:`affectlens.reducers.ScatterReducer`); the offline method search builds it from the
per-story means it holds (:func:`within_residuals`). Both end in :func:`shrink` and
:func:`inverse_sqrt` here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from affectlens.errors import AffectlensError

WHITENINGS = ("none", "within")
"""Whitenings extraction offers: ``none`` (the method before whitening) or ``within``."""


def shrink(cov: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """``(1 - a) C + a (tr C / d) I`` for a covariance ``cov`` [d, d] (float64)."""
    cov = cov.double()
    scale = torch.trace(cov) / cov.shape[0]
    return (1 - shrinkage) * cov + shrinkage * scale * torch.eye(cov.shape[0], dtype=cov.dtype)


def shrunk_covariance(rows: torch.Tensor, shrinkage: float) -> torch.Tensor:
    """:func:`shrink` of the covariance ``C`` of ``rows`` [n, d] (float64, divided by n - 1)."""
    x = rows.double() - rows.double().mean(dim=0)
    return shrink(x.T @ x / max(len(rows) - 1, 1), shrinkage)


def inverse_sqrt(cov: torch.Tensor) -> torch.Tensor:
    """The symmetric ``C^-1/2`` of a positive-definite ``cov``; refuses a singular one."""
    values, vectors = torch.linalg.eigh(cov.double())
    if values.min() <= values.max() * 1e-12:
        raise AffectlensError("covariance is singular: use a shrinkage above 0")
    return (vectors * values.rsqrt()) @ vectors.T


def within_residuals(rows: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each row minus its group's mean (the within-emotion scatter of story means)."""
    out = rows.double().clone()
    for group in groups.unique():
        members = groups == group
        out[members] -= out[members].mean(dim=0)
    return out


def check_whitening(whiten: str, shrinkage: float) -> None:
    """Refuse an unknown whitening or a shrinkage outside [0, 1], in one line."""
    if whiten not in WHITENINGS:
        raise AffectlensError(f"unknown whitening {whiten!r} (choose {' or '.join(WHITENINGS)})")
    if not 0 <= shrinkage <= 1:  # also refuses NaN
        raise AffectlensError(f"whitening shrinkage must be in [0, 1], got {shrinkage}")


@dataclass(frozen=True)
class Whitening:
    """One whitening as a single value: ``kind`` (``none`` or ``within``) and its shrinkage.

    What validation rebuilds an artifact's split halves by; checked when made.
    """

    kind: str = "none"
    shrinkage: float = 0.5

    def __post_init__(self) -> None:
        check_whitening(self.kind, self.shrinkage)

    def as_json(self) -> dict:
        """``{"whiten", "shrinkage"}`` for a report (no shrinkage for ``none``, which has none)."""
        return {"whiten": self.kind, "shrinkage": None if self.kind == "none" else self.shrinkage}


NO_WHITENING = Whitening()
