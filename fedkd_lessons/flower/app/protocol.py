"""What FedMD's server and parties say to each other on Flower, and when a round closes (lesson 6).

One message per party per step, in both directions (Li & Wang 2019, Algorithm 1: communicate,
aggregate, distribute, digest, revisit; raw logits, no softmax, as in the authors' code):

- server -> party, message ``j`` (``j = 0 .. R``): from ``j = 1`` on, the ``consensus`` of round ``j``
  with the public indices it belongs to; and, except in the last message, the public-subset
  ``indices`` of round ``j + 1``. A party first digests the consensus and revisits its private data
  (ending round ``j``), then scores the new subset (communicate, starting round ``j + 1``): one
  message carries the end of one round and the start of the next, the same steps in the same order
  as :func:`fedkd_lessons.fedmd.run_fedmd`, with ``R + 1`` messages instead of ``2 R``.
- party -> server: its test ``accuracy`` after ``j`` rounds and its raw ``logits`` on the new indices.

Only integers (indices), class scores and one accuracy cross the wire: never weights, never images.
The server trusts no reply: :func:`check_reply` says why one must be dropped before it is used.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Instance, Integer, Optional, Tensor, check_fields,
                                             checked_arguments)

INDICES = Tensor(ndim=1, dtype="integer")

# record names inside a message's RecordDict
CONFIG, CONSENSUS, LOGITS, METRICS = "config", "consensus", "logits", "metrics"
MESSAGE_TYPE = "train"  # every FedMD message ends in training (digest, revisit) or starts it


@checked_arguments(message_number=Integer(0), indices=Optional(INDICES), consensus=Optional(Tensor(ndim=2)),
                   consensus_indices=Optional(INDICES))
def server_message(message_number: int, indices=None, consensus=None, consensus_indices=None) -> RecordDict:
    """The content of the server's message ``message_number`` (``j = 0 .. R``) to one party: after
    digesting it a party has completed ``j`` FedMD rounds.

    Args:
        indices: ``(S,)`` public-subset indices of round ``j + 1`` to score, or ``None`` in the last message.
        consensus: ``(S', C)`` the consensus of round ``j``, or ``None`` in message 0.
        consensus_indices: ``(S',)`` the public indices the consensus belongs to (row by row).
    """
    if (consensus is None) != (consensus_indices is None):
        raise ValueError("consensus and consensus_indices go together: give both or neither")
    config = {"message": int(message_number)}
    records = {}
    if indices is not None:
        config["indices"] = [int(i) for i in indices]
    if consensus is not None:
        consensus = torch.as_tensor(consensus, dtype=torch.float32)
        if len(consensus) != len(consensus_indices):
            raise ValueError(f"consensus has {len(consensus)} rows but consensus_indices has {len(consensus_indices)}")
        config["consensus-indices"] = [int(i) for i in consensus_indices]
        records[CONSENSUS] = ArrayRecord({CONSENSUS: Array(consensus.numpy())})
    return RecordDict({CONFIG: ConfigRecord(config), **records})


@dataclass(frozen=True)
class ServerMessage:
    """A party's reading of :func:`server_message` (tensors, or ``None`` where absent)."""

    message_number: int
    indices: torch.Tensor | None
    consensus: torch.Tensor | None
    consensus_indices: torch.Tensor | None


@checked_arguments(content=Instance(RecordDict))
def read_server_message(content: RecordDict) -> ServerMessage:
    """A party's :class:`ServerMessage` from the server's message content (:func:`server_message`)."""
    config = content[CONFIG]
    indices = torch.tensor(config["indices"], dtype=torch.long) if "indices" in config else None
    if CONSENSUS in content:
        consensus = torch.from_numpy(np.array(content[CONSENSUS][CONSENSUS].numpy()))
        consensus_indices = torch.tensor(config["consensus-indices"], dtype=torch.long)
    else:
        consensus = consensus_indices = None
    return ServerMessage(int(config["message"]), indices, consensus, consensus_indices)


# logits may hold NaN: a faulty party (.faults) sends them, and the server's check_reply must see them
@checked_arguments(party_id=Integer(0), accuracy=FRACTION, logits=Optional(Tensor(ndim=2, finite=False)))
def party_reply(party_id: int, accuracy: float, logits=None) -> RecordDict:
    """A party's reply: its id and test accuracy, and its logits ``(S, C)`` if it was asked to score."""
    records = {METRICS: MetricRecord({"party-id": int(party_id), "accuracy": float(accuracy)})}
    if logits is not None:
        logits = torch.as_tensor(logits, dtype=torch.float32).detach()
        records[LOGITS] = ArrayRecord({LOGITS: Array(logits.numpy())})
    return RecordDict(records)


@checked_arguments(content=Instance(RecordDict))
def read_party_reply(content: RecordDict) -> tuple[int, float, torch.Tensor | None]:
    """``(party_id, accuracy, logits or None)`` from :func:`party_reply`'s content. Raises
    ``ValueError`` for content that is not a reply at all (records or fields missing)."""
    try:
        metrics = content[METRICS]
        party_id, accuracy = metrics["party-id"], metrics["accuracy"]
        logits = torch.from_numpy(np.array(content[LOGITS][LOGITS].numpy())) if LOGITS in content else None
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a party's reply ({type(error).__name__}: {error})") from error
    if isinstance(party_id, float) and not party_id.is_integer():
        raise ValueError(f"not a party's reply: party-id {party_id!r} is not an integer")
    return int(party_id), float(accuracy), logits


@dataclass(frozen=True)
class Drop:
    """Why a reply was dropped. ``identity``: the sender is not who it must be (an unknown node, a
    spoofed id, a second reply for one party): the server never trusts that node again. Otherwise
    only this reply's content was bad (scores of the wrong shape, NaN), and the node is asked again
    next message, as a party may recover from a passing fault."""

    reason: str
    identity: bool


def check_reply(node: int, party_id: int, accuracy: float, logits, *, party_of_node: dict[int, int],
                replied: set[int], rows: int | None, classes: int) -> Drop | None:
    """Why the server must drop this reply, or ``None`` if it may use it. The checks, in order:

    1. the sending node is one the server knows (``party_of_node``: bound at registration);
    2. the reply claims the party its node is bound to (else: a spoofed id);
    3. that party has not already replied to this message (``replied``: one reply per party);
    4. the accuracy is a number in [0, 1];
    5. logits, when the message asked for ``rows`` scores (``None``: it asked for none), have the
       shape ``(rows, classes)`` of the indices sent, and every value is finite.
    """
    if node not in party_of_node:
        return Drop(f"unknown node {node}: not registered as a party", identity=True)
    if party_id != party_of_node[node]:
        return Drop(f"spoofed id: node {node} is party {party_of_node[node]} but claims party {party_id}", identity=True)
    if party_id in replied:
        return Drop(f"duplicate: party {party_id} already replied to this message", identity=True)
    if not (math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
        return Drop(f"accuracy {accuracy!r} is not a number in [0, 1]", identity=False)
    if rows is None:
        return None if logits is None else Drop(f"logits {tuple(logits.shape)} sent, but none were asked for", False)
    if logits is None:
        return Drop(f"no logits, but scores on {rows} public images were asked for", identity=False)
    if tuple(logits.shape) != (rows, classes):
        return Drop(f"wrong shape: logits {tuple(logits.shape)}, expected ({rows}, {classes}) for the indices sent",
                    identity=False)
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).sum())
        return Drop(f"logits not finite: {bad} of {logits.numel()} values are NaN or infinite", identity=False)
    return None


@checked_arguments(content=Instance(RecordDict))
def payload_bytes(content: RecordDict) -> int:
    """Bytes of a message's content as Flower serialises it for the wire: the sum of its records'
    serialised objects (arrays, their chunks, configs, metrics and the record dict itself), the
    pieces the SuperLink stores and forwards. Transport framing (HTTP headers) is not counted."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(content).values())


@checked_arguments(model=Instance(torch.nn.Module))
def weights_payload_bytes(model: torch.nn.Module) -> int:
    """What FedAvg would put on the wire for ``model`` in one direction: its weights as an
    ``ArrayRecord``, measured with :func:`payload_bytes`."""
    return payload_bytes(RecordDict({"weights": ArrayRecord(model.state_dict())}))


@dataclass(frozen=True)
class RoundPolicy:
    """When the server stops waiting for replies, set deliberately for a network where parties fail.

    A round closes as soon as every addressed party has replied. Otherwise, once at least
    ``min_replies`` have replied, the server waits ``grace`` seconds more for stragglers and then
    goes on without them. If ``timeout`` seconds pass with fewer than ``min_replies`` replies, the
    run fails: a consensus of too few parties is not worth distilling.
    """

    min_replies: int = 1
    timeout: float = 120.0
    grace: float = 6.0

    def __post_init__(self):
        check_fields(self, min_replies=Integer(1), timeout=POSITIVE, grace=POSITIVE)

    def decide(self, addressed: int, replied: int, elapsed: float, since_minimum: float | None) -> str:
        """``"close"``, ``"wait"`` or ``"fail"`` after ``elapsed`` seconds, ``since_minimum`` seconds
        after the ``min_replies``-th reply (``None`` before it)."""
        if replied >= addressed:
            return "close"
        if replied >= self.min_replies and since_minimum is not None and since_minimum >= self.grace:
            return "close"
        if elapsed >= self.timeout:
            return "close" if replied >= self.min_replies else "fail"
        return "wait"
