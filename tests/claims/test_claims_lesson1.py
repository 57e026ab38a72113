"""Lesson 1's claims at the notebook's settings on another seed than the notebook's (which nbval
checks through the notebook's own claims cell), and the settings' validation."""

import dataclasses

import pytest
import torch

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson1_temperature import Settings, claims, run_claims_experiment, similarity_margins


def test_the_claims_hold_on_another_seed():
    settings = dataclasses.replace(Settings(), seed=Settings().seed + 1)
    assert_claims(claims(run_claims_experiment(settings)))


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("hidden_units", 0, "hidden_units must be an integer >= 1"),
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("entropy_temperatures", (1.0,), r"entropy_temperatures must be a list or tuple of at least 2 item\(s\)"),
    ("entropy_temperatures", (1.0, -2.0), r"entropy_temperatures\[1\] must be a finite number > 0"),
    ("entropy_temperatures", (4.0, 1.0), "entropy_temperatures must be increasing"),
    ("dark_knowledge_temperature", float("inf"), "dark_knowledge_temperature must be a finite number > 0"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_similarity_margin_by_hand():
    # Two test digits of class 0 whose logits favour class 2 over class 1; at T = 1.
    logits = torch.tensor([[5.0, 1.0, 2.0], [5.0, 0.0, 1.0]])
    labels = torch.tensor([0, 0])
    p = torch.softmax(logits, dim=1).mean(dim=0)
    assert similarity_margins(logits, labels, 1.0, pairs=((0, 2),)) == pytest.approx([float(p[2] - p[1])])
    assert similarity_margins(logits, labels, 1.0, pairs=((0, 1),))[0] < 0
