"""Lesson 4's settings object and the small helpers of its experiments module, checked against
independent references (numpy medians, closed forms, the package's settings)."""

import dataclasses

import numpy as np
import pytest
import torch

from fedkd_lessons.adaptation import (ADAPTATION, DISTILL_ALPHA, EWC_LAMBDA, LOCAL, AdaptationExperiment,
                                      AdaptationSettings, ExperimentSettings, fisher_diagonal)
from fedkd_lessons.data.partition import Federation
from fedkd_lessons.experiments.lesson4_adaptation import (ADAPTED, GROUPS, Settings, WhoGains, dp_clip_norm, max_fisher,
                                                          mirrored_clients, paper_lambda_ewc, worse_local_half)
from fedkd_lessons.fedavg import FedAvgHistory, FedAvgSettings
from fedkd_lessons.engine.models import make_mlp


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("num_clients", 1, "num_clients must be an integer >= 2"),
    ("concentration", 0.0, "concentration must be a finite number > 0"),
    ("mirrored_clients", 10, "mirrored_clients must be below num_clients"),
    ("mirrored_clients", 0, "mirrored_clients must be an integer >= 1"),
    ("min_samples", 0, "min_samples must be an integer >= 1"),
    ("test_share", 1.0, r"test_share must be a number in \(0, 1\), got 1.0"),
    ("test_share", 1.5, r"test_share must be a number in \(0, 1\), got 1.5"),
    ("min_test", 0, "min_test must be an integer >= 1"),
    ("public_fraction", 0.0, r"public_fraction must be a number in \(0, 1\), got 0.0"),
    ("hidden_units", 0, "hidden_units must be an integer >= 1"),
    ("rounds", 0, "rounds must be an integer >= 1"),
    ("client_fraction", 0.0, r"client_fraction must be a number in \(0, 1\], got 0.0"),
    ("client_fraction", 2.0, r"client_fraction must be a number in \(0, 1\], got 2.0"),
    ("fedavg_local_epochs", 0, "fedavg_local_epochs must be an integer >= 1"),
    ("fedavg_lr", -0.1, "fedavg_lr must be a finite number > 0"),
    ("fedavg_batch_size", 0, "fedavg_batch_size must be an integer >= 1"),
    ("momentum", 1.0, r"momentum must be a number in \[0, 1\), got 1.0"),
    ("momentum", -0.5, r"momentum must be a number in \[0, 1\), got -0.5"),
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
    ("epochs_grid", (5,), r"epochs_grid must be a list or tuple of at least 2 item\(s\)"),
    ("epochs_grid", (5, 2), "epochs_grid must hold at least two increasing"),
    ("epochs_grid", (-1, 2), r"epochs_grid\[0\] must be an integer >= 0, got -1"),
    ("sizes", (), r"sizes must be a list or tuple of at least 1 item\(s\)"),
    ("sizes", (20, 10), "sizes must hold increasing"),
    ("sizes", (0, 10), r"sizes\[0\] must be an integer >= 1, got 0"),
    ("dp_noise_std", 0.0, "dp_noise_std must be a finite number > 0"),
    ("sweep_temperatures", (), r"sweep_temperatures must be a list or tuple of at least 1 item\(s\)"),
    ("sweep_temperatures", (1.0, -3.0), r"sweep_temperatures\[1\] must be a finite number > 0, got -3.0"),
    ("sweep_alphas", (0.5, 1.5), r"sweep_alphas\[1\] must be a number in \[0, 1\], got 1.5"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_settings_are_the_package_defaults_but_for_the_lessons_lambda_and_alpha():
    settings = Settings()
    assert settings.fedavg == FedAvgSettings()
    assert settings.adaptation == AdaptationSettings(ADAPTATION, LOCAL, ewc_lambda=500.0, alpha=settings.distill_alpha)
    assert settings.experiment == ExperimentSettings(adaptation=settings.adaptation)
    assert settings.paper_ewc_lambda == EWC_LAMBDA and settings.paper_distill_alpha == DISTILL_ALPHA
    changed = dataclasses.replace(settings, fedavg_lr=0.05, adapt_epochs=7, local_batch_size=8, momentum=0.5)
    assert changed.fedavg.lr == 0.05 and changed.fedavg.momentum == 0.5
    assert changed.adaptation.training.epochs == 7 and changed.adaptation.local_training.batch_size == 8


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
    experiment = AdaptationExperiment(None, None, None, None, history, {}, {}, ExperimentSettings(), (), 0)
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
    return AdaptationExperiment(federation, None, None, model, FedAvgHistory(), fisher_diagonal(model, images, labels), {},
                                ExperimentSettings(), (), seed)


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


def test_worse_local_half_takes_the_lower_half_by_local_accuracy_ties_to_the_lower_client():
    np.testing.assert_array_equal(worse_local_half([0.9, 0.5, 0.7, 0.7, 1.0, 0.6]),
                                  [False, True, True, False, False, True])
    np.testing.assert_array_equal(worse_local_half([0.8, 0.8, 0.8]), [True, False, False])


def _who_gains():
    """Two seeds of four clients, numbers chosen to be worked by hand."""
    rows = [{"local": np.array([0.5, 0.9, 0.6, 1.0]), "global": np.array([0.7, 0.8, 0.7, 0.9])},
            {"local": np.array([0.8, 0.4, 0.9, 0.5]), "global": np.array([0.8, 0.8, 0.7, 0.6])}]
    for row in rows:
        for name in ADAPTED:
            row[name] = row["global"] + 0.05
    return WhoGains((0, 1), rows, [np.array([True, False, False, False]), np.array([False, False, True, False])])


def test_who_gains_by_hand():
    who = _who_gains()
    # worse half: seed 0 clients 0, 2 (gains +0.2, +0.1), seed 1 clients 1, 3 (+0.4, +0.1)
    # better half: seed 0 clients 1, 3 (-0.1, -0.1), seed 1 clients 0, 2 (0.0, -0.2)
    worse = who.interval("global", "worse local half")
    np.testing.assert_allclose(worse.differences, [0.15, 0.25])
    better = who.interval("global", "better local half")
    np.testing.assert_allclose(better.differences, [-0.1, -0.1])
    np.testing.assert_allclose(who.gap("global").differences, [0.25, 0.35])
    assert who.clients_moved("global", "worse local half") == (4, 0, 4)
    assert who.clients_moved("global", "better local half") == (0, 3, 4)
    # local beats global for seed 0 clients 1, 3 and seed 1 client 2; each method is global + 0.05:
    # seed 0: 0.85 < 0.9, 0.95 < 1.0; seed 1: 0.75 < 0.9, so none ends above its local model
    assert who.local_winners() == {name: (0, 3) for name in ADAPTED}
    np.testing.assert_array_equal(who.pooled("mirrored"), [True, False, False, False, False, False, True, False])
    assert set(who.comparisons()) == {f"{n} - local, {g}" for n in ("global",) + ADAPTED for g in GROUPS} | {
        "global - local: worse half's gain - better half's"}
    with pytest.raises(ValueError, match="group must be one of"):
        who.group(0, "middle")


def test_mirrored_clients_are_drawn_by_the_seed():
    settings = Settings()
    chosen = mirrored_clients(settings)
    assert len(chosen) == settings.mirrored_clients and len(set(chosen)) == len(chosen)
    assert all(0 <= k < settings.num_clients for k in chosen)
    assert mirrored_clients(dataclasses.replace(settings, seed=0)) == chosen


# --- arguments that do not fit together are named before any training ------------------------------

from fedkd_lessons.adaptation import METHODS  # noqa: E402
from fedkd_lessons.experiments.lesson4_adaptation import (AdaptationClaimsResult, SeedHeadlines,  # noqa: E402
                                                          adapt_clients, claims, early_stopped_finetune, federate,
                                                          headline_accuracies, result_of)


def _adapted_run():
    """:func:`_tiny_run` with every method's accuracies, as adapt_clients leaves them."""
    run = _tiny_run()
    run.accuracies.update({name: np.full(2, 0.5) for name in ("global",) + METHODS})
    return run


ADAPTATION_REJECTIONS = {
    "federate: mirrored clients of the federation":
        (lambda digits: federate(digits, Settings(), mirrored=(10,)),
         r"^mirrored must name clients below settings.num_clients \(10\), got \(10,\)"),
    "adapt_clients: a training set per client":
        (lambda digits: adapt_clients(_tiny_run(), Settings(), client_train=_tiny_run().federation.train[:1]),
         r"^client_train must hold one \(images, labels\) set per client of the experiment \(2\), got 1"),
    "early_stopped_finetune: a training set per client":
        (lambda digits: early_stopped_finetune(_tiny_run(), Settings(), client_train=_tiny_run().federation.train * 2),
         r"^client_train must hold one \(images, labels\) set per client of the experiment \(2\), got 4"),
    "headline_accuracies: every method's accuracies":
        (lambda digits: headline_accuracies(_tiny_run(), {"finetune": None, "distill": None}, Settings()),
         r"^experiment must hold the accuracies of the global model and every method, missing \['global', 'local'"),
    "headline_accuracies: the few-shot curves":
        (lambda digits: headline_accuracies(_adapted_run(), {"finetune": None}, Settings()),
         r"^curves must hold the few-shot curves of fine-tuning and distillation, missing \['distill'\]"),
    "max_fisher: at least one weight":
        (lambda digits: max_fisher({}), r"^fisher must hold the Fisher values of at least one weight"),
    "result_of: the DP run the claims compare":
        (lambda digits: result_of(_tiny_run(), {}, {"mean": _tiny_run()}, Settings(), SeedHeadlines((0, 1), []),
                                  _who_gains()),
         r"^runs must hold the plain run and the DP run the claims compare, missing \['DP \(sigma = 0.1\)'\]"),
    "claims: a result with its seeds":
        (lambda digits: claims(AdaptationClaimsResult(Settings(), {}, {})),
         r"^result must carry over_seeds and who_gains"),
}


@pytest.mark.parametrize("call, message", list(ADAPTATION_REJECTIONS.values()), ids=list(ADAPTATION_REJECTIONS))
def test_adaptation_arguments_that_do_not_fit_together_are_named(digits, call, message):
    with pytest.raises(ValueError, match=message):
        call(digits)


def test_aggregation_runs_name_an_unknown_aggregator():
    from fedkd_lessons.experiments.lesson4_adaptation import aggregation_runs

    with pytest.raises(ValueError, match=r"^aggregators\[1\] must be one of 'median', 'dp', got 'trimmed'"):
        aggregation_runs.check_arguments(aggregators=("dp", "trimmed"))
