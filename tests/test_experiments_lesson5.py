"""Lesson 5's experiments module: the settings' validation, the gain split by hand, and the
plumbing that must build lesson 6's parties and pass the settings through to ``run_fedmd``."""

import numpy as np
import pytest
import torch

from fedkd_lessons.data import ImageSplit
from fedkd_lessons.experiments.lesson5_fedmd import (
    CHANCE, Settings, TransferResult, gain_split, lesson_result, make_lesson_parties, make_letters, run_rounds,
    transfer_learn,
)
from fedkd_lessons.fedmd import FedMDHistory
from fedkd_lessons.models import make_fedmd_zoo


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("parties", 1, "parties must be an integer >= 2"),
    ("parties", 11, "parties must be at most 10"),
    ("letters_per_class", 0, "letters_per_class must be an integer >= 1"),
    ("evaluation_per_class", 0, "evaluation_per_class must be an integer >= 1"),
    ("public_epochs", -1, "public_epochs must be an integer >= 0"),
    ("private_epochs", 2.5, "private_epochs must be an integer >= 0"),
    ("pooled_epochs", 0, "pooled_epochs must be an integer >= 1"),
    ("rounds", 0, "rounds must be an integer >= 1"),
    ("subset_size", 0, "subset_size must be an integer >= 1"),
    ("digest_epochs", -1, "digest_epochs must be an integer >= 0"),
    ("revisit_epochs", True, "revisit_epochs must be an integer >= 0"),
    ("softened_temperature", 0.0, "softened_temperature must be a finite number > 0"),
    ("softened_temperature", float("nan"), "softened_temperature must be a finite number > 0"),
    ("other_subset_sizes", (0,), "other_subset_sizes must be an integer >= 1"),
    ("other_subset_sizes", (500,), "other_subset_sizes must be distinct and differ from subset_size"),
    ("other_subset_sizes", (50, 50), "other_subset_sizes must be distinct"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_subset_sizes_are_sorted_and_include_the_main_one():
    assert Settings(subset_size=200, other_subset_sizes=(900, 20)).subset_sizes == (20, 200, 900)


def history(rows):
    rows = np.array(rows, dtype=float)
    return FedMDHistory(rows, tuple(f"p{k}" for k in range(rows.shape[1])), [], {})


def test_gain_split_by_hand():
    # three parties; round 0 then two rounds
    fedmd = history([[0.1, 0.5, 0.9], [0.3, 0.6, 0.9], [0.6, 0.7, 0.8]])
    control = history([[0.1, 0.5, 0.9], [0.2, 0.5, 0.9], [0.4, 0.6, 0.9]])
    own = history([[0.1, 0.5, 0.9], [0.2, 0.5, 0.9], [0.5, 0.5, 0.8]])
    split = gain_split(fedmd, control, own, np.array([1.0, 0.9, 0.95]))
    assert split.round_zero == pytest.approx(0.5)
    assert split.more_training == pytest.approx((0.4 + 0.6 + 0.9) / 3 - 0.5)
    assert split.consensus_gain == pytest.approx((0.2 + 0.1 - 0.1) / 3)
    assert split.over_own_logits == pytest.approx((0.1 + 0.2 + 0.0) / 3)
    assert split.over_round_zero == pytest.approx(0.7 - 0.5)
    assert split.under_upper_bound == pytest.approx(0.95 - 0.7)
    assert split.parties_below_control == 1  # the third party: 0.8 < 0.9
    assert split.smallest_party_gain == pytest.approx(-0.1)
    assert split.parties_below_chance_at_round_zero == 1  # 0.1 < 1/6
    assert CHANCE == pytest.approx(1 / 6)


def test_gain_split_rejects_runs_from_different_starts():
    fedmd = history([[0.1, 0.5], [0.3, 0.6]])
    other = history([[0.2, 0.5], [0.3, 0.6]])
    with pytest.raises(ValueError, match="same transfer-learned parties"):
        gain_split(fedmd, other, fedmd, np.array([1.0, 1.0]))


def test_lesson_result_puts_fedmd_among_the_subset_sizes():
    settings = Settings(subset_size=500, other_subset_sizes=(1437, 50))
    runs = {name: history([[0.1, 0.2]]) for name in ("FedMD", "control", "own logits")}
    others = {1437: history([[0.3, 0.4]]), 50: history([[0.5, 0.6]])}
    result = lesson_result(settings, TransferResult(np.ones(2), np.ones(2)), runs, history([[0.1, 0.2]]), others)
    assert list(result.by_subset_size) == [50, 500, 1437]
    assert result.by_subset_size[500] is runs["FedMD"]
    assert result.own_logits is runs["own logits"] and result.control is runs["control"]


def test_parties_get_lesson_6s_initial_weights_and_letters():
    # lesson 6 seeds torch right before building the whole zoo; the parties must start from those weights
    settings = Settings(seed=3, parties=3, letters_per_class=1, evaluation_per_class=1)
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    torch.manual_seed(3)
    zoo = make_fedmd_zoo(num_classes=16, image_size=8)
    assert [p.name for p in parties] == [name for name, _ in zoo[:3]]
    for party, (_, model) in zip(parties, zoo):
        for mine, theirs in zip(party.model.parameters(), model.parameters()):
            assert torch.equal(mine, theirs)
    assert len(parties[2].private_labels) == 6 and torch.equal(parties[2].private_images, letters.private[2][0])


def test_run_rounds_passes_the_settings_and_the_changes_through():
    settings = Settings(parties=2, letters_per_class=2, evaluation_per_class=1, public_epochs=1, private_epochs=1,
                        pooled_epochs=1, rounds=2, subset_size=8, other_subset_sizes=(4,))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=generator)
    labels = torch.arange(40) % 10
    public = ImageSplit(images[:30], labels[:30], images[30:], labels[30:])
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    transfer = transfer_learn(parties, public, letters, settings)
    assert transfer.digit_accuracy.shape == transfer.upper_bound.shape == (2,)
    run = run_rounds(parties, public, letters, settings, progress=False, digest_target="none", subset_size=4)
    assert run.accuracy.shape == (settings.rounds + 1, 2)
    assert run.settings["subset_size"] == 4 and run.settings["digest_target"] == "none"
    assert run.settings["seed"] == settings.seed and run.settings["revisit_epochs"] == settings.revisit_epochs
