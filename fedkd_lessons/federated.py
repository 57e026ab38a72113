"""Federated learning from scratch: FedAvg and its robust and private variants (lesson 3; lesson 4
reuses it). The lesson's pictures are in :mod:`fedkd_lessons.federated_figures`.

Clients keep their data; each round the server sends the global weights to some clients, each
trains on its own examples, and the server *aggregates* the returned weights into the next global
model. The aggregators here are plain loops over state dicts, like Flower's
``flwr.server.strategy.aggregate``, so a learner can check every number by hand.
"""

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .batched import ModelStack, StackedData, train_stack
from .models import accuracy, predict_logits
from .training import progress_bar
from .validation import check_fraction, check_int_at_least, check_positive_finite

AGGREGATORS = ("mean", "median", "dp")

State = Mapping[str, torch.Tensor]


def _check_states(client_states) -> dict[str, torch.Tensor]:
    """``client_states`` as one stacked state ``{name: (K, ...)}``, after checking that keys and
    shapes agree and entries are floating-point. Takes ``K`` state dicts or a :class:`ModelStack`."""
    if isinstance(client_states, ModelStack):
        return client_states.parameters
    if len(client_states) == 0:
        raise ValueError("client_states is empty: aggregate at least one client's state")
    keys = list(client_states[0].keys())
    for k, state in enumerate(client_states):
        if set(state.keys()) != set(keys):
            missing = sorted(set(keys) - set(state.keys()))
            extra = sorted(set(state.keys()) - set(keys))
            raise ValueError(f"client_states[{k}] has different keys from client_states[0]: missing {missing}, extra {extra}")
        for name in keys:
            tensor = state[name]
            if not torch.is_tensor(tensor) or not tensor.is_floating_point():
                got = f"dtype {tensor.dtype}" if torch.is_tensor(tensor) else type(tensor).__name__
                raise ValueError(f"client_states[{k}][{name!r}] must be a floating-point tensor, got {got}")
            if tensor.shape != client_states[0][name].shape:
                raise ValueError(f"client_states[{k}][{name!r}] has shape {tuple(tensor.shape)} but "
                                 f"client_states[0][{name!r}] has {tuple(client_states[0][name].shape)}")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"client_states[{k}][{name!r}] contains NaN or inf")
    return {name: torch.stack([state[name] for state in client_states]) for name in keys}


def _check_noise_std(noise_std) -> float:
    if noise_std == 0:
        return 0.0
    try:
        return check_positive_finite(noise_std, "noise_std")
    except ValueError:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}") from None


def _check_weights(weights, count: int) -> torch.Tensor:
    weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
    if len(weights) != count:
        raise ValueError(f"weights must give one number per client state ({count}), got {len(weights)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"weights must be finite and >= 0 (sample counts), got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError(f"weights must not all be zero (their sum divides the average), got {weights.tolist()}")
    return weights


def _chunk(stacked: torch.Tensor) -> int:
    """Clients per chunk of float64 work: about 2 million numbers (16 MB), so 1,000 MNIST-sized
    clients never need a float64 copy of all their weights at once."""
    return max(1, 2**21 // max(1, stacked[0].numel()))


def _weighted_mean(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_k w_k x_k / sum_k w_k`` over the first dimension, summed in float64 a chunk at a time."""
    chunk = _chunk(stacked)
    total = torch.zeros(stacked.shape[1:], dtype=torch.float64)
    for start in range(0, len(stacked), chunk):
        total += torch.tensordot(weights[start : start + chunk], stacked[start : start + chunk].double(), dims=1)
    return (total / weights.sum()).to(stacked.dtype)


def fedavg(client_states, weights) -> dict[str, torch.Tensor]:
    """The sample-weighted average of client model states (FedAvg).

    ``w = sum_k n_k w_k / sum_k n_k`` entry by entry (McMahan et al. 2017, Algorithm 1), with
    ``n_k`` the number of training examples of client ``k``. The same computation as Flower's
    ``flwr.server.strategy.aggregate.aggregate`` on NumPy arrays.

    Args:
        client_states: ``K`` state dicts with the same keys and shapes (floating-point tensors), or
            the :class:`~fedkd_lessons.batched.ModelStack` the clients trained in.
        weights: ``K`` numbers ``n_k >= 0`` with a positive sum.

    Returns:
        A new state dict (each entry in the clients' dtype).
    """
    stacked = _check_states(client_states)
    weights = _check_weights(weights, len(next(iter(stacked.values()))))
    return {name: _weighted_mean(value, weights) for name, value in stacked.items()}


def median_aggregate(client_states) -> dict[str, torch.Tensor]:
    """The coordinate-wise median of client states: a robust aggregator, one of those Yu et al.
    (2020) test FL under.

    Every entry is the median over the ``K`` clients (the mean of the two middle values when
    ``K`` is even, as ``numpy.median`` and Flower's ``aggregate_median``). Sample counts are
    ignored: one client, however large, cannot drag a coordinate past the middle. The median of
    the updates ``w_k - w`` plus ``w`` is the same thing, since the median shifts with a constant.
    ``client_states`` as in :func:`fedavg`.
    """
    stacked = _check_states(client_states)
    median = {}
    for name, value in stacked.items():
        count = len(value)
        ordered = value.sort(dim=0).values
        middle = (ordered[(count - 1) // 2].double() + ordered[count // 2].double()) / 2
        median[name] = middle.to(value.dtype)
    return median


def update_norms(client_states, global_state: State) -> torch.Tensor:
    """``(K,)`` the L2 norm of each client's whole update ``||w_k - w||`` over every entry."""
    return _stacked_update_norms(_check_states(client_states), global_state)


def _stacked_update_norms(stacked: dict[str, torch.Tensor], global_state: State) -> torch.Tensor:
    squares = torch.zeros(len(next(iter(stacked.values()))), dtype=torch.float64)
    for name, value in stacked.items():
        chunk = _chunk(value)  # the differences a chunk of clients at a time: no copy of all the weights
        for first in range(0, len(value), chunk):
            difference = (value[first : first + chunk] - global_state[name]).flatten(1)
            squares[first : first + chunk] += torch.linalg.vector_norm(difference, dim=1).double() ** 2
    return squares.sqrt()


def update_norm(client_state: State, global_state: State) -> float:
    """The L2 norm of one client's whole update ``||w_k - w||`` over every entry of the state."""
    return float(update_norms([client_state], global_state)[0])


def dp_fedavg(
    global_state: State,
    client_states,
    weights,
    clip_norm: float,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Differentially-private style FedAvg: clip each update to norm ``S``, average, add noise.

    ``Delta_k = (w_k - w) * min(1, S / ||w_k - w||)``, ``w' = w + sum_k n_k Delta_k / sum_k n_k
    + N(0, sigma^2 I)`` (Yu et al. 2020, settings of the authors' code: S = 15, sigma = 0.01 for
    CIFAR-10, 0.1 for Reddit; the noise is added once, to the average, on every coordinate). Clipping bounds
    what any one client can move the model; the noise hides the rest. Yu et al.'s code weights
    clients equally; we keep FedAvg's sample weights so that clip and noise are the only change.
    No privacy budget (epsilon) is accounted here: this shows the cost, it does not certify privacy.

    Args:
        global_state: the model ``w`` the clients started from this round.
        client_states: the ``K`` states ``w_k`` they returned (as in :func:`fedavg`).
        weights: ``K`` sample counts (see :func:`fedavg`).
        clip_norm: ``S``, a finite number > 0.
        noise_std: ``sigma`` >= 0 (0 gives clipping alone).
        generator: the random stream of the noise.
    """
    clip_norm = check_positive_finite(clip_norm, "clip_norm")
    noise_std = _check_noise_std(noise_std)
    stacked = _check_states(client_states)
    _check_states([{name: value[0] for name, value in stacked.items()}, dict(global_state)])
    weights = _check_weights(weights, len(next(iter(stacked.values()))))
    scale = (clip_norm / _stacked_update_norms(stacked, global_state).clamp(min=1e-12)).clamp(max=1.0)
    new_state = {}
    for name, value in stacked.items():
        start = global_state[name].double()
        clipped = (value.double() - start) * scale.view(-1, *([1] * (value.ndim - 1)))
        noise = torch.randn(start.shape, generator=generator, dtype=torch.float64) * noise_std
        new_state[name] = (start + _weighted_mean(clipped, weights) + noise).to(global_state[name].dtype)
    return new_state


@dataclass
class FedAvgHistory:
    """What :func:`run_fedavg` measured. Index ``r`` of the per-round lists is the global model
    after round ``r``; index 0 is the initial model."""

    global_accuracy: list[float] = field(default_factory=list)
    """Accuracy of the global model on the central ``test_set`` (empty without one)."""
    client_accuracy: list[np.ndarray] = field(default_factory=list)
    """Per round, ``(K,)`` accuracies of the global model on each client's own local test set."""
    selected: list[np.ndarray] = field(default_factory=list)
    """Per round 1..R, the indices of the clients that trained."""
    update_norms: list[np.ndarray] = field(default_factory=list)
    """Per round 1..R, ``||w_k - w||`` of each selected client, before any clipping."""
    seconds: float = 0.0

    @property
    def final_client_accuracy(self) -> np.ndarray:
        """``(K,)`` accuracies of the final global model on each client's local test set."""
        return self.client_accuracy_over_last(1)

    def global_accuracy_over_last(self, rounds: int = 10) -> float:
        """Mean central test accuracy of the global models of the last ``rounds`` rounds: under
        non-i.i.d. clients accuracy swings from round to round, and one round is a noisy measure."""
        check_int_at_least(rounds, "rounds", 1)
        if not self.global_accuracy:
            raise ValueError("no test_set was given to run_fedavg")
        return float(np.mean(self.global_accuracy[-rounds:]))

    def client_accuracy_over_last(self, rounds: int = 10) -> np.ndarray:
        """``(K,)`` mean accuracy on each client's local test set over the last ``rounds`` rounds."""
        check_int_at_least(rounds, "rounds", 1)
        if not self.client_accuracy:
            raise ValueError("no client test sets were given to run_fedavg")
        return np.mean(self.client_accuracy[-rounds:], axis=0)


def _check_client_sets(sets, name: str) -> None:
    for k, pair in enumerate(sets):
        if len(pair) != 2:
            raise ValueError(f"{name}[{k}] must be an (images, labels) pair")
        images, labels = pair
        if len(images) != len(labels) or len(labels) == 0:
            raise ValueError(f"{name}[{k}] must hold as many labels as images, at least one; "
                             f"got {len(images)} images and {len(labels)} labels")


def run_fedavg(
    model: nn.Module | Callable[[], nn.Module],
    client_train: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    rounds: int,
    client_fraction: float = 1.0,
    local_epochs: int = 1,
    lr: float = 0.05,
    batch_size: int = 16,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    aggregator: str = "mean",
    clip_norm: float | None = None,
    noise_std: float = 0.0,
    test_set: tuple[torch.Tensor, torch.Tensor] | None = None,
    client_test: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    seed: int = 0,
    progress: bool | None = None,
    description: str = "FedAvg rounds",
) -> tuple[nn.Module, FedAvgHistory]:
    """Federated averaging, simulated in one process (McMahan et al. 2017, Algorithm 1).

    Each round: pick ``m = max(1, round(client_fraction * K))`` clients at random; each starts
    from the global weights and trains ``local_epochs`` epochs on its own data only (all ``m`` at
    once in :func:`fedkd_lessons.batched.train_stack`, equal to training them one by one); the server
    aggregates their states with ``aggregator``:

    - ``"mean"``: :func:`fedavg`, weighted by the clients' training-set sizes;
    - ``"median"``: :func:`median_aggregate` (robust aggregation, as in Yu et al. 2020);
    - ``"dp"``: :func:`dp_fedavg` with ``clip_norm`` ``S`` and ``noise_std`` ``sigma`` (Yu et al. 2020).

    Only weights cross between client and server; the images never leave their client.

    Args:
        model: the initial global model (copied, never modified) or a zero-argument factory,
            called under ``torch.manual_seed(seed)`` so the same seed gives the same start.
        client_train: ``K`` pairs ``(images (n_k, ...), labels (n_k,))``, one per client.
        rounds: communication rounds ``R`` >= 1.
        client_fraction: share of clients per round, in (0, 1] (``C`` in McMahan et al.).
        local_epochs, lr, batch_size, optimizer, momentum: each client's local training
            (:func:`fedkd_lessons.training.train`; a fresh optimizer every round).
        test_set: optional central ``(images, labels)`` for the global accuracy per round.
        client_test: optional ``K`` local test pairs; the global model is scored on each.
        seed: seeds the initial model (factory), the client choice, the batch order and the noise.

    Returns:
        ``(global_model, history)``, see :class:`FedAvgHistory`.
    """
    check_int_at_least(rounds, "rounds", 1)
    check_int_at_least(local_epochs, "local_epochs", 1)
    client_fraction = check_fraction(client_fraction, "client_fraction")
    if client_fraction == 0:
        raise ValueError("client_fraction must be in (0, 1], got 0: no client would train")
    if aggregator not in AGGREGATORS:
        raise ValueError(f"aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
    if aggregator == "dp":
        if clip_norm is None:
            raise ValueError("aggregator='dp' needs clip_norm (S), a finite number > 0")
        check_positive_finite(clip_norm, "clip_norm")
        _check_noise_std(noise_std)
    if len(client_train) == 0:
        raise ValueError("client_train is empty: give at least one client's (images, labels)")
    _check_client_sets(client_train, "client_train")
    if client_test is not None:
        if len(client_test) != len(client_train):
            raise ValueError(f"client_test must give one set per client ({len(client_train)}), got {len(client_test)}")
        _check_client_sets(client_test, "client_test")

    if isinstance(model, nn.Module):
        global_model = copy.deepcopy(model)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            global_model = model()
    clients = StackedData.from_sets(client_train)
    generator = torch.Generator().manual_seed(seed)
    num_clients = len(client_train)
    per_round = max(1, round(client_fraction * num_clients))
    sizes = np.array([len(labels) for _, labels in client_train])
    history = FedAvgHistory()
    local_models = ModelStack.repeat(global_model, per_round)  # its memory is reused every round

    def evaluate() -> None:
        if test_set is not None:
            history.global_accuracy.append(accuracy(global_model, *test_set))
        if client_test is not None:
            history.client_accuracy.append(np.array([accuracy(global_model, *pair) for pair in client_test]))

    start = time.perf_counter()
    evaluate()
    bar = progress_bar(range(1, rounds + 1), progress, description)
    for _ in bar:
        global_state = {name: value.detach().clone() for name, value in global_model.state_dict().items()}
        chosen = torch.randperm(num_clients, generator=generator)[:per_round].sort().values.numpy()
        # Every chosen client starts from the global weights and trains on its own data, all at once
        # (fedkd_lessons.batched); the one generator shuffles client after client, as a loop would.
        local_models.fill_from(global_model)
        train_stack(local_models, clients if len(chosen) == num_clients else clients.select(chosen),
                    epochs=local_epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, momentum=momentum,
                    generators=generator, model_names=[f"client {k}" for k in chosen], progress=False)
        weights = sizes[chosen]
        history.selected.append(chosen)
        history.update_norms.append(update_norms(local_models, global_state).numpy())
        if aggregator == "mean":
            new_state = fedavg(local_models, weights)
        elif aggregator == "median":
            new_state = median_aggregate(local_models)
        else:
            new_state = dp_fedavg(global_state, local_models, weights, clip_norm, noise_std, generator)
        global_model.load_state_dict(new_state)
        evaluate()
        if history.global_accuracy:
            bar.set_postfix(accuracy=f"{history.global_accuracy[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    global_model.eval()
    return global_model, history


def class_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    """``(C,)`` accuracy of ``model`` on the examples of each class (NaN for a class with none)."""
    predicted = predict_logits(model, images).argmax(dim=1)
    return np.array([(predicted[labels == c] == c).float().mean().item() if (labels == c).any() else np.nan
                     for c in range(num_classes)])
