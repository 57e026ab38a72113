"""FedMD on Flower: the messages, the round policy, a party's disk, and a run that fails and still
stops every process. The full run on loopback, one party stopped mid-run, is lesson 6's claims test
(tests/claims/test_claims_lesson6.py)."""

import copy
import math
import os
import sys
import tomllib

import psutil
import pytest
import torch

from fedkd_lessons.fedmd import FedMDSettings, make_parties, transfer_learning
from fedkd_lessons.flower.app.credentials import make_credentials
from fedkd_lessons.flower.app.faults import parse_faults, spoil_reply
from fedkd_lessons.flower.app.party_disk import (architecture_of, build_architecture, load_party, load_shared_data,
                                                 read_diary, save_party, save_shared_data, write_diary)
from fedkd_lessons.flower.app.protocol import (RoundPolicy, check_reply, party_reply, payload_bytes,
                                               read_party_reply, read_server_message, server_message,
                                               weights_payload_bytes)
from fedkd_lessons.flower.app.settings import FlowerSettings, RunFacts
from fedkd_lessons.flower.launcher import (APP_DIR, FlowerRunError, Incidents, ProcessGroup, run_fedmd_on_flower,
                                           start_mark)
from fedkd_lessons.data.letters import make_letter_parties
from fedkd_lessons.engine.models import count_parameters, make_cnn, make_mlp, predict_logits

from process_helpers import still_running


@pytest.fixture(scope="module")
def setting(digits):
    torch.manual_seed(0)
    letters = make_letter_parties(num_parties=3, per_class=4, evaluation_per_class=2, seed=0)
    models = [("mlp 32", make_mlp((32,), num_classes=16)), ("cnn 8", make_cnn((8,), num_classes=16)),
              ("mlp 16", make_mlp((16,), num_classes=16))]
    parties = make_parties(models, letters.private, seed=0)
    transfer_learning(parties, digits.train_images[:300], digits.train_labels[:300], public_epochs=1, private_epochs=3)
    return parties, digits.train_images, letters.test_images, letters.test_labels


# ---- messages ----

def test_server_message_round_trip():
    consensus = torch.randn(3, 16)
    read = read_server_message(server_message(2, indices=[5, 1, 7, 9], consensus=consensus, consensus_indices=[4, 0, 2]))
    assert read.message_number == 2
    assert read.indices.tolist() == [5, 1, 7, 9]
    assert read.consensus_indices.tolist() == [4, 0, 2]
    assert torch.equal(read.consensus, consensus)
    first = read_server_message(server_message(0, indices=[3]))
    assert first.consensus is None and first.consensus_indices is None
    last = read_server_message(server_message(5, consensus=consensus, consensus_indices=[1, 2, 3]))
    assert last.indices is None


def test_server_message_rejects_consensus_without_its_indices():
    with pytest.raises(ValueError, match="consensus and consensus_indices"):
        server_message(1, indices=[1], consensus=torch.zeros(2, 16))
    with pytest.raises(ValueError, match="3 rows but consensus_indices has 2"):
        server_message(1, consensus=torch.zeros(3, 16), consensus_indices=[0, 1])


def test_party_reply_round_trip():
    logits = torch.randn(4, 16)
    party_id, accuracy, read_logits = read_party_reply(party_reply(3, 0.75, logits))
    assert (party_id, accuracy) == (3, 0.75)
    assert torch.equal(read_logits, logits)
    assert read_party_reply(party_reply(1, 0.5))[2] is None


def test_payload_bytes_count_the_float32_scores_plus_small_headers():
    # reference: S x C float32 numbers are 4 S C bytes; Flower adds headers of a few hundred bytes
    for samples in (10, 500):
        measured = payload_bytes(party_reply(0, 0.5, torch.zeros(samples, 16)))
        assert 4 * samples * 16 <= measured <= 4 * samples * 16 + 1500
    small, large = (payload_bytes(party_reply(0, 0.5, torch.zeros(s, 16))) for s in (100, 200))
    assert abs((large - small) - 4 * 100 * 16) <= 16  # 6,400 more bytes, give or take a length field


def test_weights_payload_bytes_are_the_parameters_in_float32():
    model = make_cnn((8, 16), num_classes=16)
    measured = weights_payload_bytes(model)
    assert 4 * count_parameters(model) <= measured <= 4 * count_parameters(model) + 3000


# ---- the round policy ----

@pytest.mark.parametrize("addressed, replied, elapsed, since_minimum, expected", [
    (3, 3, 1.0, 0.5, "close"),    # everybody replied
    (3, 2, 5.0, 2.0, "wait"),     # enough replies, grace (6 s) not over: a straggler may come
    (3, 2, 9.0, 6.0, "close"),    # enough replies and the grace is over: go on without the third
    (3, 1, 50.0, None, "wait"),   # too few, before the time-out
    (3, 1, 120.0, None, "fail"),  # too few at the time-out
    (3, 2, 120.0, 1.0, "close"),  # the time-out closes a round that has enough replies
])
def test_round_policy_decides(addressed, replied, elapsed, since_minimum, expected):
    policy = RoundPolicy(min_replies=2, timeout=120.0, grace=6.0)
    assert policy.decide(addressed, replied, elapsed, since_minimum) == expected


@pytest.mark.parametrize("settings, name", [
    (dict(min_replies=0), "min_replies"), (dict(timeout=0.0), "timeout"), (dict(timeout=math.inf), "timeout"),
    (dict(grace=-1.0), "grace"), (dict(grace=math.nan), "grace"),
])
def test_round_policy_rejects_bad_settings(settings, name):
    with pytest.raises(ValueError, match=name):
        RoundPolicy(**settings)


# ---- a party's disk ----

def test_party_disk_round_trip_keeps_model_data_and_random_stream(tmp_path, setting):
    party, public_images, test_images, test_labels = copy.deepcopy(setting[0][1]), *setting[1:]
    party.generator.manual_seed(11)
    torch.randperm(5, generator=party.generator)  # a stream part-way through
    save_party(tmp_path, party)
    save_shared_data(tmp_path, public_images, test_images, test_labels)
    loaded = load_party(tmp_path)
    assert loaded.name == party.name
    assert torch.equal(predict_logits(loaded.model, public_images[:20]), predict_logits(party.model, public_images[:20]))
    assert torch.equal(loaded.private_images, party.private_images)
    assert torch.equal(torch.randperm(50, generator=loaded.generator), torch.randperm(50, generator=party.generator))
    assert all(torch.equal(a, b) for a, b in zip(load_shared_data(tmp_path), (public_images, test_images, test_labels)))
    write_diary(tmp_path, 3, "sent", torch.ones(2, 16))
    assert list(read_diary(tmp_path)) == [("sent", 3)]


# ---- the launcher's argument checks (no process is started) ----

@pytest.mark.parametrize("change, message", [
    (dict(parties=[]), r"^parties must be a list or tuple of at least 1 item\(s\), each a Party, got \[\]"),
    (dict(parties=["a party"]), r"^parties\[0\] must be a Party, got 'a party'"),
    (dict(settings=FedMDSettings(subset_size=5000)), "subset_size must be at most the public set's size 1437, got 5000"),
    (dict(settings=dict(rounds=2)), r"^settings must be None or a FedMDSettings, got \{'rounds': 2\}"),
    (dict(flower=RoundPolicy()), r"^flower must be None or a FlowerSettings, got RoundPolicy"),
    (dict(incidents={}), r"^incidents must be None or an Incidents, got \{\}"),
    (dict(incidents=Incidents(stop_party=(3, 1))), r"stop_party must be \(party in 0..2, message in 1..2\), got \(3, 1\)"),
    (dict(incidents=Incidents(stop_party=(0, 0))), r"stop_party must be \(party in 0..2"),
    (dict(flower=FlowerSettings(min_replies=4)), "min_replies must be at most the number of parties 3, got 4"),
    (dict(flower=FlowerSettings(secure=False), incidents=Incidents(intruder=True)), "intruder needs secure=True"),
    (dict(incidents=Incidents(faults={5: "nan@0"})), r"faults: party must be in 0..2, got 5"),
    (dict(incidents=Incidents(faults={0: "boom@0"})), "faults must be 'KIND@MESSAGE' items"),
    (dict(incidents=Incidents(twin_of=3)), r"twin_of must be a party in 0..2, got 3"),
    (dict(incidents=Incidents(kill_mid_round=(0, 3))), r"kill_mid_round must be \(party in 0..2, message in 1..2\)"),
])
def test_run_rejects_bad_arguments(setting, change, message):
    parties, public_images, test_images, test_labels = setting
    arguments = dict(parties=parties, settings=FedMDSettings(rounds=2, subset_size=10)) | change
    with pytest.raises(ValueError, match=message):
        run_fedmd_on_flower(arguments.pop("parties"), public_images, test_images, test_labels, **arguments)


@pytest.mark.parametrize("change, message", [
    (dict(min_replies=0), "min_replies must be an integer >= 1, got 0"),
    (dict(round_timeout=0.0), "round_timeout must be a finite number > 0"),
    (dict(grace=float("nan")), "grace must be a finite number > 0"),
    (dict(connect_timeout=-1.0), "connect_timeout must be a finite number > 0"),
    (dict(run_timeout=float("inf")), "run_timeout must be a finite number > 0"),
    (dict(secure="yes"), "secure must be a bool, got 'yes'"),
])
def test_flower_settings_reject_bad_values_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        FlowerSettings(**change)


@pytest.mark.parametrize("change, message", [
    (dict(stop_party=(1, -1)), r"^stop_party must be None or a list or tuple .* each an integer >= 0"),
    (dict(kill_mid_round=3), r"^kill_mid_round must be None or a list or tuple"),
    (dict(faults=["nan@0"]), r"^faults must be a dict, got \['nan@0'\]"),
    (dict(twin_of=-1), r"^twin_of must be None or an integer >= 0, got -1"),
    (dict(intruder=1), r"^intruder must be a bool, got 1"),
])
def test_incidents_reject_bad_fields_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        Incidents(**change)


def test_incidents_keep_their_pairs_as_tuples():
    assert Incidents(stop_party=[2, 1]).stop_party == (2, 1)


def test_credentials_name_a_host_that_is_no_ip_address(tmp_path):
    with pytest.raises(ValueError, match=r"^host must be an IP address \(the certificate names it\), got 'localhost'"):
        make_credentials(tmp_path, ["party-0"], host="localhost")
    assert not list(tmp_path.iterdir())  # refused before any key was made


def test_the_apps_run_config_defaults_are_the_settings_defaults():
    # one source of truth: the app's pyproject.toml holds FedMDSettings' and FlowerSettings' defaults
    with open(APP_DIR / "pyproject.toml", "rb") as file:
        config = tomllib.load(file)["tool"]["flwr"]["app"]["config"]
    assert FedMDSettings.from_run_config(config) == FedMDSettings()
    assert FlowerSettings.from_run_config(config) == FlowerSettings()
    facts = RunFacts(num_parties=1, public_size=1437, classes=16, result_dir="")
    assert set(config) == set(FedMDSettings().to_run_config()) | set(FlowerSettings().to_run_config()) \
        | set(facts.to_run_config())


def test_run_facts_round_trip_through_the_run_config():
    facts = RunFacts(num_parties=4, public_size=1437, classes=16, result_dir="/tmp/r", registered={81: 0, 92: 3})
    config = facts.to_run_config()
    assert config["registered"] == "81:0 92:3"
    assert RunFacts.from_run_config(config) == facts
    with pytest.raises(ValueError, match="registered must be 'NODE:PARTY' pairs of integers, got '81-0'"):
        RunFacts.from_run_config({**config, "registered": "81-0"})
    with pytest.raises(ValueError, match="num_parties must be an integer >= 1, got 0"):
        RunFacts(num_parties=0, public_size=10, classes=16, result_dir="")


# ---- real processes ----

def _gone(pids):
    """``(all gone, the PIDs among pids that still run)``."""
    running = still_running(pids)
    return not running, running


@pytest.mark.flower_run
def test_a_failing_run_stops_every_process(setting):
    parties, public_images, test_images, test_labels = setting
    with pytest.raises(FlowerRunError, match="did not finish in time") as failure:
        run_fedmd_on_flower(parties[:2], public_images, test_images, test_labels,
                            FedMDSettings(rounds=1, subset_size=10), FlowerSettings(run_timeout=1.0))
    assert failure.value.left_running == []
    assert len(failure.value.pids) >= 3
    gone, running = _gone(failure.value.pids)
    assert gone, f"still running: {running}"


def test_a_process_is_known_by_its_kernel_start_time_not_the_wall_clock(tmp_path):
    group = ProcessGroup(tmp_path, dict(os.environ))
    child = group.start("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
    me = psutil.Process(child.pid)
    if os.path.exists(f"/proc/{child.pid}/stat"):  # Linux: clock ticks since boot, as the kernel counts them
        assert start_mark(me) / os.sysconf("SC_CLK_TCK") == pytest.approx(me.create_time() - psutil.boot_time(), abs=0.05)
    assert start_mark(me) == start_mark(psutil.Process(child.pid))
    assert group.alive() == [child.pid]
    assert group.stop() == []
    assert child.poll() is not None


# ---- the server's checks of a reply ----

def _check(logits, party_id=1, node=11, accuracy=0.5, replied=(), rows=4):
    return check_reply(node, party_id, accuracy, logits, party_of_node={10: 0, 11: 1}, replied=set(replied),
                       rows=rows, classes=16)


def test_a_good_reply_passes_every_check():
    assert _check(torch.randn(4, 16)) is None
    assert _check(None, rows=None) is None  # the last message asks for no scores


@pytest.mark.parametrize("arguments, reason, identity", [
    (dict(node=12), "unknown node 12: not registered as a party", True),
    (dict(party_id=0), "spoofed id: node 11 is party 1 but claims party 0", True),
    (dict(replied=(1,)), "duplicate: party 1 already replied to this message", True),
    (dict(accuracy=float("nan")), "accuracy nan is not a number in [0, 1]", False),
    (dict(accuracy=1.5), "accuracy 1.5 is not a number in [0, 1]", False),
])
def test_replies_from_the_wrong_sender_or_with_a_bad_accuracy_are_dropped(arguments, reason, identity):
    drop = _check(torch.randn(4, 16), **arguments)
    assert (drop.reason, drop.identity) == (reason, identity)


def test_logits_that_do_not_fit_the_indices_sent_are_dropped():
    assert _check(torch.randn(3, 16)).reason == "wrong shape: logits (3, 16), expected (4, 16) for the indices sent"
    assert _check(torch.randn(4, 10)).reason.startswith("wrong shape: logits (4, 10)")
    assert _check(torch.randn(4)).reason.startswith("wrong shape: logits (4,)")
    assert _check(None).reason == "no logits, but scores on 4 public images were asked for"
    assert _check(torch.randn(4, 16), rows=None).reason == "logits (4, 16) sent, but none were asked for"
    poisoned = torch.randn(4, 16)
    poisoned[1, 3], poisoned[2, 0] = float("nan"), float("inf")
    drop = _check(poisoned)
    assert drop.reason == "logits not finite: 2 of 64 values are NaN or infinite" and not drop.identity


def test_content_that_is_not_a_reply_is_refused_by_name():
    with pytest.raises(ValueError, match="not a party's reply"):
        read_party_reply(server_message(0, indices=[1]))


# ---- faults a party can be told to commit ----

def test_faults_parse_and_spoil_the_reply_as_documented():
    assert parse_faults("nan@0 shape@1 spoof@2 hang@3 pause@4") == {0: "nan", 1: "shape", 2: "spoof", 3: "hang",
                                                                     4: "pause"}
    assert parse_faults("") == {}
    for bad in ("nan", "nan@x", "crash@1"):
        with pytest.raises(ValueError, match="faults must be 'KIND@MESSAGE'"):
            parse_faults(bad)
    logits = torch.randn(5, 16)
    assert spoil_reply(None, 3, logits) == (3, logits)
    party_id, spoiled = spoil_reply("nan", 3, logits)
    assert party_id == 3 and torch.isnan(spoiled).sum() == 1 and torch.isfinite(logits).all()
    assert spoil_reply("shape", 3, logits)[1].shape == (4, 16)
    assert spoil_reply("spoof", 3, logits)[0] == 0 and spoil_reply("spoof", 0, logits)[0] == 1


# ---- models on disk: weights and a plain architecture, nothing unpickled ----

@pytest.mark.parametrize("model", [make_mlp((32, 16), num_classes=16, dropout=0.2), make_cnn((8, 16, 16), num_classes=16, dropout=0.3)])
def test_an_architecture_rebuilds_the_same_model(model):
    rebuilt = build_architecture(architecture_of(model))
    assert str(rebuilt) == str(model)
    rebuilt.load_state_dict(model.state_dict())
    images = torch.randn(5, 1, 8, 8)
    torch.testing.assert_close(predict_logits(rebuilt, images), predict_logits(model, images))


def test_a_party_file_holds_no_pickled_code(tmp_path, setting):
    save_party(tmp_path, setting[0][0])
    state = torch.load(tmp_path / "party.pt", weights_only=True)  # would raise on a pickled module
    assert not any(isinstance(value, torch.nn.Module) for value in state.values())
    assert state["architecture"][0] == {"type": "Flatten"}
    with pytest.raises(ValueError, match="layer Tanh cannot be stored"):
        architecture_of(torch.nn.Sequential(torch.nn.Tanh()))


# ---- credentials made for a run ----

def test_credentials_a_ca_signed_server_certificate_and_p384_node_keys(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

    made = make_credentials(tmp_path, ["party-0"])
    ca = x509.load_pem_x509_certificate(made.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(made.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    private = load_ssh_private_key(made.nodes["party-0"].private.read_bytes(), password=None)
    public = load_ssh_public_key(made.nodes["party-0"].public.read_bytes())
    assert isinstance(private.curve, ec.SECP384R1) and private.public_key().public_numbers() == public.public_numbers()
    assert made.nodes["party-0"].private.stat().st_mode & 0o077 == 0  # readable by its owner only
