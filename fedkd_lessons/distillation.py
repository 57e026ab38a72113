"""Hinton knowledge distillation: the loss, a teacher, and a student trained on a transfer set (lesson 2).

Lesson 4 reuses :func:`distillation_loss` and :func:`train_student` with the frozen federated model
as the teacher and a student that starts from it (Yu et al. 2020: ``T = 6``, ``alpha = 0.95``).
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.models import last_linear_layer, predict_logits
from fedkd_lessons.engine.training import train
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Each, Instance, Integer, OneOf, Real, as_logits,
                                             checked_arguments)


def _check_targets(targets, num_examples: int, num_classes: int) -> torch.Tensor:
    targets = torch.as_tensor(targets)
    if targets.is_floating_point() or targets.dtype == torch.bool or targets.ndim != 1:
        raise ValueError(
            f"targets must be a 1-D tensor of integer class indices, got dtype {targets.dtype} "
            f"and shape {tuple(targets.shape)}"
        )
    if len(targets) != num_examples:
        raise ValueError(f"targets has {len(targets)} entries but the logits have {num_examples} rows")
    if num_examples and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(
            f"targets must be class indices in [0, {num_classes - 1}], "
            f"got values from {int(targets.min())} to {int(targets.max())}"
        )
    return targets


@checked_arguments(temperature=POSITIVE, alpha=FRACTION, reduction=OneOf("mean", "none"))
def distillation_loss(student_logits, teacher_logits, targets=None, temperature: float = 4.0, alpha: float = 0.9,
                      reduction: str = "mean"):
    r"""Hinton's distillation loss: soft targets at temperature ``T`` plus hard labels at ``T = 1``.

    .. math::
        L = \alpha\, T^2 \, \frac{1}{N} \sum_{n=1}^{N} \mathrm{KL}\big(p_n \,\|\, q_n\big)
            + (1 - \alpha)\, \frac{1}{N} \sum_{n=1}^{N} -\log \mathrm{softmax}(z_n)_{y_n},

    with ``p_n = softmax(v_n / T)`` the teacher's soft targets, ``q_n = softmax(z_n / T)`` the
    student's softened prediction (Hinton, Vinyals & Dean 2015, Eq. 1) and
    ``KL(p || q) = sum_i p_i (log p_i - log q_i)``. The KL differs from the paper's cross-entropy
    with soft targets only by the teacher's entropy, a constant, so the gradient is the paper's
    Eq. 2 times ``T^2``: ``dL/dz_ni = alpha * T * (q_ni - p_ni) / N`` plus the hard term's. The soft
    gradients shrink as ``1/T^2``; the ``T^2`` keeps the two terms in balance as ``T`` changes
    (Hinton et al. 2015, section 2).

    Reduction: the KL is summed over the classes of each example and averaged over the ``N``
    examples (``reduction="batchmean"`` in ``torch.nn.functional.kl_div``). A mean over all
    ``N * C`` elements, as ``nn.KLDivLoss()`` with its default ``reduction="mean"`` computes (and
    as some published code, e.g. Yu et al.'s, uses), is this soft term divided by ``C``: it silently
    lowers the soft weight and is not the KL divergence.

    Args:
        student_logits: ``(N, C)`` the student's raw scores ``z``; gradients flow into them.
        teacher_logits: ``(N, C)`` the teacher's raw scores ``v``; treated as constants (detached).
        targets: ``(N,)`` integer labels in ``[0, C)``, or ``None`` for soft targets only, which
            requires ``alpha = 1``.
        temperature: ``T > 0``, the same for teacher and student (default 4).
        alpha: weight of the soft term in ``[0, 1]`` (default 0.9; the paper found a much lower
            weight on the hard term generally best, section 2).
        reduction: ``"mean"`` (the loss above) or ``"none"``: the ``(N,)`` loss of each example,
            whose mean is the loss above (the batched engine averages each model's own examples).

    Returns:
        The scalar loss. ``alpha = 0`` gives exactly ``F.cross_entropy(student_logits, targets)``.
    """
    student_logits = as_logits(student_logits, "student_logits")
    teacher_logits = as_logits(teacher_logits, "teacher_logits").detach()
    if student_logits.ndim != 2:
        raise ValueError(f"student_logits must have shape (N, C), got {tuple(student_logits.shape)}")
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"teacher_logits has shape {tuple(teacher_logits.shape)} but student_logits has "
            f"{tuple(student_logits.shape)}; they must match (same examples, same classes)"
        )
    if targets is None and alpha != 1.0:
        raise ValueError(f"targets=None leaves no hard labels, so alpha must be 1 (soft targets only), got {alpha!r}")
    if targets is not None:
        targets = _check_targets(targets, *student_logits.shape).to(student_logits.device)

    # F.log_softmax subtracts each row's maximum, so logits of any size give finite log q.
    log_q = F.log_softmax(student_logits / temperature, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    p = log_p.exp()
    # A class the teacher rules out (p = 0) contributes 0 log 0 = 0, not 0 * (-inf) = NaN.
    per_class = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))
    per_example = alpha * temperature**2 * per_class.sum(dim=1)
    if alpha < 1.0:
        per_example = per_example + (1.0 - alpha) * F.cross_entropy(student_logits, targets, reduction="none")
    return per_example.mean() if reduction == "mean" else per_example


class LogitEnsemble(nn.Module):
    """A teacher made of several nets whose logits are averaged: ``v = (1/M) sum_m v_m``.

    Averaging in logit space (a geometric mean of the members' probabilities, renormalised) is
    what FedMD's consensus does too (lesson 5). Input and output shapes are those of the members.
    """

    def __init__(self, members):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member model")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images) for member in self.members]).mean(dim=0)


def teacher_logits_for(teacher, images: torch.Tensor) -> torch.Tensor:
    """The teacher's logits ``(N, C)`` on ``images``: ``teacher`` is a model (run once in eval mode,
    without gradients) or its precomputed ``(N, C)`` logits, checked and returned detached."""
    if isinstance(teacher, nn.Module):
        return predict_logits(teacher, images)
    logits = as_logits(teacher, "teacher logits")
    if logits.ndim != 2 or len(logits) != len(images):
        raise ValueError(
            f"precomputed teacher logits must have shape (N, C) with N = {len(images)} images, "
            f"got {tuple(logits.shape)}"
        )
    return logits.detach()


@checked_arguments(student=Instance(nn.Module), epochs=Integer(0), temperature=POSITIVE, alpha=FRACTION)
def train_student(student: nn.Module, images: torch.Tensor, teacher, targets=None, *, epochs: int,
                  temperature: float = 4.0, alpha: float = 0.9, **train_options) -> list[float]:
    """Distil ``teacher`` into ``student`` on the transfer set ``images``; return the epoch losses.

    The teacher's logits on the transfer set are computed once (the teacher is frozen, Hinton et
    al. 2015, section 2); each mini-batch then minimises :func:`distillation_loss` with
    ``temperature`` and ``alpha``. The student is trained in place and used afterwards at ``T = 1``.

    Args:
        student: the model to train (fresh, or pre-trained as in lesson 4's local adaptation).
        images: the transfer set ``(N, ...)``; it may be unlabelled.
        teacher: an ``nn.Module`` (e.g. a big net or a :class:`LogitEnsemble`) or its precomputed
            ``(N, C)`` logits on ``images``.
        targets: ``(N,)`` hard labels for the ``(1 - alpha)`` term, or ``None`` with ``alpha = 1``.
        epochs: passes over the transfer set.
        **train_options: passed on to :func:`fedkd_lessons.engine.training.train` (``lr``, ``batch_size``,
            ``optimizer``, ``generator``, ``progress``, ``description``, ...).
    """
    teacher_logits = teacher_logits_for(teacher, images)
    if targets is None and alpha != 1.0:
        raise ValueError(f"targets=None leaves no hard labels, so alpha must be 1 (soft targets only), got {alpha!r}")
    batch_targets = (teacher_logits,) if targets is None else (
        teacher_logits, _check_targets(targets, *teacher_logits.shape))
    loss_fn = functools.partial(distillation_loss, temperature=temperature, alpha=alpha)
    train_options.setdefault("description", f"distilling (T={temperature:g}, alpha={alpha:g})")
    return train(student, images, batch_targets, epochs=epochs, loss_fn=loss_fn, **train_options)


@checked_arguments(class_index=Integer(0), shift=Real())
def shift_class_logit(logits, class_index: int, shift: float) -> torch.Tensor:
    """``logits`` ``(N, C)`` with ``shift`` added to column ``class_index``: what raising that
    class's output bias by ``shift`` does to a model (Hinton et al. 2015, section 3)."""
    logits = as_logits(logits)
    if logits.ndim != 2 or not 0 <= class_index < logits.shape[1]:
        raise ValueError(f"class_index must be in [0, {logits.shape[-1] - 1}] for logits (N, C), got {class_index!r}")
    shifted = logits.clone()
    shifted[:, class_index] += shift
    return shifted


@checked_arguments(class_index=Integer(0), shifts=Each(Real()))
def choose_bias_shift(logits, labels, class_index: int, shifts) -> tuple[float, torch.Tensor]:
    """Pick the bias shift for ``class_index`` that maximises accuracy on a *validation* split.

    Hinton et al. (2015, section 3) raised the bias of class 3, never seen in the transfer set,
    by 3.5; here the value is chosen among ``shifts`` on held-out labelled ``logits`` ``(N, C)``
    and ``labels`` ``(N,)``, never on the test set. Ties go to the smallest shift.

    Returns:
        ``(best_shift, accuracies)`` with ``accuracies[k]`` the validation accuracy at ``shifts[k]``.
    """
    logits = as_logits(logits)
    shifts = torch.as_tensor(shifts, dtype=torch.float64)
    labels = _check_targets(labels, *logits.shape)
    accuracies = torch.tensor([
        (shift_class_logit(logits, class_index, float(shift)).argmax(dim=1) == labels).double().mean().item()
        for shift in shifts
    ], dtype=torch.float64)
    best = accuracies == accuracies.max()
    return float(shifts[best].min()), accuracies


@checked_arguments(model=Instance(nn.Module), class_index=Integer(0), shift=Real())
@torch.no_grad()
def shift_class_bias(model: nn.Module, class_index: int, shift: float) -> nn.Module:
    """Add ``shift`` to the output bias of ``class_index`` in ``model``'s last linear layer, in place."""
    head = last_linear_layer(model)
    if head.bias is None or not 0 <= class_index < head.out_features:
        raise ValueError(f"class_index must be in [0, {head.out_features - 1}] of a head with a bias, got {class_index!r}")
    head.bias[class_index] += shift
    return model
