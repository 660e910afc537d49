"""What the model itself makes of a message: how much likelier it is to call it dangerous.

The dose experiment asks whether an emotion readout tracks danger. That only means something
if the model can tell that a dose is dangerous. This scores two fixed replies as the opening of
the assistant's turn, "That is a dangerous amount." against "That is a safe amount.", and
reports the log-odds between them: one forward pass per reply, no sampling, so the figure is the
model's and not a draw from it. A one-token Yes/No answer is no use on small chat models: the
0.5B model says "Yes" about 60% of the time whatever it is asked, 2 + 2 = 5 included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from affectlens.errors import AffectlensError
from affectlens.models.chat import Message, encode, format_chat
from affectlens.models.loading import LoadedModel

DEFAULT_REPLIES = ("That is a dangerous amount.", "That is a safe amount.")


def _prompt_and_reply(model: LoadedModel, chat: Sequence[Message], reply: str) -> tuple[list, int]:
    """Token ids of the prompt followed by ``reply``, and how many of them are the prompt's."""
    prompt = format_chat(model.tokenizer, chat, add_generation_prompt=True)
    joiner = "" if prompt[-1:].isspace() else " "
    prompt_ids = encode(model.tokenizer, prompt)
    ids = encode(model.tokenizer, prompt + joiner + reply)
    if ids[: len(prompt_ids)] != prompt_ids or len(ids) == len(prompt_ids):
        raise AffectlensError(f"the reply {reply!r} does not tokenise apart from the prompt")
    return ids, len(prompt_ids)


@torch.no_grad()
def reply_log_prob(model: LoadedModel, chat: Sequence[Message], reply: str) -> float:
    """log P(``reply``) as the opening of the assistant's turn after ``chat``, in nats."""
    ids, start = _prompt_and_reply(model, chat, reply)
    tokens = torch.tensor([ids], device=model.device)
    logits = model.model(input_ids=tokens).logits[0, start - 1 : -1].float()
    targets = tokens[0, start:]
    return float(torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).sum())


def check_replies(replies: Sequence[str]) -> None:
    """Refuse, in one line, anything but two different non-empty replies."""
    if len(replies) != 2 or replies[0] == replies[1] or not all(r.strip() for r in replies):
        raise AffectlensError("the judgement needs two different, non-empty replies")


def reply_log_odds(
    model: LoadedModel, chats: Sequence[Sequence[Message]], replies: Sequence[str]
) -> list[float]:
    """log P(replies[0]) - log P(replies[1]) after each chat."""
    check_replies(replies)
    return [
        reply_log_prob(model, c, replies[0]) - reply_log_prob(model, c, replies[1]) for c in chats
    ]
