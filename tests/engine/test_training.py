import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons import accuracy, make_mlp, seed_everything, train


def test_training_learns_the_digits(digits):
    seed_everything(0)
    model = make_mlp((64,))
    history = train(model, digits.train_images, digits.train_labels, epochs=15, lr=1e-2, batch_size=64)
    assert history[-1] < history[0] / 5
    assert accuracy(model, digits.test_images, digits.test_labels) > 0.93


def test_same_seed_same_model(digits):
    weights = []
    for _ in range(2):
        seed_everything(1)
        model = make_mlp((16,))
        train(model, digits.train_images[:200], digits.train_labels[:200], epochs=2)
        weights.append(model[1].weight.clone())
    assert torch.equal(*weights)


def test_tuple_targets_and_penalty_reach_the_loss():
    seen = {}

    def loss_fn(logits, labels, soft):
        seen["shapes"] = (labels.shape, soft.shape)
        return F.cross_entropy(logits, labels)

    model = make_mlp((4,))
    norm_before = sum(p.square().sum() for p in model.parameters()).item()
    train(model, torch.rand(6, 1, 8, 8), (torch.zeros(6, dtype=torch.long), torch.rand(6, 10)), epochs=30,
          batch_size=6, loss_fn=loss_fn, penalty=lambda m: 10 * sum(p.square().sum() for p in m.parameters()),
          optimizer="sgd", momentum=0.0, lr=0.01)
    assert seen["shapes"] == ((6,), (6, 10))
    # a weight-decay penalty of 10 |w|^2 shrinks every weight by 20 % a step: 30 steps leave ~0.1 %
    assert sum(p.square().sum() for p in model.parameters()).item() < 0.01 * norm_before


def test_frozen_parameters_stay_put():
    model = make_mlp((8,))
    model[1].weight.requires_grad_(False)
    before = model[1].weight.clone()
    train(model, torch.rand(8, 1, 8, 8), torch.arange(8), epochs=2)
    assert torch.equal(model[1].weight, before)


def test_bad_arguments_are_rejected():
    model, images, labels = make_mlp(), torch.rand(4, 1, 8, 8), torch.arange(4)
    with pytest.raises(ValueError, match="epochs must be an integer >= 0"):
        train(model, images, labels, epochs=-1)
    with pytest.raises(ValueError, match="targets have 3 rows but images have 4"):
        train(model, images, labels[:3], epochs=1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train(model, images, labels, epochs=1, lr=0)
    with pytest.raises(ValueError, match="optimizer must be one of 'adam', 'sgd'"):
        train(model, images, labels, epochs=1, optimizer="rmsprop")
    spoiled = images.clone()
    spoiled[2, 0, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="images contains NaN or infinity at 1 place"):
        train(model, spoiled, labels, epochs=1)
    with pytest.raises(ValueError, match="images must have at least 1 row"):
        train(model, images[:0], labels[:0], epochs=1)
    with pytest.raises(ValueError, match="generator must be None or a Generator"):
        train(model, images, labels, epochs=1, generator=0)
