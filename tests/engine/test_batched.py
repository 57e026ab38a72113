"""The batched engine against the one-by-one loop: the same weights for every loss and optimizer."""

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.adaptation import METHODS, AdaptationSettings, adapt, adapt_all, ewc_penalty, fisher_diagonal
from fedkd_lessons.engine.batched import (ModelStack, StackedData, StackedOptimizer, check_same_architecture,
                                          train_stack)
from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.fedmd import consensus_loss
from fedkd_lessons.engine.models import accuracy, make_cnn, make_mlp, predict_logits
from fedkd_lessons.engine.training import train

SIZES = (5, 40, 33, 70)  # unequal: the short sets sit out the later steps of each epoch


def make_sets(seed: int, classes: int = 10, sizes=SIZES):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 1, 8, 8, generator=generator), torch.randint(0, classes, (n,), generator=generator))
            for n in sizes]


def make_models(factory, count: int = len(SIZES), seed: int = 0):
    torch.manual_seed(seed)
    return [factory() for _ in range(count)]


def assert_same_weights(stack: ModelStack, models, atol: float) -> None:
    for k, model in enumerate(models):
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(stack.parameters[name][k], parameter.detach(), atol=atol, rtol=1e-4)


def one_by_one(models, sets, **options):
    """The reference: each model through training.train with its own generator (seed k)."""
    models = copy.deepcopy(models)
    for k, (model, data) in enumerate(zip(models, sets)):
        train(model, data[0], tuple(data[1:]) if len(data) > 2 else data[1], generator=torch.Generator().manual_seed(k),
              progress=False, **options)
    return models


def batched(models, sets, **options):
    stack = ModelStack.from_models(models)
    losses = train_stack(stack, StackedData.from_sets(sets), progress=False,
                         generators=[torch.Generator().manual_seed(k) for k in range(len(sets))], **options)
    return stack, losses


FACTORIES = {"mlp": lambda: make_mlp((32, 16)), "cnn": lambda: make_cnn((4, 8)), "cnn one conv": lambda: make_cnn((6,))}


@pytest.mark.parametrize("architecture", sorted(FACTORIES))
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cross_entropy_equals_one_by_one(architecture, optimizer):
    models, sets = make_models(FACTORIES[architecture]), make_sets(1)
    options = dict(epochs=3, lr=0.01, batch_size=16, optimizer=optimizer, momentum=0.9, weight_decay=1e-3)
    stack, losses = batched(models, sets, **options)
    assert_same_weights(stack, one_by_one(models, sets, **options), atol=1e-5 if optimizer == "adam" else 1e-6)
    reference = [train(copy.deepcopy(m), *s, generator=torch.Generator().manual_seed(k), progress=False, **options)
                 for k, (m, s) in enumerate(zip(models, sets))]
    np.testing.assert_allclose(losses, np.array(reference), rtol=1e-4)


def test_distillation_loss_equals_one_by_one():
    models, sets = make_models(FACTORIES["mlp"]), make_sets(2)
    teacher = make_mlp((8,))
    sets = [(x, predict_logits(teacher, x), y) for x, y in sets]
    options = dict(epochs=2, lr=0.05, batch_size=8, optimizer="sgd")
    stack, _ = batched(models, sets, loss_fn=functools.partial(distillation_loss, temperature=3.0, alpha=0.7,
                                                              reduction="none"), **options)
    expected = one_by_one(models, sets, loss_fn=functools.partial(distillation_loss, temperature=3.0, alpha=0.7),
                          **options)
    assert_same_weights(stack, expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["logits", "probabilities"])
def test_consensus_loss_equals_one_by_one(kind):
    models, sets = make_models(FACTORIES["cnn"]), make_sets(3)
    consensus = [torch.randn(len(x), 10) for x, _ in sets]
    if kind == "probabilities":
        consensus = [c.softmax(dim=1) for c in consensus]
    sets = [(x, c) for (x, _), c in zip(sets, consensus)]
    options = dict(epochs=2, lr=1e-3, batch_size=16, optimizer="adam")
    stack, _ = batched(models, sets, loss_fn=functools.partial(consensus_loss, kind=kind, temperature=2.0,
                                                              reduction="none"), **options)
    expected = one_by_one(models, sets, loss_fn=functools.partial(consensus_loss, kind=kind, temperature=2.0), **options)
    assert_same_weights(stack, expected, atol=1e-5)


def test_ewc_penalty_equals_one_by_one_and_its_hand_value():
    models, sets = make_models(FACTORIES["mlp"]), make_sets(4)
    anchor = make_mlp((32, 16))
    fisher = {name: torch.rand_like(p) for name, p in anchor.named_parameters()}
    anchors = {name: p.detach() for name, p in anchor.named_parameters()}
    penalty = functools.partial(ewc_penalty, global_parameters=anchors, fisher=fisher, ewc_lambda=30.0)
    options = dict(epochs=2, lr=0.01, batch_size=16, optimizer="sgd")
    stack, _ = batched(models, sets, penalty=penalty, **options)
    assert_same_weights(stack, one_by_one(models, sets, penalty=penalty, **options), atol=1e-6)
    # hand value for one stacked model: 30 / 2 * sum F (w - w*)^2
    hand = 15.0 * sum((fisher[n] * (p.detach() - anchors[n]) ** 2).sum() for n, p in models[1].named_parameters())
    stacked = ewc_penalty(ModelStack.from_models(models).parameters, anchors, fisher, 30.0)
    assert stacked.shape == (len(models),)
    torch.testing.assert_close(stacked[1], hand)


def test_frozen_parameters_stay_and_the_rest_trains():
    models = make_models(FACTORIES["mlp"])
    for model in models:
        model[1].weight.requires_grad_(False)
    sets = make_sets(5)
    stack, _ = batched(models, sets, epochs=2, lr=0.1, batch_size=16, optimizer="sgd")
    assert stack.trainable == frozenset(n for n, p in models[0].named_parameters() if p.requires_grad)
    assert_same_weights(stack, one_by_one(models, sets, epochs=2, lr=0.1, batch_size=16, optimizer="sgd"), atol=1e-6)
    torch.testing.assert_close(stack.parameters["1.weight"], torch.stack([m[1].weight for m in models]))


def test_one_generator_shared_by_all_models_gives_the_loops_batches():
    models, sets = make_models(FACTORIES["mlp"]), make_sets(6)
    stack = ModelStack.from_models(models)
    train_stack(stack, StackedData.from_sets(sets), epochs=2, lr=0.01, batch_size=16, optimizer="sgd",
                generators=torch.Generator().manual_seed(9), progress=False)
    shared, expected = torch.Generator().manual_seed(9), copy.deepcopy(models)
    for model, (x, y) in zip(expected, sets):
        train(model, x, y, epochs=2, lr=0.01, batch_size=16, optimizer="sgd", generator=shared, progress=False)
    assert_same_weights(stack, expected, atol=1e-6)


def test_masked_optimizer_leaves_an_inactive_model_untouched():
    parameters = {"w": torch.ones(3, 2)}
    for name in ("sgd", "adam"):
        optimizer = StackedOptimizer(parameters, ["w"], name, lr=0.1)
        optimizer.step({"w": torch.ones(3, 2)}, torch.tensor([True, True, True]))
        before = parameters["w"].clone()
        optimizer.step({"w": torch.full((3, 2), 5.0)}, torch.tensor([True, False, True]))
        torch.testing.assert_close(parameters["w"][1], before[1])
        assert not torch.equal(parameters["w"][0], before[0])
        assert optimizer.steps.tolist() == [2.0, 1.0, 2.0]


@pytest.mark.parametrize("method", METHODS)
def test_adapt_all_equals_adapt_client_by_client(method):
    torch.manual_seed(0)
    start = make_mlp((16,))
    sets = make_sets(7, sizes=(7, 30, 45))
    fisher = fisher_diagonal(start, *sets[2])
    settings = AdaptationSettings(ewc_lambda=50.0).with_epochs(method, 4)
    fisher = fisher if method == "ewc" else None  # a Fisher goes with EWC only
    stack = adapt_all(method, start, sets, settings, fisher=fisher, seed=3)
    for k, (x, y) in enumerate(sets):
        one = adapt(method, start, x, y, settings, fisher=fisher, seed=3 + k)
        for name, parameter in one.named_parameters():
            torch.testing.assert_close(stack.parameters[name][k], parameter.detach(), atol=1e-6, rtol=1e-4)


def test_predictions_and_accuracies_are_each_models_own():
    models, sets = make_models(FACTORIES["cnn"]), make_sets(8)
    stack = ModelStack.from_models(models)
    images, labels = sets[3]
    logits = stack.predict_logits(images)
    for k, model in enumerate(models):
        torch.testing.assert_close(logits[k], predict_logits(model, images), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(stack.accuracy(images, labels), [accuracy(m, images, labels) for m in models])
    np.testing.assert_allclose(stack.accuracy_per_model(sets), [accuracy(m, *s) for m, s in zip(models, sets)])
    copies = make_models(FACTORIES["cnn"], seed=1)
    stack.write_to(copies)
    assert all(torch.equal(a, b) for m, c in zip(models, copies) for a, b in zip(m.parameters(), c.parameters()))


def test_dropout_draws_other_masks_for_each_model_and_is_off_in_eval():
    model = make_mlp((64,), dropout=0.5)
    stack = ModelStack.repeat(model, 3)
    images = torch.randn(1, 20, 1, 8, 8).expand(3, 20, 1, 8, 8)
    training = stack.forward(images, training=True)
    assert not torch.equal(training[0], training[1])
    evaluation = stack.forward(images)
    assert torch.equal(evaluation[0], evaluation[1])


def test_models_of_different_architectures_are_rejected_naming_the_first_mismatch():
    with pytest.raises(ValueError, match=r"models\[2\] layer 1 is Linear\(in_features=64, out_features=16"):
        check_same_architecture([make_mlp((32,)), make_mlp((32,)), make_mlp((16,))])
    with pytest.raises(ValueError, match=r"models\[1\] has 6 layers but models\[0\] has 4"):
        ModelStack.from_models([make_mlp((32,)), make_mlp((32, 8))])
    with pytest.raises(ValueError, match="BatchNorm1d.*not supported"):
        ModelStack.from_models([nn.Sequential(nn.Flatten(), nn.BatchNorm1d(64), nn.Linear(64, 10))])
    with pytest.raises(ValueError, match="must be an nn.Sequential"):
        ModelStack.from_models([nn.Linear(3, 2)])
    with pytest.raises(ValueError, match="models is empty"):
        ModelStack.from_models([])


def test_a_nan_loss_stops_training_naming_the_model_and_the_step():
    models, sets = make_models(FACTORIES["mlp"]), make_sets(9)
    with torch.no_grad():
        models[2][1].weight[0, 0] = float("nan")
    stack = ModelStack.from_models(models)
    with pytest.raises(FloatingPointError, match=r"client two: the loss became nan at epoch 1, step 1"):
        train_stack(stack, StackedData.from_sets(sets), epochs=2, lr=0.1, batch_size=16, optimizer="sgd",
                    model_names=["a", "b", "client two", "d"], progress=False)


def test_bad_training_sets_are_rejected():
    sets = make_sets(10)
    with pytest.raises(ValueError, match=r"sets\[1\] is empty"):
        StackedData.from_sets([sets[0], (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))])
    with pytest.raises(ValueError, match=r"sets\[1\]\[1\] has 3 rows but its images have 40"):
        StackedData.from_sets([sets[0], (sets[1][0], sets[1][1][:3])])
    nan_images = sets[1][0].clone()
    nan_images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"sets\[1\] images contain NaN"):
        StackedData.from_sets([sets[0], (nan_images, sets[1][1])])
    with pytest.raises(ValueError, match=r"sets\[1\] images have shape \(1, 4, 4\)"):
        StackedData.from_sets([sets[0], (torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.long))])
    stack = ModelStack.from_models(make_models(FACTORIES["mlp"], count=2))
    with pytest.raises(ValueError, match="data holds 4 training sets but the stack has 2 models"):
        train_stack(stack, StackedData.from_sets(sets), epochs=1)
    with pytest.raises(ValueError, match="optimizer must be one of 'adam', 'sgd'"):
        train_stack(stack, StackedData.from_sets(sets[:2]), epochs=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="images must have shape"):
        stack.forward(torch.zeros(3, 5, 1, 8, 8))


def test_losses_per_example_average_to_the_mean_losses():
    student, teacher, labels = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    per_example = distillation_loss(student, teacher, labels, temperature=2.0, alpha=0.4, reduction="none")
    assert per_example.shape == (6,)
    torch.testing.assert_close(per_example.mean(), distillation_loss(student, teacher, labels, 2.0, 0.4))
    torch.testing.assert_close(consensus_loss(student, teacher, reduction="none").mean(), F.l1_loss(student, teacher))
    with pytest.raises(ValueError, match="reduction must be 'mean' or 'none'"):
        consensus_loss(student, teacher, reduction="sum")
    with pytest.raises(ValueError, match=r"logits have shape \(6, 5\) but consensus has \(6, 4\)"):
        consensus_loss(student, teacher[:, :4])
