"""EWC as a spring on the weights, distillation as a spring on the outputs: a two-weight toy (lesson 4).

A logistic model with two weights and no bias, ``p(y = 1 | x) = sigmoid(w . x)``, written as two-class
logits ``(0, w . x)`` so that lesson 4's own :func:`~fedkd_lessons.adaptation.ewc_penalty` and lesson 2's
:func:`~fedkd_lessons.distillation.distillation_loss` apply unchanged. The federation learned
``w_fed = (2, 0)`` ("feature 1 decides") on public inputs whose two features are independent. The client's
inputs have strongly correlated features and its labels follow feature 2. Small enough to draw the whole
weight plane:

- EWC's penalty ``lambda / 2 * sum_i F_i (w_i - w_fed,i)^2`` (Kirkpatrick et al. 2017, Eq. 3) has
  axis-aligned elliptic contours around ``w_fed``: every weight is held by its own spring, whatever the
  client's inputs are;
- distillation's soft term ``alpha T^2 KL(teacher || student)`` averaged over the *client's* inputs (Hinton
  et al. 2015; Yu et al. 2020) is a valley: moves of the weights that leave the outputs on those inputs
  unchanged cost nothing, however far they go.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedkd_lessons.adaptation import ewc_penalty, fisher_diagonal
from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Instance, Integer, OneOf, Real, Tensor,
                                             checked_arguments)

GLOBAL_WEIGHTS = (2.0, 0.0)

WEIGHT_POINTS = Tensor()  # (..., 2): points of the weight plane


def _points(weights: torch.Tensor) -> torch.Tensor:
    """``weights`` as float64 after checking its last dimension holds the two weights."""
    if weights.ndim == 0 or weights.shape[-1] != 2:
        raise ValueError(f"weights must have shape (..., 2), one point of the weight plane per row, got shape "
                         f"{tuple(weights.shape)}")
    return weights.to(torch.float64)


class TwoWeightModel(nn.Module):
    """Two-class logits ``(0, w . x)`` of inputs ``(N, 2)``: logistic regression with weights ``w`` ``(2,)``."""

    def __init__(self, weights=GLOBAL_WEIGHTS):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weights, dtype=torch.float64).clone())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        score = inputs.to(torch.float64) @ self.weight
        return torch.stack([torch.zeros_like(score), score], dim=1)


@dataclass(frozen=True)
class SpringToy:
    """The toy's data: public inputs and labels (for the Fisher), the client's inputs and labels, and
    the global weights ``w_fed``."""

    public: tuple[torch.Tensor, torch.Tensor]
    client: tuple[torch.Tensor, torch.Tensor]
    global_weights: torch.Tensor

    @property
    def global_model(self) -> TwoWeightModel:
        return TwoWeightModel(self.global_weights)


@checked_arguments(correlation=FRACTION, size=Integer(2), seed=Integer(0))
def make_spring_toy(correlation: float = 0.95, size: int = 400, seed: int = 0) -> SpringToy:
    """Public inputs ``N(0, I)`` labelled by the global model's rule (feature 1 > 0); client inputs
    ``N(0, [[1, c], [c, 1]])`` with ``c = correlation``, labelled by the client's rule (feature 2 > 0).
    On the client's inputs the two features almost always agree, so the two rules disagree on few of
    them."""
    generator = np.random.default_rng(seed)
    public = torch.as_tensor(generator.standard_normal((size, 2)))
    client = torch.as_tensor(generator.multivariate_normal([0.0, 0.0], [[1.0, correlation], [correlation, 1.0]], size))
    return SpringToy((public, (public[:, 0] > 0).long()), (client, (client[:, 1] > 0).long()),
                     torch.tensor(GLOBAL_WEIGHTS, dtype=torch.float64))


@checked_arguments(toy=Instance(SpringToy))
def toy_fisher(toy: SpringToy) -> dict[str, torch.Tensor]:
    """The global model's diagonal Fisher on the public data (:func:`~fedkd_lessons.adaptation.fisher_diagonal`)."""
    return fisher_diagonal(toy.global_model, *toy.public)


@checked_arguments(toy=Instance(SpringToy), weights=WEIGHT_POINTS, ewc_lambda=Real(0))
def ewc_spring(toy: SpringToy, weights, ewc_lambda: float) -> np.ndarray:
    """EWC's penalty at each of ``weights`` ``(..., 2)``, :func:`~fedkd_lessons.adaptation.ewc_penalty`
    with the toy's Fisher; shape ``weights.shape[:-1]``."""
    weights = _points(weights)
    stacked = {"weight": weights.reshape(-1, 2)}
    penalty = ewc_penalty(stacked, {"weight": toy.global_weights}, toy_fisher(toy), ewc_lambda)
    return penalty.reshape(weights.shape[:-1]).numpy()


@checked_arguments(toy=Instance(SpringToy), weights=WEIGHT_POINTS, temperature=POSITIVE, alpha=FRACTION)
def distillation_spring(toy: SpringToy, weights, temperature: float, alpha: float) -> np.ndarray:
    """Distillation's soft term ``alpha T^2 KL(teacher || student)``, averaged over the client's inputs,
    at each of ``weights`` ``(..., 2)``: the full :func:`~fedkd_lessons.distillation.distillation_loss`
    minus its hard term; shape ``weights.shape[:-1]``."""
    weights = _points(weights)
    inputs, labels = toy.client
    flat = weights.reshape(-1, 2)
    # every grid point's student on every client input at once: (G * N, 2) logits
    scores = (flat @ inputs.T.to(torch.float64)).reshape(-1)
    student = torch.stack([torch.zeros_like(scores), scores], dim=1)
    teacher = toy.global_model(inputs).detach().repeat(len(flat), 1)
    repeated = labels.repeat(len(flat))
    full = distillation_loss(student, teacher, repeated, temperature=temperature, alpha=alpha, reduction="none")
    hard = (1 - alpha) * nn.functional.cross_entropy(student, repeated, reduction="none")
    return (full - hard).reshape(len(flat), len(labels)).mean(dim=1).reshape(weights.shape[:-1]).numpy()


@checked_arguments(toy=Instance(SpringToy), method=OneOf("finetune", "ewc", "distill"), steps=Integer(1), lr=POSITIVE,
                   ewc_lambda=Real(0), temperature=POSITIVE, alpha=FRACTION)
def adaptation_path(toy: SpringToy, method: str, *, steps: int = 300, lr: float = 0.5, ewc_lambda: float = 1.0,
                    temperature: float = 2.0, alpha: float = 0.5) -> np.ndarray:
    """``(steps + 1, 2)``: the weights after each full-batch gradient step on the client's data, from
    ``w_fed``: ``"finetune"`` (cross-entropy alone), ``"ewc"`` (plus EWC's penalty) or ``"distill"``
    (the distillation loss)."""
    model = toy.global_model
    inputs, labels = toy.client
    teacher = toy.global_model(inputs).detach()
    spring = functools.partial(ewc_penalty, global_parameters={"weight": toy.global_weights}, fisher=toy_fisher(toy),
                               ewc_lambda=ewc_lambda)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    path = [model.weight.detach().clone()]
    for _ in range(steps):
        logits = model(inputs)
        if method == "distill":
            loss = distillation_loss(logits, teacher, labels, temperature=temperature, alpha=alpha)
        else:
            loss = nn.functional.cross_entropy(logits, labels)
            if method == "ewc":
                loss = loss + spring(model)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        path.append(model.weight.detach().clone())
    return torch.stack(path).numpy()


@checked_arguments(toy=Instance(SpringToy), weights=Tensor(ndim=1))
def client_accuracy(toy: SpringToy, weights) -> float:
    """The accuracy of the weights ``(2,)`` on the client's own data."""
    inputs, labels = toy.client
    return float((TwoWeightModel(_points(weights))(inputs).argmax(dim=1) == labels).double().mean())
