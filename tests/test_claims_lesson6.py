"""Lesson 6 for real, at the notebook's settings on another seed than the notebook's (whose run
nbval checks through the notebook's own claims cell): a SuperLink and three SuperNodes on
loopback, `flwr run`, one party stopped mid-run. The lesson's claims, and the processes by PID."""

import dataclasses

import numpy as np
import psutil
import pytest

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson6_flower import (Settings, claims, comparable_before_stop,
                                                      full_round_overhead, run_claims_experiment)

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
    running = []
    for pid in result.flower.pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    assert running == []


def test_comparable_cells_by_hand():
    settings = Settings(rounds=3, stop_party=1, stop_before_message=2)
    # rounds 0-2 digest the same consensus on both sides (round 2's still holds party 1's last logits),
    # except that party 1 reports nothing from round 2 on; round 3's consensus lacks party 1 on Flower only
    expected = np.array([[1, 1, 1], [1, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(comparable_before_stop(settings, (4, 3)), expected)


def test_full_round_overhead_by_hand():
    class Run:
        party_names = ("a", "b")
        messages = [{"replied": [0, 1]}, {"replied": [0, 1]}, {"replied": [0]}]

        def bytes_per_message(self):
            return [(100, 200), (2 * 10 * 16 * 4 + 60, 2 * 10 * 16 * 4 + 4), (0, 0)]

    assert full_round_overhead(Run(), subset_size=10) == pytest.approx(64 / (2 * 2 * 10 * 16 * 4))


@pytest.mark.parametrize("change, message", [
    (dict(seed=-1), "seed must be an integer >= 0"),
    (dict(chosen=(0,)), "chosen must name at least two different parties"),
    (dict(chosen=(0, 0)), "chosen must name at least two different parties"),
    (dict(chosen=(0, 10)), r"chosen must hold lesson 5's party numbers in \[0, 9\]"),
    (dict(subset_size=0), "subset_size must be an integer >= 1"),
    (dict(digest_epochs=-1), "digest_epochs must be an integer >= 0"),
    (dict(rounds=0), "rounds must be an integer >= 1"),
    (dict(stop_party=3), r"stop_party must be a position in chosen, in \[0, 2\]"),
    (dict(stop_before_message=4), r"stop_before_message must be in \[1, rounds = 3\]"),
    (dict(min_replies=3), r"min_replies must be in \[1, 2\]"),
    (dict(timeout=0.0), "timeout must be a finite number > 0"),
    (dict(grace=float("nan")), "grace must be a finite number > 0"),
])
def test_settings_reject_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        Settings(**change)
