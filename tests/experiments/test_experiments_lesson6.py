"""Lesson 6's poisoning experiment, below its claims (tests/claims/test_claims_lesson6.py runs it
whole): where each seed's federation starts."""

import dataclasses

import torch

from fedkd_lessons.data.digits import load_digits_split
from fedkd_lessons.experiments.lesson5_fedmd import Settings as FedMDSettings, make_lesson_parties
from fedkd_lessons.experiments.lesson6_flower import PoisoningSettings, transfer_learned_federations


def test_each_seed_starts_from_lesson_5s_zoo_at_that_seed():
    # with no training, the parties hold their initial weights: seed s's must be lesson 5's chosen parties at
    # seed s (a seed moves the initialisation, not only the letters, batches and subsets)
    fedmd = FedMDSettings(parties=5, letters_per_class=4, evaluation_per_class=2, public_epochs=0, private_epochs=0)
    settings = PoisoningSettings(seed=3, seeds=2, chosen=(0, 2, 4), fedmd=fedmd)
    parties, letters = transfer_learned_federations(settings, load_digits_split())
    assert [[p.name for p in row] for row in parties] == [["mlp 32", "mlp 128-64", "cnn 8"]] * 2
    for seed, row, data in zip(settings.seed_list, parties, letters):
        zoo = make_lesson_parties(dataclasses.replace(fedmd, seed=seed), data, image_size=8)
        for party, reference in zip(row, [zoo[k] for k in settings.chosen]):
            weights, reference_weights = party.model.state_dict(), reference.model.state_dict()
            assert all(torch.equal(weights[name], reference_weights[name]) for name in weights)
    first, second = (row[0].model.state_dict() for row in parties)
    assert not all(torch.equal(first[name], second[name]) for name in first)
