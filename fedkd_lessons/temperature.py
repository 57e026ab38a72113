"""The temperature-softened softmax and the entropy that measures how soft it is (lesson 1)."""

import torch

from fedkd_lessons.engine.validation import POSITIVE, Integer, as_logits, checked_arguments


def _scaled_shifted_logits(logits, temperature, dim):
    logits = as_logits(logits, dim=dim)
    # Subtract the maximum *before* dividing by T: every entry is then <= 0, so neither a huge
    # logit (1e4) nor a tiny temperature (1e-30) can overflow exp(). The result is unchanged
    # because softmax is invariant to adding a constant to every logit.
    shift = logits.amax(dim=dim, keepdim=True)
    if torch.isneginf(shift).any():
        raise ValueError("logits: every class is -inf in some row; at least one must be finite")
    return (logits - shift) / temperature


@checked_arguments(temperature=POSITIVE, dim=Integer())
def softmax_with_temperature(logits, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    """Softened class probabilities ``q_i = exp(z_i / T) / sum_j exp(z_j / T)``.

    Hinton, Vinyals & Dean 2015, Eq. 1. ``T = 1`` is the ordinary softmax; ``T -> 0`` tends to
    the one-hot argmax, ``T -> inf`` to the uniform distribution.

    Args:
        logits: tensor (or array) of shape ``(..., C, ...)``, classes along ``dim``.
        temperature: ``T``, a finite number > 0.
        dim: the class dimension.

    Returns:
        A tensor of the same shape whose entries along ``dim`` are >= 0 and sum to 1.
        Stable for logits of any size (the log-sum-exp trick).
    """
    shifted = _scaled_shifted_logits(logits, temperature, dim)
    exponentials = shifted.exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@checked_arguments(temperature=POSITIVE, dim=Integer())
def log_softmax_with_temperature(logits, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    """``log q_i = z_i / T - log sum_j exp(z_j / T)``, computed without forming ``q``.

    Same arguments and shapes as :func:`softmax_with_temperature`; for losses (FedMD's consensus
    on softened probabilities, lesson 5) where ``log q`` of a tiny ``q`` must not underflow to ``-inf``.
    """
    shifted = _scaled_shifted_logits(logits, temperature, dim)
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


@checked_arguments(dim=Integer())
def entropy(probs, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``H(q) = -sum_i q_i log q_i`` in nats, with ``0 log 0 = 0``.

    Args:
        probs: tensor of shape ``(..., C, ...)`` whose entries along ``dim`` are >= 0 and sum to 1.
        dim: the class dimension.

    Returns:
        Tensor with ``dim`` removed; 0 for a one-hot row, ``log C`` for a uniform one.
    """
    probs = as_logits(probs, name="probs", dim=dim)
    if (probs < 0).any() or torch.isinf(probs).any():
        raise ValueError("probs must be finite and >= 0 (did you pass logits instead of probabilities?)")
    sums = probs.sum(dim=dim)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        worst = float((sums - 1).abs().max())
        raise ValueError(f"probs must sum to 1 along dim={dim}; the worst row is off by {worst:.3g}")
    return -torch.special.xlogy(probs, probs).sum(dim=dim)


@checked_arguments(temperature=POSITIVE)
def resemblance_table(logits, labels, temperature: float) -> torch.Tensor:
    """What a model thinks each class resembles: entry ``(c, d)`` is the mean softened probability
    ``softmax(z / T)_d`` over the digits whose true class is ``c`` (lesson 1's dark-knowledge map).

    Args:
        logits: ``(N, C)`` logits; labels: ``(N,)`` true classes; temperature: ``T`` > 0.

    Returns:
        ``(C, C)`` tensor, rows = true class, columns = class; the diagonal (the right answer) is NaN,
        so that the largest entry of a row is the wrong class its digits lean to most. A class
        with no digit gives a row of NaN.
    """
    logits, labels = as_logits(logits, dim=-1), torch.as_tensor(labels)
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, C) and labels (N,); got {tuple(logits.shape)} and {tuple(labels.shape)}")
    probs = softmax_with_temperature(logits, temperature)
    num_classes = logits.shape[1]
    table = torch.stack([probs[labels == c].mean(dim=0) for c in range(num_classes)])
    return table.fill_diagonal_(float("nan"))


def strongest_lookalikes(table: torch.Tensor) -> list[tuple[int, int, float]]:
    """Each class's strongest look-alike from a :func:`resemblance_table`: ``(class, wrong class,
    mean probability)`` per row, strongest first."""
    rows = []
    for true_class, row in enumerate(table):
        if torch.isnan(row).all():
            continue
        lookalike = int(row.nan_to_num(float("-inf")).argmax())
        rows.append((true_class, lookalike, float(row[lookalike])))
    return sorted(rows, key=lambda entry: -entry[2])
