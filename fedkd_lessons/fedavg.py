"""Federated learning from scratch: FedAvg and its robust and private variants (lesson 3; lesson 4
reuses it). The lesson's pictures are in :mod:`fedkd_lessons.figures.lesson3_federated`.

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

from fedkd_lessons.engine.batched import ModelStack, StackedData, train_stack
from fedkd_lessons.engine.models import accuracy, predict_logits
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Callable as CallableArgument, Each, Instance,
                                             Integer, OneOf, Optional, Real, Tensor, check_fields, checked_arguments)

AGGREGATORS = ("mean", "median", "dp")

State = Mapping[str, torch.Tensor]

# The declared forms of the arguments several functions share; keys, shapes and dtypes across the
# client states are checked by _check_states, as they relate the states to each other.
STATES = Instance((list, tuple, ModelStack))
STATE = Instance(Mapping)
WEIGHTS = Tensor(ndim=1)
GENERATOR = Instance(torch.Generator)
CLIENT_SETS = Each(Instance((tuple, list)))


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


def _check_weights(weights, count: int) -> torch.Tensor:
    """``weights`` (declared finite, one-dimensional) as float64 after checking they match the states."""
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if len(weights) != count:
        raise ValueError(f"weights must give one number per client state ({count}), got {len(weights)}")
    if (weights < 0).any():
        raise ValueError(f"weights must be >= 0 (sample counts), got {weights.tolist()}")
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


@checked_arguments(client_states=STATES, weights=WEIGHTS)
def fedavg(client_states, weights) -> dict[str, torch.Tensor]:
    """The sample-weighted average of client model states (FedAvg).

    ``w = sum_k n_k w_k / sum_k n_k`` entry by entry (McMahan et al. 2017, Algorithm 1), with
    ``n_k`` the number of training examples of client ``k``. The same computation as Flower's
    ``flwr.server.strategy.aggregate.aggregate`` on NumPy arrays.

    Args:
        client_states: ``K`` state dicts with the same keys and shapes (floating-point tensors), or
            the :class:`~fedkd_lessons.engine.batched.ModelStack` the clients trained in.
        weights: ``K`` numbers ``n_k >= 0`` with a positive sum.

    Returns:
        A new state dict (each entry in the clients' dtype).
    """
    stacked = _check_states(client_states)
    weights = _check_weights(weights, len(next(iter(stacked.values()))))
    return {name: _weighted_mean(value, weights) for name, value in stacked.items()}


@checked_arguments(client_states=STATES)
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


@checked_arguments(client_states=STATES, global_state=STATE)
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


@checked_arguments(client_state=STATE, global_state=STATE)
def update_norm(client_state: State, global_state: State) -> float:
    """The L2 norm of one client's whole update ``||w_k - w||`` over every entry of the state."""
    return float(update_norms([client_state], global_state)[0])


@checked_arguments(global_state=STATE, client_states=STATES, weights=WEIGHTS, clip_norm=POSITIVE, noise_std=Real(0),
                   generator=Optional(GENERATOR))
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


@dataclass(frozen=True)
class FedAvgSettings:
    """How a FedAvg run trains and aggregates (McMahan et al. 2017, Algorithm 1); every default in
    one place. The defaults are Yu et al.'s CIFAR-10 run (their official code's settings: every
    participant trains 2 local epochs of SGD at lr 0.1 with momentum 0.9), scaled to the digits:
    20 rounds, batches of 16.

    ``aggregator`` picks the server's rule: ``"mean"`` (:func:`fedavg`, weighted by the clients'
    training-set sizes), ``"median"`` (:func:`median_aggregate`) or ``"dp"`` (:func:`dp_fedavg`
    with ``clip_norm`` ``S`` and ``noise_std`` ``sigma``). The seed is no setting: every runner
    takes ``seed: int`` beside its settings.
    """

    rounds: int = 20
    client_fraction: float = 1.0  # C in McMahan et al.: the share of clients that train each round
    local_epochs: int = 2
    lr: float = 0.1
    batch_size: int = 16
    optimizer: str = "sgd"
    momentum: float = 0.9
    aggregator: str = "mean"
    clip_norm: float | None = None
    noise_std: float = 0.0

    def __post_init__(self):
        check_fields(self, rounds=Integer(1), client_fraction=Real(0, 1, closed="right"), local_epochs=Integer(1),
                     lr=POSITIVE, batch_size=Integer(1), optimizer=OneOf("sgd", "adam"),
                     momentum=Real(0, 1, closed="left"), aggregator=OneOf(*AGGREGATORS), clip_norm=Optional(POSITIVE), noise_std=Real(0))
        if self.aggregator == "dp":
            if self.clip_norm is None:
                raise ValueError("aggregator='dp' needs clip_norm (S), a finite number > 0")
        elif self.clip_norm is not None or self.noise_std != 0:
            raise ValueError(f"clip_norm and noise_std are for aggregator='dp' only, got clip_norm={self.clip_norm!r} "
                             f"and noise_std={self.noise_std!r} with aggregator={self.aggregator!r}")

    def clients_per_round(self, num_clients: int) -> int:
        """``m = max(1, round(client_fraction * K))`` of ``K`` clients train each round."""
        return max(1, round(self.client_fraction * num_clients))


@dataclass
class FedAvgRound:
    """What one :func:`fedavg_round` did: which clients trained, the models they sent back (row
    ``j`` is client ``chosen[j]``), the norm of each update before any clipping, and the new
    global state the server aggregated."""

    chosen: np.ndarray
    client_models: ModelStack
    update_norms: np.ndarray
    state: dict[str, torch.Tensor]


@checked_arguments(num_clients=Integer(1), settings=Instance(FedAvgSettings), generator=GENERATOR)
def choose_clients(num_clients: int, settings: FedAvgSettings, generator: torch.Generator) -> np.ndarray:
    """The server's draw: :meth:`FedAvgSettings.clients_per_round` of ``num_clients`` clients at
    random, sorted."""
    count = settings.clients_per_round(num_clients)
    return torch.randperm(num_clients, generator=generator)[:count].sort().values.numpy()


@checked_arguments(client_models=Instance(ModelStack), global_model=Instance(nn.Module), clients=Instance(StackedData),
                   settings=Instance(FedAvgSettings), generator=GENERATOR)
def train_locally(client_models: ModelStack, global_model: nn.Module, clients: StackedData, chosen,
                  settings: FedAvgSettings, generator: torch.Generator) -> None:
    """Every chosen client starts from the global weights and trains ``local_epochs`` on its own
    data only, all at once (:func:`fedkd_lessons.engine.batched.train_stack`, equal to training them one
    by one; the one generator shuffles client after client, as a loop would)."""
    client_models.fill_from(global_model)
    train_stack(client_models, clients, epochs=settings.local_epochs, lr=settings.lr, batch_size=settings.batch_size,
                optimizer=settings.optimizer, momentum=settings.momentum, generators=generator,
                model_names=[f"client {k}" for k in chosen], progress=False)


@checked_arguments(global_state=STATE, client_states=STATES, weights=WEIGHTS, settings=Instance(FedAvgSettings),
                   generator=Optional(GENERATOR))
def aggregate(global_state: State, client_states, weights, settings: FedAvgSettings,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The server's step, by ``settings.aggregator``: :func:`fedavg`, :func:`median_aggregate` or
    :func:`dp_fedavg` (whose noise draws from ``generator``)."""
    if settings.aggregator == "mean":
        return fedavg(client_states, weights)
    if settings.aggregator == "median":
        return median_aggregate(client_states)
    return dp_fedavg(global_state, client_states, weights, settings.clip_norm, settings.noise_std, generator)


@checked_arguments(global_model=Instance(nn.Module), clients=Instance(StackedData), settings=Instance(FedAvgSettings),
                   generator=GENERATOR, client_models=Optional(Instance(ModelStack)))
def fedavg_round(global_model: nn.Module, clients: StackedData, settings: FedAvgSettings, generator: torch.Generator,
                 client_models: ModelStack | None = None) -> FedAvgRound:
    """One FedAvg round (McMahan et al. 2017, Algorithm 1): the server picks clients
    (:func:`choose_clients`), each trains from the global weights on its own data
    (:func:`train_locally`), the server aggregates what they send back (:func:`aggregate`).
    Only weights cross between client and server; the images never leave their client.

    ``clients`` holds every client's training set (``clients.sizes`` are the ``n_k`` FedAvg weights
    by); ``generator`` draws the clients, the batches and the noise, in that order. Pass
    ``client_models`` (a :class:`~fedkd_lessons.engine.batched.ModelStack` of the round's size) to reuse its
    memory round after round. ``global_model`` is not changed: load the returned state into it.
    """
    chosen = choose_clients(len(clients), settings, generator)
    if client_models is None:
        client_models = ModelStack.repeat(global_model, len(chosen))
    if len(client_models) != len(chosen):
        raise ValueError(f"client_models must stack one model per chosen client ({len(chosen)}), got {len(client_models)}")
    global_state = {name: value.detach().clone() for name, value in global_model.state_dict().items()}
    train_locally(client_models, global_model, clients if len(chosen) == len(clients) else clients.select(chosen),
                  chosen, settings, generator)
    norms = update_norms(client_models, global_state).numpy()
    state = aggregate(global_state, client_models, clients.sizes[chosen], settings, generator)
    return FedAvgRound(chosen, client_models, norms, state)


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

    @checked_arguments(rounds=Integer(1))
    def global_accuracy_over_last(self, rounds: int = 10) -> float:
        """Mean central test accuracy of the global models of the last ``rounds`` rounds: under
        non-i.i.d. clients accuracy swings from round to round, and one round is a noisy measure."""
        if not self.global_accuracy:
            raise ValueError("no test_set was given to run_fedavg")
        return float(np.mean(self.global_accuracy[-rounds:]))

    @checked_arguments(rounds=Integer(1))
    def client_accuracy_over_last(self, rounds: int = 10) -> np.ndarray:
        """``(K,)`` mean accuracy on each client's local test set over the last ``rounds`` rounds."""
        if not self.client_accuracy:
            raise ValueError("no client test sets were given to run_fedavg")
        return np.mean(self.client_accuracy[-rounds:], axis=0)


@dataclass
class FedAvgResult:
    """What :func:`run_fedavg` returns: the final global model (in eval mode) and its history."""

    model: nn.Module
    history: FedAvgHistory


def _check_client_sets(sets, name: str) -> None:
    """Each client's images and labels agree in number (the list itself is declared: CLIENT_SETS)."""
    for k, pair in enumerate(sets):
        if len(pair) != 2:
            raise ValueError(f"{name}[{k}] must be an (images, labels) pair")
        images, labels = pair
        if len(images) != len(labels) or len(labels) == 0:
            raise ValueError(f"{name}[{k}] must hold as many labels as images, at least one; "
                             f"got {len(images)} images and {len(labels)} labels")


@checked_arguments(model=CallableArgument(), client_train=CLIENT_SETS, settings=Instance(FedAvgSettings), seed=Integer(0),
                   test_set=Optional(Instance((tuple, list))), client_test=Optional(CLIENT_SETS),
                   description=Instance(str))
def run_fedavg(
    model: nn.Module | Callable[[], nn.Module],
    client_train: Sequence[tuple[torch.Tensor, torch.Tensor]],
    settings: FedAvgSettings = FedAvgSettings(),
    *,
    seed: int = 0,
    test_set: tuple[torch.Tensor, torch.Tensor] | None = None,
    client_test: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    progress: bool | None = None,
    description: str = "FedAvg rounds",
) -> FedAvgResult:
    """Federated averaging, simulated in one process: ``settings.rounds`` of :func:`fedavg_round`.

    Args:
        model: the initial global model (copied, never modified) or a zero-argument factory,
            called under ``torch.manual_seed(seed)`` so the same seed gives the same start.
        client_train: ``K`` pairs ``(images (n_k, ...), labels (n_k,))``, one per client.
        settings: a :class:`FedAvgSettings`.
        seed: seeds the initial model (factory), the client choice, the batch order and the noise.
        test_set: optional central ``(images, labels)`` for the global accuracy per round.
        client_test: optional ``K`` local test pairs; the global model is scored on each.
        progress: a progress bar over the rounds (``None``: only where one can show).

    Returns:
        A :class:`FedAvgResult`: the global model and the :class:`FedAvgHistory`.
    """
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
    history = FedAvgHistory()
    client_models = ModelStack.repeat(global_model, settings.clients_per_round(len(clients)))  # reused every round

    def evaluate() -> None:
        if test_set is not None:
            history.global_accuracy.append(accuracy(global_model, *test_set))
        if client_test is not None:
            history.client_accuracy.append(np.array([accuracy(global_model, *pair) for pair in client_test]))

    start = time.perf_counter()
    evaluate()
    bar = progress_bar(range(1, settings.rounds + 1), progress, description)
    for _ in bar:
        round_ = fedavg_round(global_model, clients, settings, generator, client_models)
        history.selected.append(round_.chosen)
        history.update_norms.append(round_.update_norms)
        global_model.load_state_dict(round_.state)
        evaluate()
        if history.global_accuracy:
            bar.set_postfix(accuracy=f"{history.global_accuracy[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    global_model.eval()
    return FedAvgResult(global_model, history)


@checked_arguments(model=Instance(nn.Module), images=Tensor(), labels=Tensor(ndim=1, dtype="integer"),
                   num_classes=Integer(1))
def class_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    """``(C,)`` accuracy of ``model`` on the examples of each class (NaN for a class with none)."""
    predicted = predict_logits(model, images).argmax(dim=1)
    return np.array([(predicted[labels == c] == c).float().mean().item() if (labels == c).any() else np.nan
                     for c in range(num_classes)])
