"""Which layer ``affectlens validate`` recommends: chosen for transfer, not only in-domain.

The layer that classifies held-out stories best is not the one that recognises emotions in
other kinds of text best (issue 16: on the default model the in-domain best was layer 10, the
out-of-genre best 14-18). Monitoring and steering default to the recommended layer and read
chats, not stories, so the recommendation follows the transfer **development** half: among the
layers whose in-domain top-1 is within :data:`IN_DOMAIN_TOLERANCE` of the best layer's, the one
with the highest pooled 6-way basic-emotion top-1 (ties: higher in-domain top-1, then the
shallower layer). Without a scored dev half (``--no-transfer``, a set without the basic six, or
``--transfer-split test``, which must not be tuned on) this run cannot apply that rule: it
keeps the layer the vectors file already records (so scoring the test half reads, and leaves
recorded, the layer the dev half chose), and only for a file that records none falls back to
the in-domain best.
"""

from __future__ import annotations

from affectlens.validation.classification import ClassificationResult

IN_DOMAIN_TOLERANCE = 0.05
BY_IN_DOMAIN = "best held-out top-1"
BY_TRANSFER = (
    f"best 6-way transfer top-1 (dev half) among layers within {IN_DOMAIN_TOLERANCE:g} "
    "of the best held-out top-1"
)
BY_RECORD = "recorded in the vectors file (this run scored no dev half)"


def recommend_layer(
    classification: ClassificationResult, transfer: dict, recorded: int | None = None
) -> tuple[int, str]:
    """The recommended layer and the rule that chose it (one of :data:`BY_TRANSFER`,
    :data:`BY_RECORD`, :data:`BY_IN_DOMAIN`).

    ``transfer`` is the validation report's transfer section; ``recorded`` the layer the
    vectors file records from an earlier validation (``None`` if none), kept when this run has
    no dev half to choose by.
    """
    pooled = (transfer.get("basic6") or {}).get("pooled")
    if transfer.get("split") != "dev" or not pooled:
        if recorded in {entry.layer for entry in classification.layers}:
            return int(recorded), BY_RECORD
        return classification.recommended_layer, BY_IN_DOMAIN
    in_domain = {entry.layer: entry.top1.value for entry in classification.layers}
    out_of_genre = {entry["layer"]: entry["top1"]["value"] for entry in pooled["per_layer"]}
    floor = max(in_domain.values()) - IN_DOMAIN_TOLERANCE
    eligible = [layer for layer, value in in_domain.items() if value >= floor - 1e-12]
    best = max(eligible, key=lambda layer: (out_of_genre[layer], in_domain[layer], -layer))
    return best, BY_TRANSFER
