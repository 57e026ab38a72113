"""Federated learning from scratch: FedAvg, its robust and private variants, and the pictures of
who it serves (lesson 3; lessons 4 and 5 reuse it).

Clients keep their data; each round the server sends the global weights to some clients, each
trains on its own examples, and the server *aggregates* the returned weights into the next global
model. The aggregators here are plain loops over state dicts, like Flower's
``flwr.server.strategy.aggregate``, so a learner can check every number by hand.
"""

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .data import class_mix_distances, dirichlet_partition, load_digits_split
from .models import accuracy, predict_logits
from .plotting import COLOURS, show_digit
from .training import progress_bar, train
from .validation import check_fraction, check_int_at_least, check_positive_finite

AGGREGATORS = ("mean", "median", "dp")

State = Mapping[str, torch.Tensor]


def _check_states(client_states: Sequence[State]) -> list[str]:
    """The keys of ``client_states`` after checking that keys and shapes agree and entries are floating-point."""
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
    return keys


def _check_noise_std(noise_std) -> float:
    if noise_std == 0:
        return 0.0
    try:
        return check_positive_finite(noise_std, "noise_std")
    except ValueError:
        raise ValueError(f"noise_std must be a finite number >= 0, got {noise_std!r}") from None


def _check_weights(weights, count: int) -> list[float]:
    weights = [float(w) for w in torch.as_tensor(weights, dtype=torch.float64).reshape(-1)]
    if len(weights) != count:
        raise ValueError(f"weights must give one number per client state ({count}), got {len(weights)}")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0 (sample counts), got {weights}")
    if sum(weights) <= 0:
        raise ValueError(f"weights must not all be zero (their sum divides the average), got {weights}")
    return weights


def fedavg(client_states: Sequence[State], weights) -> dict[str, torch.Tensor]:
    """The sample-weighted average of client model states (FedAvg).

    ``w = sum_k n_k w_k / sum_k n_k`` entry by entry (McMahan et al. 2017, Algorithm 1), with
    ``n_k`` the number of training examples of client ``k``. The same computation as Flower's
    ``flwr.server.strategy.aggregate.aggregate`` on NumPy arrays.

    Args:
        client_states: ``K`` state dicts with the same keys and shapes (floating-point tensors).
        weights: ``K`` numbers ``n_k >= 0`` with a positive sum.

    Returns:
        A new state dict (each entry in the dtype of ``client_states[0]``).
    """
    keys = _check_states(client_states)
    weights = _check_weights(weights, len(client_states))
    total = sum(weights)
    average = {}
    for name in keys:
        weighted_sum = sum(n * state[name].double() for n, state in zip(weights, client_states))
        average[name] = (weighted_sum / total).to(client_states[0][name].dtype)
    return average


def median_aggregate(client_states: Sequence[State]) -> dict[str, torch.Tensor]:
    """The coordinate-wise median of client states: a robust aggregator (PAPER_FACTS fact 15).

    Every entry is the median over the ``K`` clients (the mean of the two middle values when
    ``K`` is even, as ``numpy.median`` and Flower's ``aggregate_median``). Sample counts are
    ignored: one client, however large, cannot drag a coordinate past the middle. The median of
    the updates ``w_k - w`` plus ``w`` is the same thing, since the median shifts with a constant.
    """
    keys = _check_states(client_states)
    count = len(client_states)
    median = {}
    for name in keys:
        ordered = torch.stack([state[name].double() for state in client_states]).sort(dim=0).values
        middle = (ordered[(count - 1) // 2] + ordered[count // 2]) / 2
        median[name] = middle.to(client_states[0][name].dtype)
    return median


def update_norm(client_state: State, global_state: State) -> float:
    """The L2 norm of the whole update ``||w_k - w||`` over every entry of the state."""
    return float(torch.sqrt(sum(((client_state[name].double() - global_state[name].double()) ** 2).sum()
                                for name in global_state)))


def dp_fedavg(
    global_state: State,
    client_states: Sequence[State],
    weights,
    clip_norm: float,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Differentially-private style FedAvg: clip each update to norm ``S``, average, add noise.

    ``Delta_k = (w_k - w) * min(1, S / ||w_k - w||)``, ``w' = w + sum_k n_k Delta_k / sum_k n_k
    + N(0, sigma^2 I)`` (Yu et al. 2020, PAPER_FACTS fact 15: S = 15, sigma = 0.01 for CIFAR-10,
    0.1 for Reddit; the noise is added once, to the average, on every coordinate). Clipping bounds
    what any one client can move the model; the noise hides the rest. Yu et al.'s code weights
    clients equally; we keep FedAvg's sample weights so that clip and noise are the only change.
    No privacy budget (epsilon) is accounted here: this shows the cost, it does not certify privacy.

    Args:
        global_state: the model ``w`` the clients started from this round.
        client_states: the ``K`` states ``w_k`` they returned.
        weights: ``K`` sample counts (see :func:`fedavg`).
        clip_norm: ``S``, a finite number > 0.
        noise_std: ``sigma`` >= 0 (0 gives clipping alone).
        generator: the random stream of the noise.
    """
    clip_norm = check_positive_finite(clip_norm, "clip_norm")
    noise_std = _check_noise_std(noise_std)
    keys = _check_states(list(client_states) + [global_state])
    clipped = []
    for state in client_states:
        scale = min(1.0, clip_norm / max(update_norm(state, global_state), 1e-12))
        clipped.append({name: (state[name].double() - global_state[name].double()) * scale for name in keys})
    mean_update = fedavg(clipped, weights)
    new_state = {}
    for name in keys:
        noise = torch.randn(global_state[name].shape, generator=generator, dtype=torch.float64) * noise_std
        new_state[name] = (global_state[name].double() + mean_update[name] + noise).to(global_state[name].dtype)
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
    from the global weights and trains ``local_epochs`` epochs on its own data only; the server
    aggregates their states with ``aggregator``:

    - ``"mean"``: :func:`fedavg`, weighted by the clients' training-set sizes;
    - ``"median"``: :func:`median_aggregate` (robust aggregation, PAPER_FACTS fact 15);
    - ``"dp"``: :func:`dp_fedavg` with ``clip_norm`` ``S`` and ``noise_std`` ``sigma`` (fact 15).

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
    local_model = copy.deepcopy(global_model)
    generator = torch.Generator().manual_seed(seed)
    num_clients = len(client_train)
    per_round = max(1, round(client_fraction * num_clients))
    sizes = [len(labels) for _, labels in client_train]
    history = FedAvgHistory()

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
        states = []
        for k in chosen:
            local_model.load_state_dict(global_state)
            images, labels = client_train[k]
            train(local_model, images, labels, epochs=local_epochs, lr=lr, batch_size=batch_size,
                  optimizer=optimizer, momentum=momentum, generator=generator, progress=False)
            states.append({name: value.detach().clone() for name, value in local_model.state_dict().items()})
        weights = [sizes[k] for k in chosen]
        history.selected.append(chosen)
        history.update_norms.append(np.array([update_norm(state, global_state) for state in states]))
        if aggregator == "mean":
            new_state = fedavg(states, weights)
        elif aggregator == "median":
            new_state = median_aggregate(states)
        else:
            new_state = dp_fedavg(global_state, states, weights, clip_norm, noise_std, generator)
        global_model.load_state_dict(new_state)
        evaluate()
        if history.global_accuracy:
            bar.set_postfix(accuracy=f"{history.global_accuracy[-1]:.3f}")
    history.seconds = time.perf_counter() - start
    global_model.eval()
    return global_model, history


# --- Figures of lesson 3 -----------------------------------------------------------------------


def plot_partition(client_indices, labels, ax=None, title: str | None = None, num_classes: int = 10) -> Figure:
    """A stacked bar per client of its class counts (one colour per class). Returns the figure."""
    labels = np.asarray(labels)
    counts = np.array([np.bincount(labels[np.asarray(idx, dtype=int)], minlength=num_classes) for idx in client_indices])
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3))
    fig = ax.figure
    bottom = np.zeros(len(counts))
    palette = plt.get_cmap("tab10")
    for c in range(num_classes):
        ax.bar(np.arange(len(counts)), counts[:, c], bottom=bottom, color=palette(c % 10), label=str(c), width=0.85)
        bottom += counts[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("examples (count)")
    ax.set_xticks(np.arange(len(counts)), [str(k) for k in range(len(counts))], fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def plot_partitions_by_alpha(labels=None, alphas=(100, 1, 0.1), num_clients: int = 20, seed: int = 0,
                             min_samples: int = 25) -> Figure:
    """Lesson 3's README picture: Dirichlet partitions of the digits at each ``alpha`` side by side,
    each titled with its class skew (mean total-variation distance from the pooled mix).
    ``labels`` defaults to the training labels of :func:`load_digits_split`; the defaults draw the
    partitions of lesson 3's federations (:func:`fedkd_lessons.data.make_federation`)."""
    if labels is None:
        labels = load_digits_split().train_labels.numpy()
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    fig, axes = plt.subplots(1, len(alphas), figsize=(4.2 * len(alphas), 3.2), sharey=True)
    for ax, alpha in zip(np.atleast_1d(axes), alphas):
        parts = dirichlet_partition(labels, num_clients, alpha, seed, min_samples=min_samples)
        skew = class_mix_distances([labels[p] for p in parts], num_classes).mean()
        plot_partition(parts, labels, ax=ax, title=f"alpha = {alpha:g}: class skew {skew:.2f}", num_classes=num_classes)
    for ax in np.atleast_1d(axes)[1:]:
        ax.set_ylabel("")
    handles, names = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, names, title="class", loc="center right", fontsize=8)
    fig.suptitle("Smaller alpha, more skewed clients: Dirichlet partitions of the digits", y=1.0)
    fig.tight_layout(rect=(0, 0, 0.94, 1))
    return fig


def plot_accuracy_curves(histories: Mapping[str, FedAvgHistory], title: str, colours: Mapping[str, str] | None = None) -> Figure:
    """Global test accuracy (%) per round, one line per run (``{label: history}``). Returns the figure."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, history in histories.items():
        colour = (colours or COLOURS).get(label)
        ax.plot(range(len(history.global_accuracy)), 100 * np.array(history.global_accuracy),
                marker="o", markersize=3, label=label, color=colour)
    ax.set_xlabel("communication round")
    ax.set_ylabel("global test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_client_accuracy_histogram(accuracies: Mapping[str, np.ndarray], title: str,
                                   colours: Mapping[str, str] | None = None) -> Figure:
    """Histogram of the global model's accuracy (%) on each client's own test set, one per run."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    lowest = min(float(np.min(values)) for values in accuracies.values())
    bins = np.arange(5 * max(0, int(20 * lowest) - 1), 101, 5)  # 5-point bins from just under the worst client
    for label, values in accuracies.items():
        values = 100 * np.asarray(values)
        colour = (colours or COLOURS).get(label)
        ax.hist(values, bins=bins, alpha=0.6, label=f"{label} (median {np.median(values):.0f} %)", color=colour,
                edgecolor="white")
    ax.set_xlabel("global model's accuracy on the client's own test set (%)")
    ax.set_ylabel("clients (count)")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def class_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> np.ndarray:
    """``(C,)`` accuracy of ``model`` on the examples of each class (NaN for a class with none)."""
    predicted = predict_logits(model, images).argmax(dim=1)
    return np.array([(predicted[labels == c] == c).float().mean().item() if (labels == c).any() else np.nan
                     for c in range(num_classes)])


def plot_aggregator_cost(per_class: Mapping[str, np.ndarray], per_client: Mapping[str, np.ndarray], title: str,
                         baseline: str = "mean", colours: Mapping[str, str] | None = None) -> Figure:
    """What a robust or private aggregator costs, and whom: left, the global model's accuracy (%)
    per class for each aggregator (``{label: (C,)}``); right, each client's accuracy under the
    ``baseline`` aggregator (x) against the others (y), ``{label: (K,)}``: points under the
    diagonal are clients the aggregator hurt."""
    colours = colours or COLOURS
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
    width = 0.8 / len(per_class)
    for i, (label, values) in enumerate(per_class.items()):
        left.bar(np.arange(len(values)) + (i - (len(per_class) - 1) / 2) * width, 100 * np.asarray(values), width,
                 label=label, color=colours.get(label))
    left.set_xticks(np.arange(len(next(iter(per_class.values())))))
    left.set_xlabel("digit class")
    left.set_ylabel("global test accuracy (%)")
    left.set_title("Per class: which digits each global model still knows")
    left.legend(fontsize=8, ncols=len(per_class))
    left.set_ylim(0, 115)
    reference = 100 * np.asarray(per_client[baseline])
    right.plot([0, 100], [0, 100], color=colours.get(baseline, "grey"), linewidth=1, linestyle="--")
    for label, values in per_client.items():
        if label != baseline:
            change = 100 * np.asarray(values) - reference
            right.scatter(reference, 100 * np.asarray(values), color=colours.get(label), alpha=0.8,
                          label=f"{label}: mean {change.mean():+.1f}, worst {change.min():+.0f} points")
    right.set_xlabel(f"client's accuracy under {baseline} (%)")
    right.set_ylabel("under the other aggregator (%)")
    right.set_title("Per client: under the diagonal = hurt")
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def plot_client_examples(client_sets, clients=(0, 1, 2), per_client: int = 8) -> Figure:
    """A row of each chosen client's first ``per_client`` images, titled with their labels: what
    each client holds, and what the server never sees."""
    fig, axes = plt.subplots(len(clients), per_client, figsize=(0.9 * per_client, 1.05 * len(clients)), squeeze=False)
    for row, client in zip(axes, clients):
        images, labels = client_sets[client]
        for column, ax in enumerate(row):
            if column < len(labels):
                show_digit(ax, images[column], str(int(labels[column])))
            else:
                ax.axis("off")
        row[0].set_ylabel(f"client {client}", rotation=0, ha="right", va="center")
    fig.suptitle("Each client sees only its own digits; the server sees none of them", y=1.02)
    fig.tight_layout()
    return fig
