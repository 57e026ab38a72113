"""FedMD's server side on Flower: choose subsets, collect class scores, average, send back (lesson 6).

The server holds no data and no model. It knows only the public set's size, from which it draws each
round's subset with its own seeded generator (the same draws as :func:`fedkd_lessons.fedmd.run_fedmd`),
and the run's settings, from ``flwr run --run-config``. It writes what happened (per message: who
was addressed, who replied, their accuracies, the bytes each way) as JSON to ``result-dir``.
"""

import json
import time
from pathlib import Path

import torch
from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp

from fedkd_lessons.fedmd import compute_consensus
from fedkd_lessons.flower_fedmd.protocol import (
    MESSAGE_TYPE, RoundPolicy, payload_bytes, read_party_reply, server_message,
)

app = ServerApp()
POLL_SECONDS = 0.1  # Grid.send_and_receive polls every 3 s; a round here takes a few seconds


def write_json(path: Path, value) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=1))
    temporary.replace(path)  # readers never see half a file


def wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    """The ids of the first ``count`` SuperNodes connected, waiting at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(nodes)} of {count} parties connected within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    return nodes[:count]


def collect_replies(grid: Grid, messages: list[Message], policy: RoundPolicy):
    """Push ``messages``, then pull replies until ``policy`` closes the round. Returns the replies,
    the seconds after which each arrived, the decision (``"close"`` or ``"fail"``) and the seconds waited."""
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    arrivals: list[float] = []
    start, minimum_reached = time.monotonic(), None
    while True:
        for reply in grid.pull_messages(pending):
            pending.discard(reply.metadata.reply_to_message_id)
            if not reply.has_error():  # a party whose ClientApp crashed counts as silent
                replies.append(reply)
                arrivals.append(time.monotonic() - start)
        now = time.monotonic()
        if minimum_reached is None and len(replies) >= policy.min_replies:
            minimum_reached = now
        decision = policy.decide(len(messages), len(replies), now - start,
                                 None if minimum_reached is None else now - minimum_reached)
        if decision != "wait" or not pending:
            return replies, arrivals, ("close" if decision == "wait" else decision), now - start
        time.sleep(POLL_SECONDS)


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = context.run_config
    result_dir = Path(str(settings["result-dir"]))
    rounds, subset_size, public_size = (int(settings[k]) for k in ("rounds", "subset-size", "public-size"))
    policy = RoundPolicy(int(settings["min-replies"]), float(settings["round-timeout"]), float(settings["grace"]))
    server = torch.Generator().manual_seed(int(settings["seed"]))  # the same draws as run_fedmd(seed=...)
    record = dict(settings={k: settings[k] for k in settings}, messages=[], error=None)

    party_of_node: dict[int, int] = {}
    consensus = consensus_indices = None
    try:
        nodes = wait_for_nodes(grid, int(settings["num-parties"]), float(settings["connect-timeout"]))
        for message_number in range(rounds + 1):
            indices = torch.randperm(public_size, generator=server)[:subset_size] if message_number < rounds else None
            content = server_message(message_number, indices, consensus, consensus_indices)
            messages = [Message(content, dst_node_id=node, message_type=MESSAGE_TYPE, group_id=str(message_number))
                        for node in nodes]
            replies, arrivals, decision, seconds = collect_replies(grid, messages, policy)

            accuracy, bytes_up, logits, arrived = {}, {}, {}, {}
            for reply, arrival in zip(replies, arrivals):
                party_id, party_accuracy, party_scores = read_party_reply(reply.content)
                party_of_node[reply.metadata.src_node_id] = party_id
                accuracy[party_id] = party_accuracy
                arrived[party_id] = round(arrival, 2)
                bytes_up[party_id] = payload_bytes(reply.content)
                if party_scores is not None:
                    logits[party_id] = party_scores
            addressed = sorted(party_of_node[n] for n in nodes if n in party_of_node)
            addressed += [f"node {n}" for n in nodes if n not in party_of_node]  # silent from the start
            record["messages"].append(dict(
                message=message_number, addressed=addressed, replied=sorted(accuracy), accuracy=accuracy,
                bytes_down={str(p): payload_bytes(content) for p in addressed}, bytes_up=bytes_up,
                arrived=arrived, seconds=round(seconds, 2), decision=decision))
            if decision == "fail":
                raise RuntimeError(f"message {message_number}: {len(replies)} replies, fewer than "
                                   f"min-replies = {policy.min_replies} within {policy.timeout:.0f} s")
            # aggregate (fact 16): equal-weight mean over the parties that replied, in party order
            if logits:
                consensus = compute_consensus([logits[p] for p in sorted(logits)], str(settings["consensus"]),
                                              float(settings["temperature"]))
                consensus_indices = indices
            nodes = [reply.metadata.src_node_id for reply in replies]  # a silent party is dropped for good
            nodes.sort(key=party_of_node.get)
            write_json(result_dir / "progress.json", dict(closed=message_number))
    except Exception as error:
        record["error"] = f"{type(error).__name__}: {error}"
        raise
    finally:
        write_json(result_dir / "result.json", record)
