"""FedMD's server side on Flower: choose subsets, collect class scores, average, send back (lesson 6).

The server holds no data and no model. It knows only the public set's size, from which it draws each
round's subset with its own seeded generator and :func:`fedkd_lessons.fedmd.draw_public_subset`, and
aggregates with :func:`fedkd_lessons.fedmd.compute_consensus`: the functions that
:func:`fedkd_lessons.fedmd.run_fedmd` calls in one process. Its settings come from
``flwr run --run-config``, read by the settings objects themselves
(:class:`fedkd_lessons.fedmd.FedMDSettings`, :mod:`fedkd_lessons.flower.app.settings`). It writes what happened (per message: who
was addressed, whose replies it used, which it dropped and why, who stayed silent, the
accuracies, the bytes each way) as JSON to ``result-dir``. Every reply is checked before use
(:func:`fedkd_lessons.flower.app.protocol.check_reply`); a silent node, and one whose reply
claimed an identity that is not its own, is not addressed again.
"""

import json
import time
from pathlib import Path

import torch
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from fedkd_lessons.engine.validation import POSITIVE, Instance, Integer, OneOf, checked_arguments
from fedkd_lessons.fedmd import FedMDSettings, compute_consensus, draw_public_subset
from fedkd_lessons.flower.app.protocol import (MESSAGE_TYPE, Drop, RoundPolicy, check_reply, payload_bytes,
                                               read_party_reply, server_message)
from fedkd_lessons.flower.app.settings import FlowerSettings, RunFacts

app = ServerApp()
POLL_SECONDS = 0.2  # Grid.send_and_receive polls every 3 s; a round here takes a few seconds


@checked_arguments(path=Instance(Path))
def write_json(path: Path, value) -> None:
    """``value`` as JSON at ``path``, written whole or not at all."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    temporary.replace(path)  # readers never see half a file


@checked_arguments(count=Integer(1), timeout=POSITIVE)
def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The ids of the first ``count`` SuperNodes connected, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} parties connected within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    return nodes[:count]


class ReplyChecker:
    """Reads and checks every reply of one message (:func:`check_reply`) as it arrives; keeps the
    accepted ones and the reasons for the others. With ``open_registration`` (a run without node
    authentication, message 0 only) a node is bound to the first party id it claims, unless another
    node holds that id already."""

    def __init__(self, party_of_node: dict[int, int], rows: int | None, classes: int, open_registration: bool):
        self.party_of_node, self.rows, self.classes = party_of_node, rows, classes
        self.open_registration = open_registration
        self.accepted: dict[int, tuple[float, torch.Tensor | None]] = {}  # party -> (accuracy, logits)
        self.node_of_party: dict[int, int] = {}
        self.dropped: list[dict] = []

    def add(self, reply: Message) -> bool:
        """Check ``reply``; keep it if it passes. Returns whether it was accepted."""
        node = reply.metadata.src_node_id
        if reply.has_error():  # the party's ClientApp crashed: nothing to read
            return self._drop(node, None, Drop(f"the party's ClientApp failed: {reply.error.reason}", False))
        try:
            party_id, accuracy, logits = read_party_reply(reply.content)
        except ValueError as error:
            return self._drop(node, None, Drop(str(error), identity=False))
        if self.open_registration and node not in self.party_of_node:
            if party_id in self.party_of_node.values():
                holder = next(n for n, p in self.party_of_node.items() if p == party_id)
                return self._drop(node, party_id, Drop(f"duplicate: party {party_id} is already node {holder}", True))
            self.party_of_node[node] = party_id
        drop = check_reply(node, party_id, accuracy, logits, party_of_node=self.party_of_node,
                           replied=set(self.accepted), rows=self.rows, classes=self.classes)
        if drop is not None:
            return self._drop(node, party_id, drop)
        self.accepted[party_id] = (accuracy, logits)
        self.node_of_party[party_id] = node
        return True

    def _drop(self, node: int, claimed: int | None, drop: Drop) -> bool:
        self.dropped.append(dict(node=node, party=self.party_of_node.get(node), claimed=claimed, reason=drop.reason,
                                 identity=drop.identity))
        return False

    def nodes_to_ask_again(self) -> list[int]:
        """The nodes whose reply was used, and those whose reply was dropped for its content only."""
        kept = {self.node_of_party[p] for p in self.accepted}
        kept |= {d["node"] for d in self.dropped if not d["identity"] and d["node"] in self.party_of_node}
        return sorted(kept, key=self.party_of_node.get)


@checked_arguments(policy=Instance(RoundPolicy), checker=Instance(ReplyChecker))
def collect_replies(grid: Grid, messages: list[Message], policy: RoundPolicy, checker: ReplyChecker):
    """Push ``messages``, then pull and check replies until ``policy`` closes the round: every node
    answered (well or badly), or enough good replies and the grace is over, or the time-out. Returns
    the accepted replies' messages, the seconds after which each arrived, the decision (``"close"``
    or ``"fail"``) and the seconds waited."""
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    arrivals: list[float] = []
    start, minimum_reached = time.monotonic(), None
    while True:
        for reply in grid.pull_messages(pending):
            pending.discard(reply.metadata.reply_to_message_id)
            if checker.add(reply):
                replies.append(reply)
                arrivals.append(time.monotonic() - start)
        now = time.monotonic()
        if minimum_reached is None and len(replies) >= policy.min_replies:
            minimum_reached = now
        # a node whose reply was dropped is answered for: the round need not wait for it
        decision = policy.decide(len(messages) - len(checker.dropped), len(replies), now - start,
                                 None if minimum_reached is None else now - minimum_reached)
        if decision != "wait" or not pending:
            if decision == "wait":  # everybody answered, some badly
                decision = "close" if len(replies) >= policy.min_replies else "fail"
            return replies, arrivals, decision, now - start
        time.sleep(POLL_SECONDS)


def party_order(name) -> tuple:
    """Parties by number, then nodes not bound to any party (named ``"node N"``)."""
    return (0, name, "") if isinstance(name, int) else (1, 0, str(name))


@checked_arguments(message_number=Integer(0), checker=Instance(ReplyChecker), decision=OneOf("close", "fail"))
def message_record(message_number: int, nodes: list[int], party_of_node: dict[int, int], content,
                   checker: ReplyChecker, replies: list[Message], arrivals: list[float], seconds: float,
                   decision: str) -> dict:
    """What the record keeps of one message: who was addressed, whose replies were used, which were
    dropped and why, who stayed silent, the accuracies, the bytes each way and the timings."""

    def name(node):  # a party's id once its node is bound, else the node's
        return party_of_node[node] if node in party_of_node else f"node {node}"

    answered = {d["node"] for d in checker.dropped} | {r.metadata.src_node_id for r in replies}
    accuracy = {party: value for party, (value, _) in checker.accepted.items()}
    return dict(
        message=message_number, addressed=sorted((name(n) for n in nodes), key=party_order),
        replied=sorted(accuracy), accuracy=accuracy,
        dropped=[{**d, "party": name(d["node"])} for d in checker.dropped],
        silent=sorted((name(n) for n in nodes if n not in answered), key=party_order),
        bytes_down={str(name(n)): payload_bytes(content) for n in nodes},
        bytes_up={str(name(r.metadata.src_node_id)): payload_bytes(r.content) for r in replies},
        arrived={name(r.metadata.src_node_id): round(a, 2) for r, a in zip(replies, arrivals)},
        seconds=round(seconds, 2), decision=decision)


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = FedMDSettings.from_run_config(context.run_config)
    flower = FlowerSettings.from_run_config(context.run_config)
    policy = flower.policy
    facts = RunFacts.from_run_config(context.run_config)
    result_dir = Path(facts.result_dir)
    server = torch.Generator().manual_seed(settings.seed)  # the same stream as run_fedmd's at this seed
    record = dict(settings={k: context.run_config[k] for k in context.run_config}, messages=[], error=None)
    # node -> party, bound when each party's key was registered (`flwr supernode register`); a run
    # without node authentication binds each node to the id it claims in its first reply instead
    party_of_node = dict(facts.registered)
    open_registration = not party_of_node
    record["registered"] = {str(n): p for n, p in party_of_node.items()}

    consensus = consensus_indices = None
    try:
        nodes = wait_for_nodes(grid, facts.num_parties, flower.connect_timeout)
        for message_number in range(settings.rounds + 1):
            last = message_number == settings.rounds
            indices = None if last else draw_public_subset(server, facts.public_size, settings.subset_size)
            content = server_message(message_number, indices, consensus, consensus_indices)
            messages = [Message(content, dst_node_id=node, message_type=MESSAGE_TYPE, group_id=str(message_number))
                        for node in nodes]
            checker = ReplyChecker(party_of_node, None if indices is None else len(indices), facts.classes,
                                   open_registration and message_number == 0)
            replies, arrivals, decision, seconds = collect_replies(grid, messages, policy, checker)
            record["messages"].append(message_record(message_number, nodes, party_of_node, content, checker,
                                                     replies, arrivals, seconds, decision))
            if decision == "fail":
                raise RuntimeError(f"message {message_number}: {len(replies)} good replies, fewer than "
                                   f"min-replies = {policy.min_replies} within {policy.timeout:.0f} s")
            # aggregate (Li & Wang 2019, Algorithm 1): over the parties whose replies passed, in party order
            logits = {party: scores for party, (_, scores) in checker.accepted.items() if scores is not None}
            if logits:
                consensus = compute_consensus([logits[p] for p in sorted(logits)], settings.kind,
                                              settings.temperature, settings.rule, settings.trim)
                consensus_indices = indices
            # a silent node, or one that claimed to be someone it is not, is not addressed again
            nodes = checker.nodes_to_ask_again()
            write_json(result_dir / "progress.json", dict(closed=message_number))
    except Exception as error:
        record["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        write_json(result_dir / "result.json", record)
