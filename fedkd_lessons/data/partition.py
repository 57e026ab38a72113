"""The data split among federated clients: i.i.d. or Dirichlet over the classes, each client's own
train/test split, and how skewed a partition is (lesson 3)."""

from dataclasses import dataclass

import numpy as np
import torch

from fedkd_lessons.data.digits import LABELS, OPEN_FRACTION
from fedkd_lessons.engine.validation import POSITIVE, Each, Integer, Optional, Tensor, checked_arguments

INDICES = Tensor(ndim=1, dtype="integer")


def _check_labels_and_clients(labels, num_clients) -> np.ndarray:
    """``labels`` (declared one-dimensional) as an array, after checking every client can hold one."""
    labels = np.asarray(labels)
    if num_clients > len(labels):
        raise ValueError(
            f"num_clients must be at most the number of samples ({len(labels)}), got {num_clients}: "
            "some client would hold no data"
        )
    return labels


@checked_arguments(labels=LABELS, num_clients=Integer(1), seed=Integer(0))
def iid_partition(labels, num_clients: int, seed: int) -> list[np.ndarray]:
    """Deal the examples out to ``num_clients`` clients at random, in near-equal shares.

    Every client's class mix is then close to the pooled mix: the i.i.d. setting of McMahan et al.
    2017. ``labels`` ``(N,)`` is used only for its length (and for the same signature as
    :func:`dirichlet_partition`). Returns one sorted index array per client; together they cover
    ``range(N)`` exactly once and sizes differ by at most one.
    """
    labels = _check_labels_and_clients(labels, num_clients)
    order = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_clients)]


@checked_arguments(labels=LABELS, num_clients=Integer(1), concentration=POSITIVE, seed=Integer(0),
                   min_samples=Integer(0), max_retries=Integer(1))
def dirichlet_partition(
    labels, num_clients: int, concentration: float, seed: int, min_samples: int = 1, max_retries: int = 100
) -> list[np.ndarray]:
    """Split each class among the clients with shares drawn from a Dirichlet distribution of
    concentration ``concentration`` (the symbol alpha of Yu et al. 2020).

    For every class ``c`` a vector ``p_c ~ Dir(concentration * 1_K)`` over the ``K`` clients is drawn
    and the (shuffled) examples of ``c`` are cut into ``K`` consecutive pieces of sizes ``p_c * n_c``.
    This is the non-i.i.d. split of Yu et al. 2020 (their CIFAR-10 setting: 100 participants,
    concentration 0.9; their code's ``sample_dirichlet_train_data``), except that the cut points are
    cumulative so no example is dropped. A large concentration (100) gives every client nearly the
    pooled class mix; a small one (0.1) gives each class to one or two clients.

    A draw that leaves some client with fewer than ``min_samples`` examples is redrawn, up to
    ``max_retries`` times, then a ``ValueError`` says so (lower ``min_samples`` or ``num_clients``,
    or raise ``concentration``).

    Args:
        labels: integer class labels ``(N,)``.
        num_clients: ``K``, between 1 and ``N``.
        concentration: the Dirichlet concentration, a finite number > 0.
        seed: seed of the NumPy generator; the same seed gives the same partition.
        min_samples: the fewest examples a client may hold (default 1: nobody is empty).
        max_retries: how many draws to try before giving up.

    Returns:
        ``K`` sorted index arrays, disjoint, together covering ``range(N)``.
    """
    labels = _check_labels_and_clients(labels, num_clients)
    if min_samples * num_clients > len(labels):
        raise ValueError(
            f"min_samples={min_samples} for each of {num_clients} clients needs "
            f"{min_samples * num_clients} samples, but there are only {len(labels)}"
        )
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(max_retries):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            members = rng.permutation(members)
            shares = rng.dirichlet(np.full(num_clients, concentration))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, piece in enumerate(np.split(members, cuts)):
                parts[client].append(piece)
        clients = [np.sort(np.concatenate(pieces)) for pieces in parts]
        if min(len(client) for client in clients) >= min_samples:
            return clients
    raise ValueError(
        f"dirichlet_partition: after {max_retries} draws some client still held fewer than "
        f"min_samples={min_samples} examples (concentration={concentration}, num_clients={num_clients}, "
        f"{len(labels)} samples); lower min_samples or num_clients, raise concentration, or allow more max_retries"
    )


@checked_arguments(client_indices=Each(INDICES), test_share=OPEN_FRACTION, min_test=Integer(1), min_train=Integer(1),
                   seed=Integer(0))
def local_train_test_split(
    client_indices, test_share: float = 0.25, min_test: int = 1, min_train: int = 1, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split every client's examples into its own local train and local test part.

    Each client keeps ``max(min_test, round(test_share * n_k))`` of its ``n_k`` examples, chosen
    at random, as the local test set that judges *that* client (Yu et al. 2020 hold out each
    Reddit participant's last 10 %). A client with fewer than
    ``min_test + min_train`` examples raises ``ValueError``: partition with
    ``min_samples >= min_test + min_train``.

    Args:
        client_indices: one index array per client (e.g. from :func:`dirichlet_partition`).
        test_share: fraction of each client's data held out, in (0, 1).
        min_test: the fewest local test examples per client (raise it when clients are small:
            a 25 % share of 40 images is only 10 images, too few to judge a client).
        min_train: the fewest local training examples per client.

    Returns:
        ``(train_parts, test_parts)``: two lists of sorted index arrays (indices into the same
        dataset as ``client_indices``), disjoint within each client.
    """
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for client, indices in enumerate(client_indices):
        indices = np.asarray(indices)
        num_test = max(min_test, int(round(test_share * len(indices))))
        if len(indices) - num_test < min_train:
            raise ValueError(
                f"client {client} holds {len(indices)} examples: too few for {num_test} local test "
                f"and at least min_train={min_train} local training examples; partition with a "
                f"larger min_samples or lower min_test"
            )
        order = rng.permutation(indices)
        test_parts.append(np.sort(order[:num_test]))
        train_parts.append(np.sort(order[num_test:]))
    return train_parts, test_parts


@checked_arguments(client_labels=Each(LABELS), num_classes=Integer(1))
def class_mix_distances(client_labels, num_classes: int) -> np.ndarray:
    """Total-variation distance between each client's class mix and the pooled class mix.

    ``d_k = 1/2 sum_c |p_k(c) - p(c)|`` with ``p_k`` the class shares of client ``k`` and ``p``
    those of all clients together. 0 means client ``k`` looks like the whole dataset; the value
    approaches ``1 - p(c)`` when client ``k`` holds only class ``c`` (0.9 for ten balanced classes).

    Args:
        client_labels: one label array per client (each non-empty).
        num_classes: ``C``; labels must lie in ``[0, C)``.

    Returns:
        ``(K,)`` distances in [0, 1].
    """
    counts = []
    for client, labels in enumerate(client_labels):
        labels = np.asarray(labels, dtype=int)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"client {client} has labels outside [0, {num_classes})")
        counts.append(np.bincount(labels, minlength=num_classes))
    counts = np.array(counts, dtype=float)
    pooled = counts.sum(axis=0) / counts.sum()
    shares = counts / counts.sum(axis=1, keepdims=True)
    return 0.5 * np.abs(shares - pooled).sum(axis=1)


@checked_arguments(client_labels=Each(LABELS), num_classes=Integer(1))
def class_skew(client_labels, num_classes: int) -> float:
    """The mean over clients of :func:`class_mix_distances`: one number for how non-i.i.d. a
    partition is (0 = every client has the pooled mix). Lesson 3 measures the concentration with it."""
    return float(class_mix_distances(client_labels, num_classes).mean())


@checked_arguments(images=Tensor(), labels=LABELS, client_indices=Each(INDICES))
def client_datasets(images: torch.Tensor, labels: torch.Tensor, client_indices) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(images[idx], labels[idx]) for idx in client_indices]``: each client's own data."""
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    return [(images[torch.as_tensor(idx, dtype=torch.long)], labels[torch.as_tensor(idx, dtype=torch.long)])
            for idx in client_indices]


@dataclass(frozen=True)
class Federation:
    """Each client's own data, as lessons 3-5 use it: ``train[k]`` and ``test[k]`` are the
    ``(images, labels)`` of client ``k``'s local training and local test sets; the index arrays
    say which rows of the source dataset they are."""

    train: list
    test: list
    train_indices: list
    test_indices: list

    def __repr__(self) -> str:
        sizes = [len(labels) for _, labels in self.train]
        tests = [len(labels) for _, labels in self.test]
        return (f"Federation({len(sizes)} clients, local train {min(sizes)}-{max(sizes)} "
                f"(median {int(np.median(sizes))}), local test {min(tests)}-{max(tests)} (median {int(np.median(tests))}))")


@checked_arguments(images=Tensor(), labels=LABELS, num_clients=Integer(1), concentration=Optional(POSITIVE),
                   seed=Integer(0), min_samples=Integer(0), test_share=OPEN_FRACTION, min_test=Integer(1),
                   max_retries=Integer(1))
def make_federation(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_clients: int,
    concentration: float | None,
    seed: int = 0,
    min_samples: int = 25,
    test_share: float = 0.3,
    min_test: int = 10,
    max_retries: int = 100,
) -> Federation:
    """Partition ``(images, labels)`` among ``num_clients`` (Dirichlet over classes with
    ``concentration``, or i.i.d. when it is None), then split each client into local train and
    local test (:func:`dirichlet_partition` with ``min_samples`` and ``max_retries``,
    :func:`local_train_test_split`). ``min_samples`` must leave room for ``min_test`` test and at
    least one training example per client."""
    label_array = np.asarray(labels)
    if concentration is None:
        parts = iid_partition(label_array, num_clients, seed)
    else:
        parts = dirichlet_partition(label_array, num_clients, concentration, seed, min_samples=min_samples,
                                    max_retries=max_retries)
    train_parts, test_parts = local_train_test_split(parts, test_share=test_share, min_test=min_test, seed=seed)
    return Federation(client_datasets(images, labels, train_parts), client_datasets(images, labels, test_parts),
                      train_parts, test_parts)
