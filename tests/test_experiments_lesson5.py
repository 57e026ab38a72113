"""Lesson 5's experiments module: the settings' validation, the gain split by hand, and the
plumbing that must build lesson 6's parties and pass the settings through to ``run_fedmd``."""

import numpy as np
import pytest
import torch

from fedkd_lessons.data import ImageSplit
from fedkd_lessons.experiments.lesson5_fedmd import (
    CHANCE, FedMDLessonResult, Settings, claims, gain_split, make_lesson_parties, make_letters, run_rounds,
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
    split = gain_split(fedmd, control)
    assert split.round_zero == pytest.approx(0.5)
    assert split.more_training == pytest.approx((0.4 + 0.6 + 0.9) / 3 - 0.5)
    assert split.consensus_gain == pytest.approx((0.2 + 0.1 - 0.1) / 3)
    assert split.over_round_zero == pytest.approx(0.7 - 0.5)
    assert split.parties_below_control == 1  # the third party: 0.8 < 0.9
    assert split.smallest_party_gain == pytest.approx(-0.1)
    assert split.worst_round_zero == pytest.approx(0.1)
    assert split.parties_below_chance_at_round_zero == 1  # 0.1 < 1/6
    assert CHANCE == pytest.approx(1 / 6)


def test_gain_split_rejects_runs_from_different_starts():
    with pytest.raises(ValueError, match="same transfer-learned parties"):
        gain_split(history([[0.1, 0.5], [0.3, 0.6]]), history([[0.2, 0.5], [0.3, 0.6]]))


def test_claims_read_the_split():
    # FedMD ahead of the control by 0.1 on average, one party behind; round 0 below chance
    fedmd = history([[0.0, 0.5], [0.6, 0.7]])
    control = history([[0.0, 0.5], [0.3, 0.8]])
    verdicts = {c.statement: c for c in claims(FedMDLessonResult(Settings(), np.ones(2), fedmd, control))}
    assert all(c.holds for c in verdicts.values())
    by_start = {statement.split(":")[0][:20]: c.value for statement, c in verdicts.items()}
    assert by_start["on average FedMD end"] == pytest.approx(100 * 0.1)
    assert by_start["the consensus helps "] == pytest.approx(100 * (0.1 - (-0.1)))
    assert by_start["most of FedMD's clim"] == pytest.approx((0.55 - 0.25) / (0.65 - 0.25))
    assert by_start["at round 0 some part"] == 0.0


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
    # three parties, so that one (mlp 128-64) has dropout, which draws from torch's global stream
    settings = Settings(parties=3, letters_per_class=2, evaluation_per_class=1, public_epochs=1, private_epochs=1,
                        pooled_epochs=1, rounds=2, subset_size=8, other_subset_sizes=(4,))
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=generator)
    labels = torch.arange(40) % 10
    public = ImageSplit(images[:30], labels[:30], images[30:], labels[30:])
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    transfer = transfer_learn(parties, public, letters, settings)
    assert transfer.digit_accuracy.shape == transfer.upper_bound.shape == (3,)
    # the pooled upper bound trains copies: without it the parties end exactly the same
    again = make_lesson_parties(settings, letters, image_size=8)
    assert transfer_learn(again, public, letters, settings, with_upper_bound=False).upper_bound is None
    for party, twin in zip(parties, again):
        for mine, theirs in zip(party.model.parameters(), twin.model.parameters()):
            assert torch.equal(mine, theirs)
    run = run_rounds(parties, public, letters, settings, progress=False, digest_target="none", subset_size=4)
    assert run.accuracy.shape == (settings.rounds + 1, 3)
    assert run.settings["subset_size"] == 4 and run.settings["digest_target"] == "none"
    assert run.settings["seed"] == settings.seed and run.settings["revisit_epochs"] == settings.revisit_epochs
