"""Lesson 4's settings object and the small helpers of its experiments module, checked against
independent references (numpy medians, closed forms, the old settings dicts)."""

import dataclasses

import numpy as np
import pytest
import torch

from fedkd_lessons.adaptation import (ADAPTATION_DEFAULTS, DISTILL_ALPHA, EWC_LAMBDA, FEDAVG_SETTINGS, LOCAL_DEFAULTS,
                                      AdaptationExperiment, fisher_diagonal)
from fedkd_lessons.data import Federation
from fedkd_lessons.experiments.lesson4_adaptation import Settings, dp_clip_norm, max_fisher, paper_lambda_ewc
from fedkd_lessons.federated import FedAvgHistory
from fedkd_lessons.models import make_mlp


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("num_clients", 1, "num_clients must be an integer >= 2"),
    ("dirichlet_alpha", 0.0, "dirichlet_alpha must be a finite number > 0"),
    ("min_samples", 0, "min_samples must be an integer >= 1"),
    ("test_share", 1.0, r"test_share must be in \(0, 1\)"),
    ("test_share", 1.5, r"test_share must be a number in \[0, 1\]"),
    ("min_test", 0, "min_test must be an integer >= 1"),
    ("public_fraction", 0.0, r"public_fraction must be in \(0, 1\)"),
    ("hidden_units", 0, "hidden_units must be an integer >= 1"),
    ("rounds", 0, "rounds must be an integer >= 1"),
    ("client_fraction", 0.0, r"client_fraction must be in \(0, 1\]"),
    ("client_fraction", 2.0, r"client_fraction must be a number in \[0, 1\]"),
    ("fedavg_local_epochs", 0, "fedavg_local_epochs must be an integer >= 1"),
    ("fedavg_lr", -0.1, "fedavg_lr must be a finite number > 0"),
    ("fedavg_batch_size", 0, "fedavg_batch_size must be an integer >= 1"),
    ("momentum", 1.0, r"momentum must be in \[0, 1\)"),
    ("momentum", -0.5, r"momentum must be a number in \[0, 1\]"),
    ("adapt_epochs", 0, "adapt_epochs must be an integer >= 1"),
    ("adapt_lr", float("nan"), "adapt_lr must be a finite number > 0"),
    ("adapt_batch_size", 0, "adapt_batch_size must be an integer >= 1"),
    ("local_epochs", 0, "local_epochs must be an integer >= 1"),
    ("local_lr", 0.0, "local_lr must be a finite number > 0"),
    ("local_batch_size", 0, "local_batch_size must be an integer >= 1"),
    ("paper_ewc_lambda", float("inf"), "paper_ewc_lambda must be a finite number > 0"),
    ("ewc_lambda", 0.0, "ewc_lambda must be a finite number > 0"),
    ("temperature", 0.0, "temperature must be a finite number > 0"),
    ("paper_distill_alpha", 1.2, r"paper_distill_alpha must be a number in \[0, 1\]"),
    ("num_classes", 1, "num_classes must be an integer >= 2"),
    ("shots", 0, "shots must be an integer >= 1"),
    ("shots", 7, "shots must be one of sizes"),
    ("epochs_grid", (5,), "epochs_grid must hold at least two increasing"),
    ("epochs_grid", (5, 2), "epochs_grid must hold at least two increasing"),
    ("epochs_grid", (-1, 2), "epochs_grid must be an integer >= 0"),
    ("sizes", (), "sizes must hold increasing"),
    ("sizes", (20, 10), "sizes must hold increasing"),
    ("sizes", (0, 10), "sizes must be an integer >= 1"),
    ("dp_noise_std", 0.0, "dp_noise_std must be a finite number > 0"),
    ("sweep_temperatures", (), "sweep_temperatures needs at least one"),
    ("sweep_temperatures", (1.0, -3.0), "sweep_temperatures must be a finite number > 0"),
    ("sweep_alphas", (0.5, 1.5), r"sweep_alphas must be a number in \[0, 1\]"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_settings_are_the_package_defaults():
    # the existing dicts keep serving their callers; the Settings object must not drift from them
    settings = Settings()
    assert settings.fedavg == FEDAVG_SETTINGS
    assert settings.adaptation == ADAPTATION_DEFAULTS
    assert settings.local == LOCAL_DEFAULTS
    assert settings.paper_ewc_lambda == EWC_LAMBDA and settings.paper_distill_alpha == DISTILL_ALPHA


def test_derived_settings_by_hand():
    settings = Settings()
    # alpha' = (alpha / C) / (alpha / C + 1 - alpha) = 0.095 / 0.145
    assert settings.distill_alpha == pytest.approx(0.095 / 0.145)
    assert settings.momentum_limit == pytest.approx(3.8)
    assert settings.alpha_grid == (0.25, 0.5, pytest.approx(0.095 / 0.145), 0.95)
    assert dataclasses.replace(settings, dp_noise_std=0.01).dp_run == "DP (sigma = 0.01)"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 3


def test_dp_clip_norm_is_the_median_update_norm():
    history = FedAvgHistory(update_norms=[np.array([0.5, 1.0, 3.0]), np.array([0.2, 2.0])])
    experiment = AdaptationExperiment(None, None, None, None, history, {}, {})
    assert dp_clip_norm(experiment) == pytest.approx(round(float(np.median([0.5, 1.0, 3.0, 0.2, 2.0])), 2))


def test_max_fisher():
    fisher = {"a": torch.tensor([[0.1, 0.7], [0.0, 0.2]]), "b": torch.tensor([0.3])}
    assert max_fisher(fisher) == pytest.approx(0.7)


def _tiny_run(seed=0):
    """Two clients of random 8x8 images and a random MLP, its Fisher on their pooled data."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(40, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 10, (40,), generator=generator)
    torch.manual_seed(seed)
    model = make_mlp(hidden=(8,))
    clients = [(images[:20], labels[:20]), (images[20:], labels[20:])]
    federation = Federation(clients, clients, [], [])
    return AdaptationExperiment(federation, None, None, model, FedAvgHistory(), fisher_diagonal(model, images, labels), {})


def test_paper_lambda_ewc_stable_and_diverged_by_the_closed_form_limit():
    run = _tiny_run()
    largest = max_fisher(run.fisher)
    settings = Settings(adapt_epochs=5)
    # the lambda at which lr * lambda * max F is a tenth of, and ten times, the momentum limit 2 (1 + beta)
    stable = dataclasses.replace(settings, paper_ewc_lambda=0.1 * settings.momentum_limit / (settings.adapt_lr * largest))
    unstable = dataclasses.replace(settings, paper_ewc_lambda=10 * settings.momentum_limit / (settings.adapt_lr * largest))
    calm, wild = paper_lambda_ewc({"run": run}, stable)["run"], paper_lambda_ewc({"run": run}, unstable)["run"]
    assert calm["ratio"] == pytest.approx(0.1 * settings.momentum_limit)
    assert wild["ratio"] == pytest.approx(10 * settings.momentum_limit)
    assert calm["max_fisher"] == pytest.approx(largest)
    assert calm["largest_change"] < 10 and calm["accuracy"].shape == (2,)
    assert not wild["largest_change"] < 1000  # huge, or inf for NaN weights
