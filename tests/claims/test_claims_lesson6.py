"""Lesson 6 for real, at the notebook's settings on another seed than the notebook's (whose run
nbval checks through the notebook's own claims cell): a SuperLink and three SuperNodes on
loopback with TLS and SuperNode authentication, a fourth, registered party that cheats, an
unregistered one that is refused, `flwr run`, one party stopped mid-run. The lesson's claims, and
the processes by PID."""

import dataclasses

import numpy as np
import pytest
import torch
from process_helpers import still_running

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson6_flower import (PoisoningResult, PoisoningSettings, ScaleScores, Settings, claims,
                                                      comparable_before_stop, full_round_overhead,
                                                      run_claims_experiment)

SETTINGS = dataclasses.replace(Settings(), seed=Settings().seed + 1)


@pytest.fixture(scope="module")
def result():
    return run_claims_experiment(SETTINGS)


def test_the_claims_hold_on_another_seed(result):
    assert_claims(claims(result))


def test_the_stopped_party_is_dropped_from_its_stop_on(result):
    everyone = list(range(len(SETTINGS.chosen)))
    survivors = [k for k in everyone if k != SETTINGS.stop_party]
    replied = [m["replied"] for m in result.flower.messages]
    assert replied[: SETTINGS.stop_before_message] == [everyone] * SETTINGS.stop_before_message
    assert replied[SETTINGS.stop_before_message:] == [survivors] * (SETTINGS.rounds + 1 - SETTINGS.stop_before_message)
    assert np.isnan(result.flower.accuracy[SETTINGS.stop_before_message:, SETTINGS.stop_party]).all()
    assert not np.isnan(result.flower.accuracy[:, survivors]).any()


def test_only_indices_and_scores_cross_the_wire(result):
    first, subset = result.flower.messages[0], SETTINGS.subset_size
    assert max(first["bytes_down"].values()) < 8 * subset + 1000  # the indices only
    assert min(first["bytes_up"].values()) >= 4 * subset * 16  # the logits
    assert max(first["bytes_up"].values()) < 4 * subset * 16 + 1500  # and nothing as big as weights


def test_no_process_is_left_behind(result):
    # SuperLink, 3 SuperNodes, their SuperExecs, the ServerApp and a ClientApp per message and party
    assert len(result.flower.pids) >= 1 + 3 + 4 + 1 + 7
    assert still_running(result.flower.pids) == []


def test_comparable_cells_by_hand():
    settings = Settings(rounds=3, stop_party=1, stop_before_message=2)
    # rounds 0-2 digest the same consensus on both sides (round 2's still holds party 1's last logits),
    # except that party 1 reports nothing from round 2 on; round 3's consensus lacks party 1 on Flower only
    expected = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(comparable_before_stop(settings, (4, 3)), expected)
    with pytest.raises(ValueError, match=r"^shape must be \(rounds \+ 1, parties\) = \(4, 3\), got \(3, 3\)"):
        comparable_before_stop(settings, (3, 3))  # a table one round short


def test_full_round_overhead_by_hand():
    class Run:
        messages = [{"replied": [0, 1, 2]},
                    {"replied": [0, 1], "bytes_down": {"0": 700, "1": 700, "2": 700}, "bytes_up": {"0": 644, "1": 664}},
                    {"replied": [0]}]

    # per replying party of message 1 (party 2 was silent): (700 + 644) and (700 + 664) bytes
    # against 2 x 10 x 16 x 4 = 1,280
    assert full_round_overhead(Run(), subset_size=10) == pytest.approx((1344 + 1364) / 2 / 1280 - 1)

    class Silent:
        messages = [{"replied": [0]}, {"replied": []}, {"replied": [0]}]

    with pytest.raises(ValueError, match="no message between its first and last that a party answered"):
        full_round_overhead(Silent(), subset_size=10)


def test_the_cheater_is_dropped_and_the_intruder_refused(result):
    cheater = len(SETTINGS.chosen)
    reasons = {j: reason for j, party, reason in result.flower.dropped() if party == cheater}
    assert reasons[0].startswith("logits not finite") and reasons[1].startswith("spoofed id")
    assert result.flower.intruder["reason"] is not None


@pytest.mark.parametrize("change, message", [
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(chosen=(0,)), "chosen must name at least two different parties"),
    (dict(chosen=(0, 0)), "chosen must name at least two different parties"),
    (dict(chosen=(0, 10)), r"chosen must hold lesson 5's party numbers in \[0, 9\]"),
    (dict(subset_size=0), "subset_size must be an integer >= 1"),
    (dict(digest_epochs=-1), "digest_epochs must be an integer >= 0"),
    (dict(rounds=0), "rounds must be an integer >= 1"),
    (dict(stop_party=3), r"stop_party must be a position in chosen, in \[0, 2\]"),
    (dict(stop_before_message=3), r"stop_before_message must be in \[1, rounds = 2\]"),
    (dict(min_replies=3), r"min_replies must be in \[1, 2\]"),
    (dict(timeout=0.0), "timeout must be a finite number > 0"),
    (dict(grace=float("nan")), "grace must be a finite number > 0"),
    (dict(secure=False), "intruder needs secure=True"),
    (dict(cheater_faults="boom@1"), "faults must be 'KIND@MESSAGE'"),
])
def test_settings_reject_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        Settings(**change)


# ---- the poisoning experiment's pieces (its numbers are checked by the notebook's claims cell) ----

def test_scale_scores_changes_only_the_poisoners_scores():
    scores = torch.randn(4, 3, 16)
    tampered = ScaleScores(party=2, scale=-5.0)(scores)
    torch.testing.assert_close(tampered[2], -5.0 * scores[2])
    torch.testing.assert_close(tampered[[0, 1, 3]], scores[[0, 1, 3]])
    assert not torch.equal(scores[2], tampered[2])  # the honest scores are not changed in place


def test_poisoning_comparisons_are_paired_over_seeds_and_leave_out_the_poisoner():
    settings = PoisoningSettings(seeds=3, chosen=(0, 1, 2), poisoner=1)
    rows = {"honest, mean": [[0.5, 0.0, 0.7], [0.6, 0.0, 0.6], [0.4, 0.0, 0.8]],
            "honest, median": [[0.5, 1.0, 0.7], [0.6, 1.0, 0.5], [0.4, 1.0, 0.8]],
            "poisoned, mean": [[0.3, 0.0, 0.5], [0.4, 0.0, 0.4], [0.2, 0.0, 0.5]],
            "poisoned, median": [[0.5, 0.0, 0.7], [0.6, 0.0, 0.6], [0.4, 0.0, 0.7]]}
    result = PoisoningResult(settings, {k: np.array(v) for k, v in rows.items()}, np.zeros((3, 3)))
    np.testing.assert_allclose(result.others("honest, mean"), [0.6, 0.6, 0.6])  # party 1 left out
    attack = result.comparisons()["poisoned - honest, under the mean"]
    np.testing.assert_allclose(attack.differences, [-0.2, -0.2, -0.25])
    cost = result.comparisons()["nobody cheats: median - mean"]
    np.testing.assert_allclose(cost.differences, [0.0, -0.05, 0.0], atol=1e-12)


@pytest.mark.parametrize("change, message", [
    (dict(seeds=1), "seeds must be an integer >= 2"),
    (dict(chosen=(0, 1)), "chosen must name at least three different parties"),
    (dict(poisoner=5), r"poisoner must be a position in chosen, in \[0, 4\]"),
    (dict(scale=1.0), "scale must be a finite number other than 1"),
    (dict(scale=float("inf")), "scale must be a finite number other than 1"),
    (dict(robust_rule="mean"), "robust_rule must be one of"),
    (dict(rounds=0), "rounds must be an integer >= 1"),
])
def test_poisoning_settings_reject_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        PoisoningSettings(**change)
