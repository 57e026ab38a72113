"""Small model factories for 8x8 (or any small square) images (lesson 1 on)."""

import torch
from torch import nn

from fedkd_lessons.engine.validation import Each, Instance, Integer, Real, Tensor, checked_arguments


@checked_arguments(hidden=Each(Integer(1), min_length=0), num_classes=Integer(2), image_size=Integer(1),
                   dropout=Real(0, 1, closed="left"))
def make_mlp(hidden=(64,), num_classes: int = 10, image_size: int = 8, dropout: float = 0.0) -> nn.Sequential:
    """A multilayer perceptron: flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden width,
    then a linear layer to ``num_classes`` logits. Input ``(N, 1, S, S)``, output ``(N, num_classes)``."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = image_size * image_size
    for units in hidden:
        layers += [nn.Linear(width, units), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = units
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


@checked_arguments(channels=Each(Integer(1)), num_classes=Integer(2), image_size=Integer(1),
                   dropout=Real(0, 1, closed="left"))
def make_cnn(channels=(16, 32), num_classes: int = 10, image_size: int = 8, dropout: float = 0.0) -> nn.Sequential:
    """A small CNN: per entry of ``channels`` a 3x3 convolution (padding 1) and ReLU, with 2x2
    max-pooling after each but the first; then flatten, dropout and a linear layer to the logits.
    Input ``(N, 1, S, S)``, output ``(N, num_classes)``."""
    layers: list[nn.Module] = []
    in_channels, size = 1, image_size
    for index, out_channels in enumerate(channels):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU()]
        if index > 0 and size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        in_channels = out_channels
    layers += [nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_channels * size * size, num_classes)]
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def last_linear_layer(model: nn.Module) -> nn.Linear:
    """The model's final ``nn.Linear`` (its classifier head)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model has no nn.Linear layer")
    return linears[-1]


@checked_arguments(model=Instance(nn.Module), images=Tensor(min_rows=1), batch_size=Integer(1))
@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits ``(N, C)`` of ``model`` on ``images`` in eval mode (dropout off), without gradients."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    except RuntimeError as error:  # the model's first layer names sizes, not the argument at fault
        raise ValueError(f"images of shape {tuple(images.shape)} do not fit the model ({error})") from error
    finally:
        model.train(was_training)


@checked_arguments(labels=Tensor(ndim=1, dtype="integer"))
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` whose argmax logit equals ``labels``."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    return (predict_logits(model, images).argmax(dim=1) == labels).float().mean().item()


# FedMD's parties each bring their own architecture (Li & Wang 2019: 2- and 3-layer CNNs
# of different widths and dropout); at 8x8 the course mixes MLPs of different depth and width with
# CNNs of one to three convolutions. Every model has 16 outputs: 10 public + 6 private classes, as in the paper.
FEDMD_ZOO = (
    ("mlp 32", "mlp", {"hidden": (32,)}),
    ("mlp 64", "mlp", {"hidden": (64,)}),
    ("mlp 128-64", "mlp", {"hidden": (128, 64), "dropout": 0.2}),
    ("mlp 64-32-32", "mlp", {"hidden": (64, 32, 32)}),
    ("cnn 8", "cnn", {"channels": (8,)}),
    ("cnn 16", "cnn", {"channels": (16,), "dropout": 0.2}),
    ("cnn 8-16", "cnn", {"channels": (8, 16)}),
    ("cnn 16-32", "cnn", {"channels": (16, 32), "dropout": 0.3}),
    ("cnn 8-16-16", "cnn", {"channels": (8, 16, 16)}),
    ("cnn 16-16-32", "cnn", {"channels": (16, 16, 32), "dropout": 0.2}),
)


def make_fedmd_zoo(num_classes: int = 16, image_size: int = 8) -> list[tuple[str, nn.Sequential]]:
    """FedMD's ten parties' models (lesson 5), as ``(name, model)`` pairs in party order.

    Four MLPs (one to three hidden layers, 32-128 units) and six CNNs (one to three convolutions,
    8-32 channels), some with dropout: ten models, ten architectures, no two alike enough to
    average their weights. Each maps ``(N, 1, image_size, image_size)`` to ``(N, num_classes)``.
    """
    factories = {"mlp": make_mlp, "cnn": make_cnn}
    return [
        (name, factories[kind](**settings, num_classes=num_classes, image_size=image_size))
        for name, kind, settings in FEDMD_ZOO
    ]
