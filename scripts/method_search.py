"""Issue 16, part 2: which extraction method transfers out of the story genre.

    flock /tmp/affectlens-heavy.lock python scripts/method_search.py capture [--out DIR]
    python scripts/method_search.py search [--out DIR]        # offline, dev split only
    python scripts/method_search.py confirm [--out DIR]       # winner and shipped, test split

``capture`` reads, in one forward pass per batch of the default model at layers 6, 10, 14
and 18, the train and test stories of the 24 transfer emotions, every third neutral passage
and both transfer splits, keeping every pooling of
:data:`affectlens.experiments.method_search.POOLINGS` (cached; a rerun resumes). The test
split is read in the same pass but only ``confirm`` scores it, once, for two methods.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from affectlens.corpus.stories import load_neutral, load_stories
from affectlens.experiments.method_search import capture_poolings
from affectlens.extract import ExtractionSettings, neutral_texts
from affectlens.progress import use_progress
from affectlens.validation.transfer import TRANSFER_EMOTIONS, load_transfer, select_split

LAYERS = [6, 10, 14, 18]
NEUTRAL_EVERY = 3


def groups() -> dict[str, list]:
    """The texts of each capture group, in a fixed order (labels are saved beside them)."""
    stories = [s for s in load_stories() if s.emotion in TRANSFER_EMOTIONS]
    transfer = load_transfer()
    return {
        "train": [s for s in stories if s.split == "train"],
        "neutral": load_neutral()[::NEUTRAL_EVERY],
        "dev": select_split(transfer, "dev"),
        "stories_test": [s for s in stories if s.split == "test"],
        "transfer_test": select_split(transfer, "test"),
    }


def capture(out: Path) -> None:
    from affectlens.cli.progress_bars import render_progress
    from affectlens.models import load_model
    from affectlens.models.packs import DEFAULT_PACK

    model = load_model(DEFAULT_PACK)
    settings = ExtractionSettings()
    labels = {}
    with use_progress(render_progress):
        for name, items in groups().items():
            texts = neutral_texts(model, items) if name == "neutral" else [t.text for t in items]
            capture_poolings(model, texts, LAYERS, out / name, settings=settings, description=name)
            labels[name] = [
                {"emotion": getattr(t, "emotion", None), "form": getattr(t, "form", "story")}
                for t in items
            ]
            print(f"captured {name}: {len(texts)} texts", file=sys.stderr, flush=True)
    (out / "labels.json").write_text(json.dumps({"layers": LAYERS, "groups": labels}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["capture", "search", "confirm"])
    parser.add_argument("--out", type=Path, default=Path("runs/method_search"))
    args = parser.parse_args()
    if args.step == "capture":
        capture(args.out)


if __name__ == "__main__":
    main()
