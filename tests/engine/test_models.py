import pytest
import torch

from fedkd_lessons.engine.models import (accuracy, count_parameters, last_linear_layer, make_cnn, make_mlp,
                                         predict_logits)


@pytest.mark.parametrize("factory", [lambda: make_mlp((32, 16)), lambda: make_cnn((8, 16)), lambda: make_cnn((4, 8, 8))])
def test_models_map_images_to_logits(factory):
    model = factory()
    assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_parameter_count_matches_hand_count():
    assert count_parameters(make_mlp((32,))) == 64 * 32 + 32 + 32 * 10 + 10


def test_last_linear_layer_is_the_head():
    model = make_mlp((32, 16), num_classes=16)
    assert last_linear_layer(model).out_features == 16


def test_predict_logits_is_eval_mode_and_batched():
    model = make_mlp((16,), dropout=0.5).train()
    images = torch.rand(10, 1, 8, 8)
    torch.testing.assert_close(predict_logits(model, images, batch_size=3), predict_logits(model, images))
    assert model.training


def test_accuracy_against_hand_count():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Identity())
    images = torch.eye(3).reshape(3, 1, 1, 3)
    assert accuracy(model, images, torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        make_mlp(num_classes=1)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        make_cnn(dropout=1.0)
    with pytest.raises(ValueError, match="channels must be a list or tuple of at least 1 item"):
        make_cnn(channels=())
    with pytest.raises(ValueError, match=r"hidden\[1\] must be an integer >= 1"):
        make_mlp(hidden=(8, 0))
    with pytest.raises(ValueError, match="differ in length"):
        accuracy(make_mlp(), torch.rand(3, 1, 8, 8), torch.tensor([1]))
    with pytest.raises(ValueError, match="labels must hold integers"):
        accuracy(make_mlp(), torch.rand(3, 1, 8, 8), torch.zeros(3))


def test_images_a_model_cannot_take_are_named():
    with pytest.raises(ValueError, match=r"images of shape \(2, 1, 28, 28\) do not fit the model"):
        accuracy(make_mlp(image_size=8), torch.rand(2, 1, 28, 28), torch.tensor([0, 1]))


def test_fedmd_zoo_has_ten_models_five_plus_architectures_sixteen_outputs():
    from fedkd_lessons.engine.models import make_fedmd_zoo

    zoo = make_fedmd_zoo()
    assert len(zoo) == 10
    architectures = {tuple(type(m).__name__ for m in model) + (count_parameters(model),) for _, model in zoo}
    assert len(architectures) >= 5
    assert {len([m for m in model if isinstance(m, torch.nn.Conv2d)]) for _, model in zoo} == {0, 1, 2, 3}
    for _, model in zoo:
        assert model(torch.rand(3, 1, 8, 8)).shape == (3, 16)
    assert make_fedmd_zoo(image_size=28)[4][1](torch.rand(2, 1, 28, 28)).shape == (2, 16)
