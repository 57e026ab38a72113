"""Fault injection on FedMD on Flower: one shared run on loopback, with TLS and SuperNode
authentication, in which parties misbehave on purpose and a stranger tries to join:

- party 2 sends NaN logits (message 0), then claims to be party 0 (message 1);
- party 3 sends logits of the wrong shape (message 0), then hangs past the round's grace (message 1);
- party 4 is killed while it works on message 1 (it pauses there for a few seconds, so that the kill
  lands mid-round on any machine);
- party 0 has a twin: a second SuperNode, registered as party 0 too, so party 0 replies twice;
- an intruder: a SuperNode whose key was never registered.

The run must finish with the honest parties 0 and 1, the server's record must name each event, and
every process the run started must be gone afterwards, checked by PID (also when the run fails).
"""

import pytest
import torch

from fedkd_lessons.fedmd import FedMDSettings, make_parties, transfer_learning
from fedkd_lessons.flower.app.settings import FlowerSettings
from fedkd_lessons.flower.launcher import FlowerRunError, Incidents, run_fedmd_on_flower
from fedkd_lessons.data.letters import make_letter_parties
from fedkd_lessons.engine.models import make_cnn, make_mlp

from process_helpers import still_running

ROUNDS, SUBSET = 2, 40
FAULTS = {2: "nan@0 spoof@1", 3: "shape@0 hang@1", 4: "pause@1"}  # message 2 goes to the honest parties only
KILLED = (4, 1)  # party 4, while it works on message 1 (held there by a pause, however fast the machine)
HONEST = [0, 1]

pytestmark = pytest.mark.flower_run


@pytest.fixture(scope="module")
def faulty_run(digits):
    torch.manual_seed(0)
    letters = make_letter_parties(num_parties=5, per_class=3, evaluation_per_class=2, seed=0)
    models = [(f"mlp {w}", make_mlp((w,), num_classes=16)) for w in (32, 16, 24, 8)] + [("cnn 4", make_cnn((4,), num_classes=16))]
    parties = make_parties(models, letters.private, seed=0)
    transfer_learning(parties, digits.train_images[:200], digits.train_labels[:200], public_epochs=1, private_epochs=2)
    try:
        run = run_fedmd_on_flower(parties, digits.train_images, letters.test_images, letters.test_labels,
                                  FedMDSettings(rounds=ROUNDS, subset_size=SUBSET),
                                  FlowerSettings(min_replies=2, round_timeout=90, grace=5, run_timeout=150),
                                  Incidents(faults=FAULTS, kill_mid_round=KILLED, twin_of=0, intruder=True))
    except FlowerRunError as failure:  # the processes are checked even when the run fails
        assert still_running(failure.pids) == [], "a failed run left processes running"
        raise
    return run


def test_every_started_process_is_stopped(faulty_run):
    # SuperLink, 6 SuperNodes and the intruder, their SuperExecs, the ServerApp, ClientApps
    assert len(faulty_run.pids) >= 1 + 7 + 1
    assert faulty_run.left_running == []
    assert still_running(faulty_run.pids) == []


def test_the_run_finishes_with_the_honest_parties(faulty_run):
    last = faulty_run.messages[-1]
    assert last["replied"] == HONEST and last["decision"] == "close"
    assert not torch.isnan(torch.as_tensor(faulty_run.accuracy[:, HONEST])).any()


def test_nan_logits_are_dropped_with_their_reason(faulty_run):
    (reason,) = [d["reason"] for d in faulty_run.messages[0]["dropped"] if d["party"] == 2]
    assert reason.startswith("logits not finite: 1 of")
    assert 2 not in faulty_run.messages[0]["replied"]


def test_logits_of_the_wrong_shape_are_dropped_and_the_party_is_asked_again(faulty_run):
    assert 3 in faulty_run.messages[1]["addressed"]  # a content fault: asked again
    (reason,) = [d["reason"] for d in faulty_run.messages[0]["dropped"] if d["party"] == 3]
    assert reason == f"wrong shape: logits ({SUBSET - 1}, 16), expected ({SUBSET}, 16) for the indices sent"


def test_a_spoofed_id_is_dropped_and_the_party_not_asked_again(faulty_run):
    assert 2 in faulty_run.messages[1]["addressed"]  # its NaN was a content fault: asked again
    (dropped,) = [d for d in faulty_run.messages[1]["dropped"] if d["party"] == 2]
    assert dropped["claimed"] == 0 and dropped["identity"]
    assert dropped["reason"].endswith("is party 2 but claims party 0")
    assert 0 in faulty_run.messages[1]["replied"]  # the real party 0 still counts
    assert 2 not in faulty_run.messages[2]["addressed"]


def test_a_duplicate_reply_is_dropped_and_the_twin_not_asked_again(faulty_run):
    first = faulty_run.messages[0]
    assert first["addressed"].count(0) == 2  # party 0's two registered nodes
    (dropped,) = [d for d in first["dropped"] if d["party"] == 0]
    assert dropped["reason"] == "duplicate: party 0 already replied to this message"
    assert all(m["addressed"].count(0) == 1 for m in faulty_run.messages[1:])
    assert 0 in first["replied"]


def test_a_hanging_party_and_a_killed_party_are_silent_then_left_out(faulty_run):
    second = faulty_run.messages[1]
    assert second["silent"] == [3, KILLED[0]]
    assert second["seconds"] < 90  # closed after the grace, not at the time-out
    assert faulty_run.messages[2]["addressed"] == [0, 1]
    assert faulty_run.accuracy[0, 4] == faulty_run.accuracy[0, 4]  # it reported after transfer learning


def test_the_unregistered_node_is_refused(faulty_run):
    intruder = faulty_run.intruder
    assert intruder["exit_code"] not in (None, 0)
    assert "Failed to activate SuperNode" in intruder["reason"]
    assert not intruder["got_node_id"] and intruder["addressed_strangers"] == []
    assert len(faulty_run.registered) == 6  # five parties and the twin, bound at registration


def test_each_consensus_is_the_mean_of_the_accepted_replies_only(faulty_run):
    for message in faulty_run.messages[:-1]:
        round_number = message["message"] + 1
        sent = [faulty_run.diaries[k][("sent", round_number)] for k in message["replied"]]
        mean = sum(sent) / len(sent)
        for k in faulty_run.messages[round_number]["replied"]:
            torch.testing.assert_close(faulty_run.diaries[k][("received", round_number)], mean, atol=1e-6, rtol=0)
