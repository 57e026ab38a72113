"""A party that misbehaves on purpose, for lesson 6's fault-injection tests and its demonstration.

A SuperNode started with ``--node-config "... faults='nan@0 shape@1'"`` runs the honest party's
steps and then spoils its reply to the listed messages (``KIND@MESSAGE``):

- ``nan@j``: one of its logits is NaN (a diverged model);
- ``shape@j``: its logits lack their last row (scores for the wrong indices);
- ``spoof@j``: the reply claims another party's id (party 0's, or party 1's if it is party 0);
- ``hang@j``: the party never replies (it sleeps until it is stopped);
- ``pause@j``: the party stops for :data:`PAUSE_SECONDS` once it has received the message, then
  works and replies as usual (a slow machine; the tests kill a party during this pause, so that
  it is killed mid-round however fast the machine is).

Nothing in the server knows about these: it must notice them from the replies alone.
"""

import time

import torch

from fedkd_lessons.engine.validation import Instance, checked_arguments

FAULT_KINDS = ("nan", "shape", "spoof", "hang", "pause")
PAUSE_SECONDS = 3.0


@checked_arguments(text=Instance(str))
def parse_faults(text: str) -> dict[int, str]:
    """``{message: kind}`` from ``"kind@message kind@message ..."`` (empty: an honest party)."""
    faults = {}
    for item in text.split():
        kind, _, message = item.partition("@")
        if kind not in FAULT_KINDS or not message.isdigit():
            raise ValueError(f"faults must be 'KIND@MESSAGE' items with KIND in {FAULT_KINDS}, got {item!r}")
        faults[int(message)] = kind
    return faults


def spoil_reply(kind: str | None, party_id: int, logits: torch.Tensor | None) -> tuple[int, torch.Tensor | None]:
    """The ``(party_id, logits)`` a party with fault ``kind`` (``None``: honest) sends instead of its own."""
    if kind == "nan" and logits is not None:
        logits = logits.clone()
        logits[0, 0] = float("nan")
    elif kind == "shape" and logits is not None:
        logits = logits[:-1]
    elif kind == "spoof":
        party_id = 1 if party_id == 0 else 0
    elif kind == "hang":
        time.sleep(3600)  # the launcher stops it long before
    return party_id, logits


def pause_if_asked(kind: str | None) -> None:
    """Wait :data:`PAUSE_SECONDS` if the fault is ``"pause"``; else return at once."""
    if kind == "pause":
        time.sleep(PAUSE_SECONDS)
