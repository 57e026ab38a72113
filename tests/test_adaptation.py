import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from torch import nn

from fedkd_lessons.adaptation import (METHODS, AdaptationSettings, ExperimentSettings, Training, adapt, adapt_all,
                                      adapt_all_early_stopped, adapt_distill, adapt_ewc, adapt_finetune,
                                      adapt_freeze_base, adapt_local, adaptation_curve, code_equivalent_alpha,
                                      evaluate_methods, ewc_penalty, ewc_stability_ratio, fisher_diagonal,
                                      run_adaptation_experiment, split_for_validation, subsample_clients)
from fedkd_lessons.fedavg import FedAvgSettings
from fedkd_lessons.adaptation import mirror_clients
from fedkd_lessons.data.partition import Federation
from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.engine.models import accuracy, make_mlp, predict_logits


@pytest.fixture
def client():
    """A tiny hand-made client: 12 random 2x2 'images' of 3 classes, and a small global MLP."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(12, 1, 2, 2, generator=generator)
    labels = torch.arange(12) % 3
    torch.manual_seed(0)
    global_model = make_mlp(hidden=(5,), num_classes=3, image_size=2)
    return global_model, images, labels


def fake_fisher(model, value=0.1):
    return {name: torch.full_like(p, value) for name, p in model.named_parameters()}


def states_equal(a, b):
    return all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


FAST = {"epochs": 3, "lr": 0.1, "batch_size": 5}
QUICK = AdaptationSettings(Training(**FAST), Training(**FAST))  # every method at FAST


@pytest.mark.parametrize("method", METHODS)
def test_every_method_leaves_the_global_model_unchanged_and_returns_a_new_trained_model(client, method):
    global_model, images, labels = client
    before = copy.deepcopy(global_model)
    adapted = adapt(method, global_model, images, labels, dataclasses.replace(QUICK, ewc_lambda=1.0, alpha=0.5),
                    fisher=fake_fisher(global_model) if method == "ewc" else None)
    assert states_equal(global_model, before)
    assert all(p.requires_grad for p in global_model.parameters())
    assert adapted is not global_model
    assert not states_equal(adapted, global_model)


def test_freeze_base_leaves_all_but_the_last_layer_bit_identical(client):
    global_model, images, labels = client
    adapted = adapt_freeze_base(global_model, images, labels, QUICK.training)
    names = [name for name, _ in global_model.named_parameters()]
    last = names[-2:]  # the final nn.Linear's weight and bias
    for name in names:
        same = torch.equal(global_model.state_dict()[name], adapted.state_dict()[name])
        assert same == (name not in last), name
    assert all(p.requires_grad for p in adapted.parameters())


def test_ewc_with_lambda_zero_equals_finetune_for_the_same_seed(client):
    global_model, images, labels = client
    ewc = adapt_ewc(global_model, images, labels, fake_fisher(global_model, 3.0), QUICK.training, ewc_lambda=0.0, seed=4)
    finetune = adapt_finetune(global_model, images, labels, QUICK.training, seed=4)
    for p, q in zip(ewc.parameters(), finetune.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_distill_with_alpha_zero_equals_finetune_for_the_same_seed(client):
    global_model, images, labels = client
    distill = adapt_distill(global_model, images, labels, QUICK.training, alpha=0.0, temperature=6.0, seed=2)
    finetune = adapt_finetune(global_model, images, labels, QUICK.training, seed=2)
    for p, q in zip(distill.parameters(), finetune.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_distill_with_alpha_one_keeps_the_teachers_predictions(client):
    # Soft targets only, student = teacher at the start: the gradient is zero, nothing moves.
    global_model, images, labels = client
    distill = adapt_distill(global_model, images, labels, QUICK.training, alpha=1.0)
    torch.testing.assert_close(predict_logits(distill, images), predict_logits(global_model, images), atol=1e-5, rtol=0)


def test_ewc_penalty_equals_a_hand_computation():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 3.0]]))
        model.bias.copy_(torch.tensor([2.0]))
    anchor = {"weight": torch.tensor([[0.0, 1.0]]), "bias": torch.tensor([2.5])}
    fisher = {"weight": torch.tensor([[2.0, 0.5]]), "bias": torch.tensor([4.0])}
    # 10/2 * (2 * 1^2 + 0.5 * 2^2 + 4 * 0.5^2) = 5 * (2 + 2 + 1) = 25
    assert ewc_penalty(model, anchor, fisher, 10.0).item() == pytest.approx(25.0)
    assert ewc_penalty(model, anchor, fisher, 0.0).item() == 0.0


def test_ewc_penalty_gradient_is_lambda_fisher_times_displacement():
    model = nn.Linear(3, 2)
    anchor = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    fisher = {name: torch.rand_like(p) for name, p in model.named_parameters()}
    ewc_penalty(model, anchor, fisher, 7.0).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 7.0 * fisher[name] * p.detach())


def test_fisher_diagonal_matches_the_closed_form_of_a_softmax_regression():
    # For logits W x + b: d(-log p_y)/dW = (p - e_y) x^T and d/db = p - e_y.
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=generator)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    model = nn.Linear(4, 3)
    p = torch.softmax(model(x), dim=1).detach()
    residual = p - F.one_hot(y, 3).float()
    per_example_w = residual[:, :, None] * x[:, None, :]
    fisher = fisher_diagonal(model, x, y)
    torch.testing.assert_close(fisher["weight"], (per_example_w**2).mean(0))
    torch.testing.assert_close(fisher["bias"], (residual**2).mean(0))
    # The paper's code squares batch gradients: one batch of all N gives the squared mean gradient.
    batch = fisher_diagonal(model, x, y, batch_size=7)
    torch.testing.assert_close(batch["weight"], per_example_w.mean(0) ** 2)
    assert model.weight.grad is None  # the model itself is left alone


def test_ewc_stability_ratio_and_the_divergence_it_predicts(client):
    global_model, images, labels = client
    fisher = {name: torch.zeros_like(p) for name, p in global_model.named_parameters()}
    fisher["1.weight"][0, 0] = 0.5
    assert ewc_stability_ratio(fisher, 100.0, 0.01) == pytest.approx(0.5)
    # Past 2 (1 + momentum) the stiffest weight oscillates with growing amplitude; below it, it settles.
    wild = adapt_ewc(global_model, images, labels, fisher, Training(20, 0.01, 12), ewc_lambda=2000.0)
    calm = adapt_ewc(global_model, images, labels, fisher, Training(20, 0.01, 12), ewc_lambda=100.0)
    start = global_model.state_dict()["1.weight"][0, 0]
    assert ewc_stability_ratio(fisher, 2000.0, 0.01) == pytest.approx(10.0)
    assert (wild.state_dict()["1.weight"][0, 0] - start).abs() > 100
    assert (calm.state_dict()["1.weight"][0, 0] - start).abs() < 1


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
def test_code_equivalent_alpha_reproduces_the_papers_kl_mean_loss():
    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(6, 10, generator=generator), torch.randn(6, 10, generator=generator)
    targets = torch.randint(0, 10, (6,), generator=generator)
    temperature, alpha = 6.0, 0.95
    # Yu et al.'s criterion_kd: nn.KLDivLoss() (mean over all N*C entries) * alpha T^2 + CE * (1 - alpha).
    code = (nn.KLDivLoss()(F.log_softmax(student / temperature, 1), F.softmax(teacher / temperature, 1))
            * alpha * temperature**2 + F.cross_entropy(student, targets) * (1 - alpha))
    alpha_prime, scale = code_equivalent_alpha(alpha, temperature, 10)
    assert alpha_prime == pytest.approx(0.095 / 0.145) and scale == pytest.approx(0.145)
    ours = distillation_loss(student, teacher, targets, temperature=temperature, alpha=alpha_prime)
    torch.testing.assert_close(code, scale * ours)


def test_local_ignores_the_global_weights_but_not_the_seed(client):
    global_model, images, labels = client
    other = make_mlp(hidden=(5,), num_classes=3, image_size=2)
    a = adapt_local(global_model, images, labels, QUICK.local_training, seed=1)
    b = adapt_local(other, images, labels, QUICK.local_training, seed=1)
    c = adapt_local(global_model, images, labels, QUICK.local_training, seed=2)
    assert states_equal(a, b) and not states_equal(a, c)


def test_adapt_with_zero_epochs_returns_an_equal_copy(client):
    global_model, images, labels = client
    for method in ("finetune", "freeze_base", "distill"):
        assert states_equal(adapt(method, global_model, images, labels, QUICK.with_epochs(method, 0)), global_model)


def test_unknown_method_is_rejected_with_the_valid_names(client):
    with pytest.raises(ValueError, match="^method must be one of 'local', 'finetune', 'freeze_base', 'ewc', 'distill', got 'fine_tune'$"):
        adapt("fine_tune", *client)


def test_a_client_without_training_data_is_rejected(client):
    global_model, images, labels = client
    for method in METHODS:
        with pytest.raises(ValueError, match="no local training data"):
            adapt(method, global_model, images[:0], labels[:0], fisher=fake_fisher(global_model) if method == "ewc" else None)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "5000", True])
def test_lambda_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="ewc_lambda must be a finite number >= 0"):
        AdaptationSettings(ewc_lambda=bad)


@pytest.mark.parametrize("bad", [-1, 2.5, "3", None])
def test_epoch_count_out_of_range_is_rejected(bad):
    with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
        Training(epochs=bad, lr=0.1)
    for method in METHODS:
        with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
            QUICK.with_epochs(method, bad)


@pytest.mark.parametrize("field, value, message", [
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("lr", float("nan"), "lr must be a finite number > 0"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("momentum", 1.0, "momentum must be a number in \\[0, 1\\), got 1.0"),
    ("momentum", -0.1, "momentum must be a number in"),
])
def test_training_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Training(**{"epochs": 1, "lr": 0.1, field: value})


@pytest.mark.parametrize("field, value, message", [
    ("training", {"epochs": 1}, "training must be a Training"),
    ("local_training", None, "local_training must be a Training"),
    ("temperature", 0.0, "temperature must be a finite number > 0"),
    ("alpha", 1.5, "alpha must be a number in"),
])
def test_adaptation_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        AdaptationSettings(**{field: value})


@pytest.mark.parametrize("field, value, message", [
    ("num_clients", 1, "num_clients must be an integer >= 2"),
    ("concentration", 0.0, "concentration must be a finite number > 0"),
    ("min_samples", 0, "min_samples must be an integer >= 1"),
    ("test_share", 1.0, r"test_share must be a number in \(0, 1\), got 1.0"),
    ("public_fraction", 0.0, r"public_fraction must be a number in \(0, 1\), got 0.0"),
    ("min_test", 0, "min_test must be an integer >= 1"),
    ("hidden_units", 0, "hidden_units must be an integer >= 1"),
    ("fedavg", {"rounds": 3}, "fedavg must be a FedAvgSettings"),
    ("adaptation", QUICK.training, "adaptation must be an? AdaptationSettings"),
])
def test_experiment_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        ExperimentSettings(**{field: value})


def test_the_runners_reject_settings_of_the_wrong_kind_and_bad_seeds(client, digits):
    global_model, images, labels = client
    for method in (adapt_local, adapt_finetune, adapt_freeze_base, adapt_distill):
        with pytest.raises(ValueError, match="training must be a Training"):
            method(global_model, images, labels, FAST)
    with pytest.raises(ValueError, match="training must be a Training"):
        adapt_ewc(global_model, images, labels, fake_fisher(global_model), FAST)
    with pytest.raises(ValueError, match=r"^epochs_grid\[1\] must be an integer >= 0, got -1"):
        adaptation_curve("finetune", global_model, [(images, labels)], [(images, labels)], (0, -1), QUICK)
    with pytest.raises(ValueError, match="settings must be an? AdaptationSettings"):
        adapt("finetune", global_model, images, labels, {"epochs": 3})
    with pytest.raises(ValueError, match="settings must be an? AdaptationSettings"):
        adapt_all("finetune", global_model, [(images, labels)], FAST)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        adapt_all("finetune", global_model, [(images, labels)], QUICK, seed=-1)
    with pytest.raises(ValueError, match="settings must be an? ExperimentSettings"):
        run_adaptation_experiment(digits, QUICK)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        run_adaptation_experiment(digits, seed=-2)


def test_a_fisher_is_for_ewc_only(client):
    global_model, images, labels = client
    for method in ("local", "finetune", "freeze_base", "distill"):
        with pytest.raises(ValueError, match=f"fisher is for method 'ewc' only; method '{method}' does not use it"):
            adapt(method, global_model, images, labels, QUICK, fisher=fake_fisher(global_model))
        with pytest.raises(ValueError, match="fisher is for method 'ewc' only"):
            adapt_all(method, global_model, [(images, labels)], QUICK, fisher=fake_fisher(global_model))


def test_ewc_needs_a_fisher_of_the_right_shape(client):
    global_model, images, labels = client
    with pytest.raises(ValueError, match="needs fisher"):
        adapt("ewc", global_model, images, labels)
    wrong = fake_fisher(global_model)
    wrong["1.weight"] = torch.ones(2, 2)
    with pytest.raises(ValueError, match="shape"):
        adapt("ewc", global_model, images, labels, fisher=wrong)
    negative = fake_fisher(global_model, -1.0)
    with pytest.raises(ValueError, match=">= 0"):
        adapt("ewc", global_model, images, labels, fisher=negative)


def test_subsample_clients_keeps_at_most_size_examples(client):
    _, images, labels = client
    cut = subsample_clients([(images, labels), (images[:3], labels[:3])], 5, seed=0)
    assert [len(y) for _, y in cut] == [5, 3]
    assert all(any(torch.equal(row, full) for full in images) for row in cut[0][0])


def test_evaluate_methods_and_the_zero_epoch_curve_point(client):
    global_model, images, labels = client
    clients = [(images[:8], labels[:8]), (images[4:], labels[4:])]
    tests = [(images[8:], labels[8:]), (images[:4], labels[:4])]
    scores = evaluate_methods(global_model, clients, tests, QUICK, methods=("finetune", "distill"),
                              fisher=fake_fisher(global_model), progress=False)  # the fisher reaches no method here
    assert set(scores) == {"global", "finetune", "distill"} and all(v.shape == (2,) for v in scores.values())
    curve = adaptation_curve("finetune", global_model, clients, tests, (0, FAST["epochs"]), QUICK, progress=False)
    assert curve.shape == (2, 2)
    np.testing.assert_array_equal(curve[0], scores["global"])
    np.testing.assert_allclose(curve[1], scores["finetune"])
    with pytest.raises(ValueError, match="needs fisher"):
        evaluate_methods(global_model, clients, tests, QUICK, methods=("ewc",), progress=False)
    with pytest.raises(ValueError, match=r"^methods\[0\] must be one of 'local', .*got 'fine-tune'"):
        evaluate_methods(global_model, clients, tests, QUICK, methods=("fine-tune",), progress=False)
    with pytest.raises(ValueError, match="client_train and client_test must list the same clients"):
        evaluate_methods(global_model, clients, tests[:1], QUICK, methods=("finetune",), progress=False)


def test_distillation_improves_mean_local_accuracy_over_the_global_model(digits):
    """Fixed seed, Dirichlet(0.5) over 10 clients, an early global model (3 FedAvg rounds) so there is
    room to gain. One-sided sign test over the local test images whose verdict changes."""
    alpha_prime, _ = code_equivalent_alpha()
    settings = AdaptationSettings(alpha=alpha_prime)
    experiment = run_adaptation_experiment(digits, ExperimentSettings(concentration=0.5, fedavg=FedAvgSettings(rounds=3),
                                                                      adaptation=settings),
                                           methods=("distill",), seed=0, progress=False)
    fixed = broken = 0
    for k, (train, test) in enumerate(zip(experiment.federation.train, experiment.federation.test)):
        student = adapt("distill", experiment.global_model, *train, settings, seed=k)
        before = predict_logits(experiment.global_model, test[0]).argmax(1) == test[1]
        after = predict_logits(student, test[0]).argmax(1) == test[1]
        fixed += int((after & ~before).sum())
        broken += int((before & ~after).sum())
    gain = experiment.accuracies["distill"] - experiment.accuracies["global"]
    assert gain.mean() > 0
    assert binomtest(fixed, fixed + broken, 0.5, alternative="greater").pvalue < 0.01
    assert (gain > 0).sum() > (gain < 0).sum()


def test_early_stopping_keeps_each_clients_best_validation_epoch():
    torch.manual_seed(0)
    start = make_mlp((16,))
    generator = torch.Generator().manual_seed(3)
    prototypes = torch.randn(10, 1, 8, 8, generator=generator)
    sets = []
    for n in (12, 20, 30):  # learnable clients: noisy copies of one prototype per class
        labels = torch.randint(0, 10, (n,), generator=generator)
        sets.append((prototypes[labels] + 0.8 * torch.randn(n, 1, 8, 8, generator=generator), labels))
    settings = AdaptationSettings(training=Training(epochs=4, lr=0.05))
    stopped = adapt_all_early_stopped("finetune", start, sets, settings, validation_share=0.25, seed=5)
    assert stopped.validation_sizes.tolist() == [3, 5, 8]
    for k, (images, labels) in enumerate(sets):
        fit, held = split_for_validation(images, labels, 0.25, seed=5 + k)
        # the reference: adapt for each epoch count separately, score on the validation split
        scores = [accuracy(start, *held)] + [
            float(adapt_all("finetune", start, [fit], settings.with_epochs("finetune", e), seed=5 + k)
                  .accuracy_per_model([held])[0])
            for e in range(1, 5)]
        assert stopped.epochs[k] == int(np.argmax(scores))  # the first best: the fewest epochs among ties
        if stopped.epochs[k] > 0:
            again = adapt_all("finetune", start, [fit], settings.with_epochs("finetune", int(stopped.epochs[k])),
                              seed=5 + k)
            for name, value in again.parameters.items():
                torch.testing.assert_close(stopped.models.parameters[name][k], value[0], atol=1e-6, rtol=1e-5)
    assert stopped.epochs.max() > 0


def test_a_client_too_small_to_hold_out_validation_is_rejected():
    with pytest.raises(ValueError, match="a client with 1 training examples cannot hold out 1"):
        split_for_validation(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long), 0.2)
    with pytest.raises(ValueError, match="early stopping is for the methods that start from the global model"):
        adapt_all_early_stopped("local", make_mlp((8,)), [(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))])


def test_mirror_clients_flips_only_the_chosen_clients_images_left_to_right():
    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    labels = torch.tensor([4, 7])
    federation = Federation([(images, labels), (images + 1, labels)], [(images + 2, labels), (images + 3, labels)],
                            [np.arange(2), np.arange(2)], [np.arange(2), np.arange(2)])
    mirrored = mirror_clients(federation, [np.int64(1)])
    # by hand: the row [0, 1, 2] of a mirrored image reads [2, 1, 0]
    assert mirrored.train[1][0][0, 0, 0].tolist() == [3.0, 2.0, 1.0]
    assert mirrored.test[1][0][0, 0, 1].tolist() == [8.0, 7.0, 6.0]
    torch.testing.assert_close(mirrored.train[0][0], images)
    torch.testing.assert_close(mirrored.train[1][1], labels)
    assert mirror_clients(federation, ()) == federation
    for bad in ([2], [0, 0]):
        with pytest.raises(ValueError, match=r"^clients must be distinct indices in range\(2\)"):
            mirror_clients(federation, bad)
    with pytest.raises(ValueError, match=r"^clients\[0\] must be an integer >= 0, got -1"):
        mirror_clients(federation, [-1])
