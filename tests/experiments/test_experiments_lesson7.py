"""Lesson 7's experiment module: the settings' validation, the skewed private sets of the leak
experiment, and the whole lesson end to end at tiny settings (shapes and bookkeeping, not results)."""

import dataclasses

import numpy as np
import pytest
import torch

from fedkd_lessons.experiments.claims import claims_module
from fedkd_lessons.experiments.lesson5_fedmd import Settings as FedMDSettings, make_lesson_parties
from fedkd_lessons.experiments.lesson7_after_fedmd import (CHANCE, COMPARED, PRIVATE_CLASSES, Federations, Settings,
                                                           attack_success, build_federations, claims, method_runs,
                                                           run_claims_experiment, run_lesson, skewed_private_set)


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("seeds", 1, "seeds must be an integer >= 2"),
    ("fedmd", {"rounds": 3}, "fedmd must be a Settings"),
    ("fd_weight", -0.5, "fd_weight must be a finite number >= 0"),
    ("fd_temperature", 0.0, "fd_temperature must be a finite number > 0"),
    ("feddf_temperature", float("inf"), "feddf_temperature must be a finite number > 0"),
    ("era_temperature", -0.1, "era_temperature must be a finite number > 0"),
    ("noise_stds", (), r"noise_stds must be a list or tuple of at least 1 item\(s\)"),
    ("noise_stds", (0.0,), r"noise_stds\[0\] must be a finite number > 0"),
    ("noise_stds", (3.0, 1.0), "noise_stds must be distinct and increasing"),
    ("defended_noise_stds", (), r"defended_noise_stds must be a list or tuple of at least 1 item\(s\)"),
    ("defended_noise_stds", (5.0,), "defended_noise_stds must be distinct, increasing and among noise_stds"),
    ("favourite_letters", 0, "favourite_letters must be an integer >= 1"),
    ("favourite_letters", 11, "favourite_letters must be at most fedmd.letters_per_class"),
    ("other_letters", 10, "other_letters must be below favourite_letters"),
    ("attack_draws", 0, "attack_draws must be an integer >= 1"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match="^" + message):
        Settings(**{field: value})


def test_the_default_settings_use_lesson_5s_federation_on_five_seeds():
    settings = Settings()
    assert settings.seed_list == (0, 1, 2, 3, 4)
    assert settings.fedmd == FedMDSettings()
    assert settings.fedmd_at(3) == dataclasses.replace(FedMDSettings(), seed=3)
    assert settings.attack_noise_stds == (0.0, *settings.noise_stds)
    assert claims_module("7").Settings is Settings


def test_a_skewed_private_set_keeps_the_favourite_and_a_few_of_the_others():
    labels = torch.tensor(list(PRIVATE_CLASSES) * 10)
    images = torch.arange(len(labels)).float().view(-1, 1, 1, 1)
    kept_images, kept = skewed_private_set(images, labels, favourite=2, favourite_letters=10, other_letters=3)
    counts = torch.bincount(kept - PRIVATE_CLASSES[0], minlength=6)
    assert counts.tolist() == [3, 3, 10, 3, 3, 3]
    assert torch.equal(labels[kept_images.flatten().long()], kept)  # images travel with their labels


def test_each_seed_starts_from_lesson_5s_zoo_at_that_seed():
    # with no training, the federations hold their parties' initial weights: seed s's must be lesson 5's
    # zoo at seed s (a seed moves the initialisation, not only the letters and batches)
    fedmd = FedMDSettings(parties=3, letters_per_class=4, evaluation_per_class=2, public_epochs=0, private_epochs=0)
    settings = Settings(seed=4, seeds=2, fedmd=fedmd, favourite_letters=4, other_letters=1)
    federations = build_federations(settings, with_upper_bound=False)
    for seed, row, letters in zip(settings.seed_list, federations.parties, federations.letters):
        expected = make_lesson_parties(settings.fedmd_at(seed), letters, image_size=8)
        for party, reference in zip(row, expected):
            weights, reference_weights = party.model.state_dict(), reference.model.state_dict()
            assert all(torch.equal(weights[name], reference_weights[name]) for name in weights)
    first, second = (row[0].model.state_dict() for row in federations.parties)
    assert not all(torch.equal(first[name], second[name]) for name in first)


def test_the_lesson_runs_end_to_end_at_tiny_settings():
    fedmd = FedMDSettings(parties=3, letters_per_class=4, evaluation_per_class=2, public_epochs=1, private_epochs=1,
                          pooled_epochs=1, rounds=1, subset_size=30)
    settings = Settings(seeds=2, fedmd=fedmd, favourite_letters=4, other_letters=1, noise_stds=(5.0,),
                        defended_noise_stds=(5.0,), attack_draws=2)
    federations, result = run_lesson(settings, progress=False)
    assert result.digit_accuracy.shape == (2, 3) and result.upper_bound.shape == (3,)  # per seed; first seed only
    assert federations.favourites.shape == (2, 3)
    assert [len(p.private_labels) for p in federations.leak_parties[0]] == [4 + 5] * 3
    assert set(result.histories) == {"FedMD", "control", "FD", "FedDF", "DS-FL", "FedMD, noise 5"}
    for histories in result.histories.values():
        assert len(histories) == 2 and histories[0].accuracy.shape == (2, 3)
    assert result.private_only.shape == (2,)
    assert set(result.against_control()) == set(COMPARED)
    assert set(result.defence_cost()) == set(result.defended_against_control()) == {5.0}
    assert np.allclose(100 * result.defence_cost()[5.0].differences,
                       100 * (result.final("FedMD, noise 5") - result.final("FedMD")))
    above = result.attack_above_chance()
    assert list(above) == [0.0, 5.0] and np.allclose(above[5.0].differences, result.attack[:, 1] - CHANCE)
    assert result.attack.shape == (2, 2) and ((0 <= result.attack) & (result.attack <= 1)).all()
    assert all(np.isfinite(claim.value) for claim in claims(result))
    assert set(run_claims_experiment(settings).histories) == {"FedMD", "control", "FD", "FedDF", "DS-FL",
                                                            "FedMD, noise 5"}  # the strongest defended level
    assert 0 < CHANCE < 1
    assert len(method_runs(federations, settings)["FD"]) == 2
    assert set(method_runs(federations, settings, defended=())) == {"FedMD", "control", "FD", "FedDF", "DS-FL"}
    with pytest.raises(ValueError, match="defended must be among settings.defended_noise_stds"):
        method_runs(federations, settings, defended=(7.0,))


# --- Arguments that must agree: each rejection names the argument at fault ------------------------

def test_a_skewed_set_with_labels_of_another_length_is_rejected_by_name():
    labels = torch.tensor(list(PRIVATE_CLASSES) * 2)
    with pytest.raises(ValueError, match=r"^labels must give one label per image \(11\), got 12"):
        skewed_private_set(torch.zeros(11, 1, 8, 8), labels, favourite=0, favourite_letters=2, other_letters=1)


def _one_seed_of_federations():
    return Federations(None, [None], [[]], [[]], np.zeros((1, 0), dtype=int), np.zeros(0), None)


@pytest.mark.parametrize("function", [method_runs, attack_success])
def test_federations_built_for_other_seeds_are_rejected_by_name(function):
    with pytest.raises(ValueError, match=r"^federations must hold one row per seed of settings \(5, as "):
        function(_one_seed_of_federations(), Settings())


def test_run_lesson_names_a_defended_level_the_settings_lack_before_anything_trains():
    # at the lesson's settings: were the federations built first, this would take most of a minute
    with pytest.raises(ValueError, match=r"^defended must be among settings.defended_noise_stds"):
        run_lesson(Settings(), progress=False, defended=(7.0,))
