"""The two-weight spring toy of lesson 4, checked against closed forms written out with numpy."""

import numpy as np
import pytest
import torch

from fedkd_lessons.experiments.lesson4_springs import (TwoWeightModel, adaptation_path, client_accuracy,
                                                       distillation_spring, ewc_spring, make_spring_toy, toy_fisher)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.fixture(scope="module")
def toy():
    return make_spring_toy(size=60, seed=3)


def test_the_two_class_logits_give_the_logistic_probability():
    model = TwoWeightModel((1.0, -2.0))
    inputs = torch.tensor([[0.5, 0.25], [2.0, 1.0]])
    probabilities = torch.softmax(model(inputs), dim=1)[:, 1].detach().numpy()
    np.testing.assert_allclose(probabilities, sigmoid(np.array([0.0, 0.0])), atol=1e-12)
    np.testing.assert_allclose(torch.softmax(TwoWeightModel((1.0, 1.0))(inputs), 1)[:, 1].detach().numpy(),
                               sigmoid(np.array([0.75, 3.0])))


def test_the_fisher_is_the_mean_squared_per_example_gradient(toy):
    inputs, labels = (t.numpy() for t in toy.public)
    p = sigmoid(inputs @ toy.global_weights.numpy())
    by_hand = (((p - labels)[:, None] * inputs) ** 2).mean(axis=0)  # d CE / d w_i = (p - y) x_i
    np.testing.assert_allclose(toy_fisher(toy)["weight"].numpy(), by_hand, rtol=1e-10)


def test_the_ewc_spring_is_lambda_half_sum_f_delta_squared(toy):
    fisher = toy_fisher(toy)["weight"].numpy()
    weights = np.array([[[2.0, 0.0], [3.0, 1.0]], [[0.0, -1.0], [2.5, 4.0]]])
    by_hand = 7.0 / 2 * (fisher * (weights - np.array([2.0, 0.0])) ** 2).sum(axis=-1)
    np.testing.assert_allclose(ewc_spring(toy, weights, 7.0), by_hand, rtol=1e-10)
    assert ewc_spring(toy, weights, 7.0)[0, 0] == 0


def test_the_distillation_spring_is_alpha_t2_times_the_bernoulli_kl_on_the_client_inputs(toy):
    inputs = toy.client[0].numpy()
    temperature, alpha = 3.0, 0.4
    q = sigmoid(inputs @ np.array([2.0, 0.0]) / temperature)
    for weights in ([2.0, 0.0], [1.0, 1.0], [-1.0, 3.0]):
        p = sigmoid(inputs @ np.array(weights) / temperature)
        kl = q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))
        assert distillation_spring(toy, np.array(weights), temperature, alpha) == pytest.approx(
            alpha * temperature ** 2 * kl.mean(), rel=1e-8, abs=1e-12)


def test_one_finetuning_step_is_the_hand_gradient_step(toy):
    inputs, labels = (t.numpy() for t in toy.client)
    w0 = np.array([2.0, 0.0])
    gradient = ((sigmoid(inputs @ w0) - labels)[:, None] * inputs).mean(axis=0)
    path = adaptation_path(toy, "finetune", steps=1, lr=0.3)
    np.testing.assert_allclose(path[0], w0)
    np.testing.assert_allclose(path[1], w0 - 0.3 * gradient, rtol=1e-10)


def test_the_springs_switch_off_at_lambda_zero_and_alpha_zero(toy):
    finetune = adaptation_path(toy, "finetune", steps=20)
    np.testing.assert_allclose(adaptation_path(toy, "ewc", steps=20, ewc_lambda=0.0), finetune)
    np.testing.assert_allclose(adaptation_path(toy, "distill", steps=20, alpha=0.0), finetune, rtol=1e-10)


def test_ewc_holds_the_stiff_weight_and_distillation_keeps_the_client_outputs():
    """The picture's story: on the default toy EWC lets weight 1 (weak spring) move and holds weight 2
    (stiff); distillation moves along the valley w1 + w2 ~ const that the correlated client inputs see."""
    toy = make_spring_toy()
    fisher = toy_fisher(toy)["weight"]
    assert fisher[1] > 3 * fisher[0]
    ewc = adaptation_path(toy, "ewc", ewc_lambda=3.0, steps=300)[-1]
    distill = adaptation_path(toy, "distill", temperature=2.0, alpha=0.7, steps=300)[-1]
    finetune = adaptation_path(toy, "finetune", steps=300)[-1]
    assert abs(ewc[0] - 2.0) > 2 * abs(ewc[1])
    assert distill[1] > 0.2 and abs(distill.sum() - 2.0) < 0.5
    assert client_accuracy(toy, finetune) > client_accuracy(toy, toy.global_weights)


@pytest.mark.parametrize("call, message", [
    (lambda toy: adaptation_path(toy, "local"), "method must be"),
    (lambda toy: adaptation_path(toy, "ewc", steps=0), "steps must be an integer >= 1"),
    (lambda toy: make_spring_toy(correlation=1.5), "correlation must be"),
])
def test_bad_arguments_are_named(toy, call, message):
    with pytest.raises(ValueError, match=message):
        call(toy)
