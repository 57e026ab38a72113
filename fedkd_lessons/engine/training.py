"""One training loop for every lesson (lesson 1)."""

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (POSITIVE, Callable as CallableArgument, Instance, Integer, OneOf,
                                             Optional, Real, Tensor, checked_arguments)


@checked_arguments(optimizer=OneOf("adam", "sgd"), lr=POSITIVE, momentum=Real(0, 1, closed="left"),
                   weight_decay=Real(0))
def make_optimizer(parameters, optimizer: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    """``"adam"`` or ``"sgd"`` (with ``momentum``) over ``parameters``."""
    if optimizer == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)


@checked_arguments(model=Instance(nn.Module), images=Tensor(min_rows=1), epochs=Integer(0), lr=POSITIVE,
                   batch_size=Integer(1), loss_fn=Optional(CallableArgument()), penalty=Optional(CallableArgument()),
                   optimizer=OneOf("adam", "sgd"), momentum=Real(0, 1, closed="left"), weight_decay=Real(0),
                   generator=Optional(Instance(torch.Generator)))
def train(
    model: nn.Module,
    images: torch.Tensor,
    targets,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    loss_fn: Callable | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool | None = None,
    description: str = "training",
) -> list[float]:
    """Train ``model`` in place with mini-batches; return the mean loss of each epoch.

    Args:
        images: inputs ``(N, ...)``.
        targets: a tensor ``(N, ...)`` or a tuple of such tensors, sliced per batch alongside
            ``images`` and passed to ``loss_fn(logits, *batch_targets)``.
        loss_fn: defaults to ``F.cross_entropy`` (targets are integer labels).
        penalty: optional ``penalty(model)`` added to every batch's loss (EWC, lesson 4).
        optimizer: ``"adam"`` or ``"sgd"``; only parameters with ``requires_grad`` are trained.
        generator: the random stream that shuffles the batches (default: torch's global one).
    """
    targets = tuple(Tensor().check(t, "targets") for t in (targets if isinstance(targets, tuple) else (targets,)))
    for target in targets:
        if len(target) != len(images):
            raise ValueError(f"targets have {len(target)} rows but images have {len(images)}")
    loss_fn = loss_fn or F.cross_entropy
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(trainable, optimizer, lr, momentum, weight_decay)
    model.train()
    history = []
    bar = progress_bar(range(epochs), progress, description)
    for _ in bar:
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model(images[batch]), *(t[batch] for t in targets))
            if penalty is not None:
                loss = loss + penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        history.append(total / len(images))
        bar.set_postfix(loss=f"{history[-1]:.3f}")
    model.eval()
    return history
