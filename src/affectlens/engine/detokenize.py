"""Turning a growing list of token ids into text deltas, and cutting replies at stop strings.

Tokens do not map one-to-one to characters (a multi-byte character can span tokens), so each
delta is the difference between the decoded text now and before, held back while the text ends
in an incomplete character.
"""

from __future__ import annotations

from collections.abc import Sequence

_INCOMPLETE = "\ufffd"


class IncrementalText:
    """The reply's text so far, fed one token at a time."""

    def __init__(self, tokenizer, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = ""
        self._stop = tuple(s for s in stop if s)
        self.stopped = False

    @property
    def text(self) -> str:
        """The text emitted so far (never past a stop string)."""
        return self._emitted

    def add(self, token_id: int) -> str:
        """Add a token; return the new text it completes ('' while a character is unfinished).

        When the text now contains a stop string, the text is cut before it, ``stopped`` is set
        and the delta ends there.
        """
        self._ids.append(int(token_id))
        full = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if full.endswith(_INCOMPLETE):
            return ""
        cut = self._stop_cut(full)
        if cut is not None:
            full = full[:cut]
            self.stopped = True
        if not full.startswith(self._emitted):
            # the tokenizer re-spelled earlier text (rare with byte-level BPE): emit no delta
            # rather than repeat characters already sent
            self._emitted = full
            return ""
        delta = full[len(self._emitted) :]
        self._emitted = full
        return delta

    def _stop_cut(self, full: str) -> int | None:
        hits = [full.find(stop) for stop in self._stop]
        hits = [hit for hit in hits if hit >= 0]
        return min(hits) if hits else None
