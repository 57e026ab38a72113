"""Lesson 2's experiments: a teacher and its soft targets, the T^2 gradient check, the logit-matching
limit, students from hard labels vs soft targets, few labels plus teacher-labelled digits, the T x
alpha sweep and the omitted class (Hinton, Vinyals & Dean 2015: Eq. 1-4, sections 2, 2.1 and 3), with
what the lesson's prose claims about them."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fedkd_lessons.engine.batched import ModelStack, StackedData, train_stack
from fedkd_lessons.data.digits import ImageSplit, load_digits_split, stratified_indices
from fedkd_lessons.distillation import (LogitEnsemble, choose_bias_shift, distillation_loss, shift_class_logit,
                                        train_student)
from fedkd_lessons.engine.models import accuracy, make_mlp, predict_logits
from fedkd_lessons.engine.seeding import seed_everything
from fedkd_lessons.temperature import softmax_with_temperature
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.training import train
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Callable, Each, Instance, Integer, Optional, Real,
                                             Tensor, check_fields, checked_arguments)
from fedkd_lessons.experiments.claims import Claim, at_least, at_most
from fedkd_lessons.experiments.intervals import paired_interval

NUM_CLASSES = 10
# Every random stream of the lesson is seed * SEED_STRIDE + a fixed offset (offsets stay below the
# stride), so two seeds never share a stream and seed 0 keeps the offsets as they are.
SEED_STRIDE = 10_000
HARD, PSEUDO, SOFT = "hard labels", "pseudo-labels", "soft targets"


SIZES = Each(Integer(1))
SHARE = Real(0, 1, closed="neither")  # a split that leaves something on both sides


def _check_increasing(values, name: str) -> None:
    if list(values) != sorted(set(values)):
        raise ValueError(f"{name} must be increasing, got {values!r}")


@dataclass(frozen=True)
class Settings:
    """Every constant of lesson 2's experiments. ``seed`` moves everything random: the transfer /
    validation split, the teacher, the students' initial weights and batches, the ensemble's half
    of the transfer set and the labelled digits of section 4b."""

    seed: int = 0
    validation_fraction: float = 0.2  # of the training digits, stratified
    batch_size: int = 128
    lr: float = 1e-2  # every student
    # section 1: the teacher
    teacher_hidden: tuple[int, ...] = (256, 256)
    teacher_dropout: float = 0.3
    teacher_epochs: int = 40
    teacher_lr: float = 3e-3
    # sections 2-3: the gradient checks on a batch of an untrained student's logits
    probe_hidden: int = 16
    probe_batch: int = 64
    probe_temperature: float = 4.0
    gradient_temperatures: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
    matching_temperatures: tuple[float, ...] = (1, 4, 16, 64, 256, 1024)
    # section 4: the students, each comparison repeated with this many student seeds
    student_seeds: int = 5  # every headline over at least five seeds, with a 95 % interval
    student_sizes: tuple[int, ...] = (16, 64)
    student_epochs: int = 40
    temperature: float = 4.0  # train_student's defaults, Hinton's setting of section 4
    alpha: float = 0.9
    # section 4b: a teacher ensemble trained on half the transfer set, students on the other half
    ensemble_size: int = 3
    member_hidden: int = 128
    member_epochs: int = 40
    member_lr: float = 3e-3
    teacher_share: float = 0.5
    labelled_counts: tuple[int, ...] = (50, 200)
    few_label_hidden: int = 32
    steps: int = 300  # optimiser steps for every method, however many digits it sees
    # section 5: the sweep (one student seed per cell)
    sweep_temperatures: tuple[float, ...] = (1, 2, 4, 8, 20)
    sweep_alphas: tuple[float, ...] = (0.5, 0.9, 1.0)
    sweep_epochs: int = 20
    # section 6: the omitted class
    omitted_class: int = 3
    omitted_hidden: int = 64
    omitted_temperature: float = 20.0  # the paper's T, not tuned here
    omitted_epochs: int = 40
    shifts: tuple[float, ...] = tuple(0.5 * k for k in range(21))  # bias shifts tried: 0, 0.5, ..., 10

    def __post_init__(self):
        check_fields(self, seed=Integer(0), validation_fraction=SHARE, batch_size=Integer(1), lr=POSITIVE,
                     teacher_hidden=SIZES, teacher_dropout=Real(0, 1, closed="left"), teacher_epochs=Integer(1),
                     teacher_lr=POSITIVE, probe_hidden=Integer(1), probe_batch=Integer(1), probe_temperature=POSITIVE,
                     gradient_temperatures=Each(POSITIVE, min_length=3),
                     matching_temperatures=Each(POSITIVE, min_length=3),
                     student_seeds=Integer(1), student_sizes=SIZES, student_epochs=Integer(1), temperature=POSITIVE,
                     alpha=FRACTION, ensemble_size=Integer(1), member_hidden=Integer(1), member_epochs=Integer(1),
                     member_lr=POSITIVE, teacher_share=SHARE, labelled_counts=SIZES, few_label_hidden=Integer(1),
                     steps=Integer(1), sweep_temperatures=Each(POSITIVE), sweep_alphas=Each(FRACTION),
                     sweep_epochs=Integer(1), omitted_class=Integer(0, NUM_CLASSES - 1), omitted_hidden=Integer(1),
                     omitted_temperature=POSITIVE, omitted_epochs=Integer(1), shifts=Each(Real()))
        for name in ("gradient_temperatures", "matching_temperatures", "sweep_temperatures"):
            _check_increasing(getattr(self, name), name)

    def derived_seed(self, offset: int) -> int:
        """The seed of one random stream of the lesson: ``seed * SEED_STRIDE + offset``."""
        if not 0 <= offset < SEED_STRIDE:
            raise ValueError(f"offset must be in [0, {SEED_STRIDE - 1}], got {offset!r}")
        return self.seed * SEED_STRIDE + offset

    def generator(self, offset: int) -> torch.Generator:
        """A fresh random stream (batch order, draws) for ``offset``."""
        return torch.Generator().manual_seed(self.derived_seed(offset))


# The offsets of the lesson's random streams (added to seed * SEED_STRIDE).
SPLIT, TEACHER, PROBE, STUDENT, BATCHES, ENSEMBLE_SPLIT, MEMBER, LABELLED, OMITTED_STUDENTS = 0, 0, 1, 100, 0, 1, 10, 1000, 2000


@dataclass
class LessonData:
    """The transfer set (teacher and students learn from it), the validation split every choice is
    made on, and the fixed test set that only reports results."""

    images: torch.Tensor
    labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor


SETTINGS = Instance(Settings)
DATA = Instance(LessonData)
LOGITS = Tensor(ndim=2, dtype="float")
LABELS = Tensor(ndim=1, dtype="integer")
TEMPERATURES = Each(POSITIVE)
SEED = Integer(0)
MODEL = Instance(nn.Module)


def _check_teacher_rows(teacher_logits: torch.Tensor, data: LessonData) -> None:
    """The teacher's logits are on the transfer set: one row per transfer digit."""
    if len(teacher_logits) != len(data.images):
        raise ValueError(f"teacher_logits must give one row per transfer digit of data ({len(data.images)}), got "
                         f"{len(teacher_logits)}")


def _check_same_shape(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher_logits must have the student's shape {tuple(student_logits.shape)} (the same digits "
                         f"and classes), got {tuple(teacher_logits.shape)}")


@checked_arguments(digits=Instance(ImageSplit), settings=SETTINGS)
def split_data(digits: ImageSplit, settings: Settings) -> LessonData:
    """The training digits split (stratified, ``settings.seed``) into transfer set and validation."""
    transfer, validation = stratified_indices(digits.train_labels.numpy(), settings.validation_fraction,
                                              seed=settings.derived_seed(SPLIT))
    return LessonData(digits.train_images[transfer], digits.train_labels[transfer],
                      digits.train_images[validation], digits.train_labels[validation],
                      digits.test_images, digits.test_labels)


@checked_arguments(settings=SETTINGS)
def make_splits(settings: Settings) -> LessonData:
    """The offline digits (fixed train/test split) with the lesson's transfer / validation split."""
    return split_data(load_digits_split(), settings)


@checked_arguments(hidden=SIZES, seed=SEED, dropout=Real(0, 1, closed="left"))
def fresh_mlp(hidden, seed: int, dropout: float = 0.0) -> nn.Sequential:
    """An MLP whose initial weights ``seed`` fixes (a separate generator fixes the batch order)."""
    torch.manual_seed(seed)
    return make_mlp(tuple(hidden), dropout=dropout)


@checked_arguments(students=Each(MODEL), sets=Each(Instance(tuple)), generators=Each(Instance(torch.Generator)),
                   epochs=Integer(0), lr=POSITIVE, batch_size=Integer(1), loss_fn=Optional(Callable()))
def train_together(students: list[nn.Module], sets: list[tuple], generators: list[torch.Generator], *, epochs: int,
                   lr: float, batch_size: int, loss_fn=None) -> ModelStack:
    """Train ``students`` (one architecture) at once, student ``k`` on ``sets[k]`` with batches from
    ``generators[k]``: the batched engine, equal to training them one by one with ``train``."""
    if len(sets) != len(students) or len(generators) != len(students):
        raise ValueError(f"sets and generators must give one per student ({len(students)}), got {len(sets)} and "
                         f"{len(generators)}")
    stack = ModelStack.from_models(students)
    train_stack(stack, StackedData.from_sets(sets), epochs=epochs, lr=lr, batch_size=batch_size, loss_fn=loss_fn,
                generators=generators, progress=False)
    return stack


@checked_arguments(temperature=POSITIVE, alpha=FRACTION)
def distillation_per_example(temperature: float, alpha: float):
    """:func:`distillation_loss` at ``temperature`` and ``alpha``, one loss per example (the
    engine's loss convention); targets ``(teacher_logits, labels)`` or ``(teacher_logits,)``."""
    return functools.partial(distillation_loss, temperature=temperature, alpha=alpha, reduction="none")


@checked_arguments(data=DATA, settings=SETTINGS)
def train_teacher(data: LessonData, settings: Settings, progress: bool | None = None) -> nn.Sequential:
    """Section 1: the wide teacher with dropout, trained on the transfer set."""
    teacher = fresh_mlp(settings.teacher_hidden, settings.derived_seed(TEACHER), dropout=settings.teacher_dropout)
    train(teacher, data.images, data.labels, epochs=settings.teacher_epochs, lr=settings.teacher_lr,
          batch_size=settings.batch_size, generator=settings.generator(BATCHES), progress=progress,
          description="teacher")
    return teacher


@checked_arguments(data=DATA, settings=SETTINGS)
def probe_logits(data: LessonData, settings: Settings) -> torch.Tensor:
    """An untrained student's logits on the first ``probe_batch`` transfer digits (sections 2-3)."""
    student = fresh_mlp((settings.probe_hidden,), settings.derived_seed(PROBE))
    return predict_logits(student, data.images[: settings.probe_batch])


# --- Sections 2-3: the gradient of the soft term, closed forms against autograd ----------------


@checked_arguments(student_logits=LOGITS, teacher_logits=LOGITS, temperature=POSITIVE)
def soft_gradient(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Autograd's gradient of the soft term (``alpha = 1``) of :func:`distillation_loss` w.r.t. the
    student's logits ``(N, C)``."""
    _check_same_shape(student_logits, teacher_logits)
    z = student_logits.detach().clone().requires_grad_(True)
    distillation_loss(z, teacher_logits, temperature=temperature, alpha=1.0).backward()
    return z.grad


@checked_arguments(student_logits=LOGITS, teacher_logits=LOGITS, temperature=POSITIVE)
def closed_form_soft_gradient(student_logits, teacher_logits, temperature: float) -> torch.Tensor:
    """``T (q - p) / N``: the T^2 times Hinton's Eq. 2, averaged over the batch."""
    _check_same_shape(student_logits, teacher_logits)
    q = softmax_with_temperature(student_logits.detach(), temperature)
    p = softmax_with_temperature(teacher_logits.detach(), temperature)
    return temperature * (q - p) / len(student_logits)


@checked_arguments(student_logits=LOGITS, teacher_logits=LOGITS, temperatures=TEMPERATURES)
def soft_gradient_norms(student_logits, teacher_logits, temperatures) -> tuple[np.ndarray, np.ndarray]:
    """Norms of the soft gradient at each temperature: ``(without T^2, with T^2)``."""
    with_t2 = np.array([float(soft_gradient(student_logits, teacher_logits, t).norm()) for t in temperatures])
    return with_t2 / np.asarray(temperatures, dtype=float) ** 2, with_t2


@checked_arguments(z=Tensor(ndim=1, dtype="float"), v=Tensor(ndim=1, dtype="float"), temperatures=TEMPERATURES)
def logit_matching_gaps(z, v, temperatures) -> np.ndarray:
    """For one example: ``|| T (q - p) - (z - v)/C || / ||(z - v)/C||`` at each temperature, with
    ``z`` and ``v`` centred first (Eq. 4 holds for zero-mean logits)."""
    if v.shape != z.shape:
        raise ValueError(f"v must have the shape of z {tuple(z.shape)} (one logit per class), got {tuple(v.shape)}")
    z = z - z.mean()
    v = v - v.mean()
    matching = (z - v) / len(z)
    gaps = [float((t * (softmax_with_temperature(z, t) - softmax_with_temperature(v, t)) - matching).norm()
                  / matching.norm()) for t in temperatures]
    return np.array(gaps)


@dataclass
class GradientChecks:
    """Sections 2-3 on one batch of an untrained student's logits against the teacher's."""

    autograd_gap: float  # largest |autograd - T (q - p) / N| at probe_temperature
    gradient_scale: float  # mean |T (q - p) / N|, what the gap is small against
    norms_without: np.ndarray  # per settings.gradient_temperatures
    norms_with: np.ndarray
    matching_gaps: np.ndarray  # per settings.matching_temperatures, for the batch's first digit
    student_spread: float  # std of the first digit's centred logits
    teacher_spread: float


@checked_arguments(student_logits=LOGITS, teacher_logits=LOGITS, settings=SETTINGS)
def gradient_checks(student_logits, teacher_logits, settings: Settings) -> GradientChecks:
    """The T^2 check, the gradient norms over T and the logit-matching limit."""
    _check_same_shape(student_logits, teacher_logits)
    t = settings.probe_temperature
    closed = closed_form_soft_gradient(student_logits, teacher_logits, t)
    gap = float((soft_gradient(student_logits, teacher_logits, t) - closed).abs().max())
    norms_without, norms_with = soft_gradient_norms(student_logits, teacher_logits, settings.gradient_temperatures)
    z, v = student_logits.detach()[0], teacher_logits.detach()[0]
    return GradientChecks(gap, float(closed.abs().mean()), norms_without, norms_with,
                          logit_matching_gaps(z, v, settings.matching_temperatures),
                          float((z - z.mean()).std()), float((v - v.mean()).std()))


# --- Section 4a: the same transfer set, hard labels vs soft targets ----------------------------


@checked_arguments(data=DATA, settings=SETTINGS, size=Integer(1), index=Integer(0))
def hard_label_student(data: LessonData, settings: Settings, size: int, index: int) -> nn.Sequential:
    """Section 4a's student of ``size`` hidden units and student seed ``index``, on the hard labels."""
    student = fresh_mlp((size,), settings.derived_seed(STUDENT + index))
    train(student, data.images, data.labels, epochs=settings.student_epochs, lr=settings.lr,
          batch_size=settings.batch_size, generator=settings.generator(BATCHES + index), progress=False)
    return student


@checked_arguments(data=DATA, teacher_logits=LOGITS, settings=SETTINGS, size=Integer(1), index=Integer(0))
def soft_target_student(data: LessonData, teacher_logits, settings: Settings, size: int, index: int) -> nn.Sequential:
    """The same student (same initial weights, same batches) distilled from ``teacher_logits``."""
    _check_teacher_rows(teacher_logits, data)
    student = fresh_mlp((size,), settings.derived_seed(STUDENT + index))
    train_student(student, data.images, teacher_logits, data.labels, temperature=settings.temperature,
                  alpha=settings.alpha, epochs=settings.student_epochs, lr=settings.lr,
                  batch_size=settings.batch_size, generator=settings.generator(BATCHES + index), progress=False)
    return student


@checked_arguments(data=DATA, teacher_logits=LOGITS, settings=SETTINGS)
def same_set_students(data: LessonData, teacher_logits: torch.Tensor, settings: Settings,
                      progress: bool | None = None) -> dict[int, dict[str, np.ndarray]]:
    """Section 4a: test accuracy per student size and method (hard labels, soft targets), one entry
    per student seed, every student trained on the same transfer set. Each student is the one
    :func:`hard_label_student` / :func:`soft_target_student` make; the seeds of one size and
    method train at once (:mod:`fedkd_lessons.engine.batched`)."""
    _check_teacher_rows(teacher_logits, data)
    seeds = range(settings.student_seeds)
    sets = {HARD: (data.images, data.labels), SOFT: (data.images, teacher_logits, data.labels)}
    losses = {HARD: None, SOFT: distillation_per_example(settings.temperature, settings.alpha)}
    results = {}
    for size in progress_bar(settings.student_sizes, progress, description="4a: students"):
        results[size] = {}
        for method in (HARD, SOFT):  # the same initial weights and batches for both methods, seed by seed
            stack = train_together([fresh_mlp((size,), settings.derived_seed(STUDENT + k)) for k in seeds],
                                   [sets[method]] * len(seeds), [settings.generator(BATCHES + k) for k in seeds],
                                   epochs=settings.student_epochs, lr=settings.lr, batch_size=settings.batch_size,
                                   loss_fn=losses[method])
            results[size][method] = stack.accuracy(data.test_images, data.test_labels)
    return results


# --- Section 4b: few labels plus teacher-labelled digits ---------------------------------------


@dataclass
class EnsembleTeacher:
    """Section 4b's teacher: an ensemble trained on one half of the transfer set; the students'
    pool is the other half, with the ensemble's logits and argmax on it."""

    ensemble: LogitEnsemble
    members: list[nn.Module]
    teacher_half: np.ndarray  # indices into the transfer set
    pool: np.ndarray
    pool_teacher_logits: torch.Tensor
    pseudo_labels: torch.Tensor


@checked_arguments(data=DATA, settings=SETTINGS)
def train_ensemble_teacher(data: LessonData, settings: Settings, progress: bool | None = None) -> EnsembleTeacher:
    """Split the transfer set (stratified) and train ``ensemble_size`` MLPs on the teacher's half."""
    teacher_half, pool = stratified_indices(data.labels.numpy(), 1 - settings.teacher_share,
                                            seed=settings.derived_seed(ENSEMBLE_SPLIT))
    seeds = range(settings.ensemble_size)
    members = [fresh_mlp((settings.member_hidden,), settings.derived_seed(MEMBER + k)) for k in seeds]
    # the members train at once (fedkd_lessons.engine.batched), each with its own initial weights and batches
    train_together(members, [(data.images[teacher_half], data.labels[teacher_half])] * len(members),
                   [settings.generator(MEMBER + k) for k in seeds], epochs=settings.member_epochs,
                   lr=settings.member_lr, batch_size=settings.batch_size).write_to(members)
    ensemble = LogitEnsemble(members)
    pool_teacher_logits = predict_logits(ensemble, data.images[pool])
    return EnsembleTeacher(ensemble, members, teacher_half, pool, pool_teacher_logits, pool_teacher_logits.argmax(1))


@checked_arguments(count=Integer(1), settings=SETTINGS)
def epochs_for(count: int, settings: Settings) -> int:
    """Epochs that give at least ``steps`` optimiser steps on ``count`` digits (the same budget for
    every method, however many digits it sees)."""
    return math.ceil(settings.steps / math.ceil(count / settings.batch_size))


@checked_arguments(data=DATA, teacher=Instance(EnsembleTeacher), settings=SETTINGS)
def few_label_students(data: LessonData, teacher: EnsembleTeacher, settings: Settings,
                       progress: bool | None = None) -> dict[int, dict[str, np.ndarray]]:
    """Section 4b: per number of labelled digits and student seed, three 32-unit students from the
    same initial weights and batch stream: on the labelled digits alone (hard labels); on the whole
    pool with true labels where known and the teacher's argmax elsewhere (pseudo-labels); and the
    same plus the teacher's soft targets (soft targets). Returns test accuracies, one per seed."""
    if max(settings.labelled_counts) > len(teacher.pool):
        raise ValueError(f"settings.labelled_counts must be at most the students' pool of teacher ({len(teacher.pool)} "
                         f"digits), got {max(settings.labelled_counts)}")
    pool_images, pool_labels = data.images[teacher.pool], data.labels[teacher.pool]
    seeds = range(settings.student_seeds)
    options = dict(lr=settings.lr, batch_size=settings.batch_size)
    pool_epochs = epochs_for(len(pool_labels), settings)
    results = {}
    for n_labelled in progress_bar(settings.labelled_counts, progress, description="4b: students"):
        labelled = [torch.randperm(len(pool_labels), generator=settings.generator(LABELLED + k))[:n_labelled]
                    for k in seeds]
        targets = []
        for chosen in labelled:
            mixed = teacher.pseudo_labels.clone()
            mixed[chosen] = pool_labels[chosen]  # true labels where we have them, the teacher's argmax elsewhere
            targets.append(mixed)
        sets = {
            HARD: [(pool_images[chosen], pool_labels[chosen]) for chosen in labelled],
            PSEUDO: [(pool_images, mixed) for mixed in targets],
            SOFT: [(pool_images, teacher.pool_teacher_logits, mixed) for mixed in targets],
        }
        results[n_labelled] = {}
        for method, method_sets in sets.items():
            # every method's students: the same initial weights and batch stream per seed, all seeds at once
            stack = train_together(
                [fresh_mlp((settings.few_label_hidden,), settings.derived_seed(STUDENT + k)) for k in seeds],
                method_sets, [settings.generator(BATCHES + k) for k in seeds],
                epochs=epochs_for(n_labelled, settings) if method == HARD else pool_epochs,
                loss_fn=distillation_per_example(settings.temperature, settings.alpha) if method == SOFT else None,
                **options)
            results[n_labelled][method] = stack.accuracy(data.test_images, data.test_labels)
    return results


# --- Section 5: the T x alpha sweep -------------------------------------------------------------


@checked_arguments(data=DATA, teacher_logits=LOGITS, settings=SETTINGS)
def temperature_alpha_sweep(data: LessonData, teacher_logits, settings: Settings,
                            progress: bool | None = None) -> dict[int, np.ndarray]:
    """Validation accuracy per student size, a grid ``(len(sweep_alphas), len(sweep_temperatures))``;
    one student seed for every cell (the same initial weights and batches), Hinton's setting."""
    _check_teacher_rows(teacher_logits, data)
    cells = [(i, j) for i in range(len(settings.sweep_alphas)) for j in range(len(settings.sweep_temperatures))]
    grids = {}
    for size in progress_bar(settings.student_sizes, progress, description="sweep"):
        # one student per cell, all from the same initial weights and batches, trained at once; each
        # cell's loss is distillation_loss at its own T and alpha
        losses = [distillation_per_example(settings.sweep_temperatures[j], settings.sweep_alphas[i]) for i, j in cells]

        def per_cell_loss(logits, teacher_logits, labels):
            chunks = zip(logits.chunk(len(cells)), teacher_logits.chunk(len(cells)), labels.chunk(len(cells)))
            return torch.cat([loss(*chunk) for loss, chunk in zip(losses, chunks)])

        stack = train_together([fresh_mlp((size,), settings.derived_seed(STUDENT)) for _ in cells],
                               [(data.images, teacher_logits, data.labels)] * len(cells),
                               [settings.generator(BATCHES) for _ in cells], epochs=settings.sweep_epochs,
                               lr=settings.lr, batch_size=settings.batch_size, loss_fn=per_cell_loss)
        grids[size] = stack.accuracy(data.val_images, data.val_labels).reshape(len(settings.sweep_alphas),
                                                                               len(settings.sweep_temperatures))
    return grids


# --- Section 6: the omitted class ---------------------------------------------------------------


@checked_arguments(logits=Tensor(ndim=2), labels=LABELS, class_index=Integer(0))
def errors(logits, labels, class_index: int) -> tuple[int, int]:
    """``(errors overall, errors on the digits of class_index)`` of ``logits`` ``(N, C)`` against ``labels``."""
    if len(labels) != len(logits):
        raise ValueError(f"labels must give one label per row of logits ({len(logits)}), got {len(labels)}")
    if class_index >= logits.shape[1]:
        raise ValueError(f"class_index must be a class of logits, in [0, {logits.shape[1] - 1}], got {class_index}")
    wrong = logits.argmax(1) != labels
    return int(wrong.sum()), int(wrong[labels == class_index].sum())


@dataclass
class OmittedClassResult:
    """Section 6: a student distilled on the transfer set without one class, its logits, and the
    bias shift of that class chosen on validation."""

    transfer_size: int  # transfer digits the student saw
    removed: int  # digits of the omitted class taken out
    test_logits: torch.Tensor
    val_logits: torch.Tensor
    validation_accuracy: np.ndarray  # one per settings.shifts
    chosen_shift: float


@checked_arguments(student=MODEL, data=DATA, settings=SETTINGS, kept=Integer(0), removed=Integer(0))
def shift_on_validation(student: nn.Module, data: LessonData, settings: Settings, kept: int,
                        removed: int) -> OmittedClassResult:
    """The student's test and validation logits and the bias shift of ``omitted_class`` that
    maximises validation accuracy (:func:`choose_bias_shift`); the test set is only scored."""
    val_logits = predict_logits(student, data.val_images)
    chosen, val_accuracy = choose_bias_shift(val_logits, data.val_labels, settings.omitted_class, list(settings.shifts))
    return OmittedClassResult(kept, removed, predict_logits(student, data.test_images), val_logits,
                              val_accuracy.numpy(), chosen)


@checked_arguments(data=DATA, teacher_logits=LOGITS, settings=SETTINGS)
def omitted_class_students(data: LessonData, teacher_logits, settings: Settings,
                           progress: bool | None = None) -> dict[str, list[OmittedClassResult]]:
    """Section 6 over ``student_seeds`` seeds: on the transfer set without ``omitted_class``, a
    64-unit student distilled with soft targets only (``alpha = 1``, ``T = omitted_temperature``)
    and the same student (same initial weights, same batches) on the hard labels of the digits it
    has; each then gets the bias shift of the omitted class chosen on the validation split.
    Returns ``{SOFT: [result per seed], HARD: [...]}``."""
    _check_teacher_rows(teacher_logits, data)
    c = settings.omitted_class
    kept = data.labels != c
    seeds = range(settings.student_seeds)
    sets = {SOFT: (data.images[kept], teacher_logits[kept]), HARD: (data.images[kept], data.labels[kept])}
    losses = {SOFT: distillation_per_example(settings.omitted_temperature, 1.0), HARD: None}
    results = {}
    for method in progress_bar((SOFT, HARD), progress, description=f"no {c}s"):
        students = [fresh_mlp((settings.omitted_hidden,), settings.derived_seed(OMITTED_STUDENTS + k)) for k in seeds]
        train_together(students, [sets[method]] * len(students),
                       [settings.generator(OMITTED_STUDENTS + k) for k in seeds], epochs=settings.omitted_epochs,
                       lr=settings.lr, batch_size=settings.batch_size, loss_fn=losses[method]).write_to(students)
        results[method] = [shift_on_validation(student, data, settings, int(kept.sum()), int((~kept).sum()))
                           for student in students]
    return results


@checked_arguments(loss_fn=Callable(), data=DATA, teacher_logits=LOGITS, settings=SETTINGS)
def omitted_class_share_with(loss_fn, data: LessonData, teacher_logits, settings: Settings) -> float:
    """Section 6's experiment with another distillation loss (lesson 2, exercise 1): the first seed's
    64-unit student, trained on the transfer set without ``omitted_class`` by minimising
    ``loss_fn(student_logits, teacher_logits, targets, temperature, alpha)`` at ``T = omitted_temperature``
    and ``alpha = 1``, then given the bias shift chosen on validation. Returns the share of the
    test digits of ``omitted_class`` it gets right (the lesson's distilled students: most of them;
    a loss that ignores the teacher: none)."""
    _check_teacher_rows(teacher_logits, data)
    c = settings.omitted_class
    kept = data.labels != c
    student = fresh_mlp((settings.omitted_hidden,), settings.derived_seed(OMITTED_STUDENTS))

    def loss(logits, teacher, targets):
        return loss_fn(logits, teacher, targets, settings.omitted_temperature, 1.0)

    train(student, data.images[kept], (teacher_logits[kept], data.labels[kept]),
          epochs=settings.omitted_epochs, lr=settings.lr, batch_size=settings.batch_size, loss_fn=loss,
          generator=settings.generator(OMITTED_STUDENTS), progress=False)
    result = shift_on_validation(student, data, settings, int(kept.sum()), int((~kept).sum()))
    return class_share_right(result, data.test_labels, c, shifted=True)


@checked_arguments(result=Instance(OmittedClassResult), labels=LABELS, class_index=Integer(0), shifted=Instance(bool))
def class_share_right(result: OmittedClassResult, labels, class_index: int, shifted: bool) -> float:
    """The share of the test digits of ``class_index`` the student gets right, before or after its shift."""
    if len(labels) != len(result.test_logits):
        raise ValueError(f"labels must give one label per test digit of result ({len(result.test_logits)}), got "
                         f"{len(labels)}")
    if not (labels == class_index).any():
        raise ValueError(f"labels must hold a digit of class_index {class_index} to score, got none")
    logits = shift_class_logit(result.test_logits, class_index, result.chosen_shift) if shifted else result.test_logits
    _, wrong = errors(logits, labels, class_index)
    return 1 - wrong / int((labels == class_index).sum())


# --- The claims ---------------------------------------------------------------------------------


@dataclass
class DistillationResult:
    """What lesson 2's prose draws its conclusions from."""

    settings: Settings
    teacher_test_accuracy: float
    gradients: GradientChecks
    same_set: dict[int, dict[str, np.ndarray]]
    few_labels: dict[int, dict[str, np.ndarray]]
    omitted: dict[str, list[OmittedClassResult]]  # {SOFT: per seed, HARD: per seed}
    test_labels: torch.Tensor


@checked_arguments(settings=SETTINGS)
def run_claims_experiment(settings: Settings) -> DistillationResult:
    """Sections 1-4 and 6 at ``settings``. The sweep of section 5 (one seed per cell) is shown in the
    notebook, but the prose draws no conclusion from it, so it is not run here."""
    seed_everything(settings.seed)
    data = make_splits(settings)
    teacher = train_teacher(data, settings, progress=False)
    teacher_logits = predict_logits(teacher, data.images)
    gradients = gradient_checks(probe_logits(data, settings), teacher_logits[: settings.probe_batch], settings)
    same_set = same_set_students(data, teacher_logits, settings, progress=False)
    few = few_label_students(data, train_ensemble_teacher(data, settings, progress=False), settings, progress=False)
    omitted = omitted_class_students(data, teacher_logits, settings, progress=False)
    return DistillationResult(settings, accuracy(teacher, data.test_images, data.test_labels), gradients,
                              same_set, few, omitted, data.test_labels)


def _points(accuracies) -> float:
    return 100 * float(np.mean(accuracies))


@checked_arguments(result=Instance(DistillationResult))
def claims(result: DistillationResult) -> list[Claim]:
    """What lesson 2's prose says, each as a measured number against a bound from seeds 0-9."""
    s, g = result.settings, result.gradients
    c = s.omitted_class
    distilled = result.omitted[SOFT]
    extra_errors = [errors(shift_class_logit(o.test_logits, c, o.chosen_shift), result.test_labels, c)[0]
                    - errors(o.test_logits, result.test_labels, c)[0] for o in distilled]
    right = {method: [class_share_right(o, result.test_labels, c, shifted=True) for o in result.omitted[method]]
             for method in (SOFT, HARD)}
    over_hard = paired_interval(right[SOFT], right[HARD])
    temps = np.asarray(s.gradient_temperatures, dtype=float)
    high = temps >= 8  # "once T is a few times the spread" of the untrained student's logits
    low = int(np.flatnonzero(temps <= 4)[-1])  # the moderate temperatures, where q - p does not shrink yet
    # the factor by which the gradient shrinks per doubling of T, between neighbouring temperatures
    fall_per_doubling = (g.norms_without[high][:-1] / g.norms_without[high][1:]) ** (
        1 / np.log2(temps[high][1:] / temps[high][:-1]))
    matching = np.asarray(s.matching_temperatures, dtype=float)
    beyond = matching >= 16
    gap_slope = np.diff(np.log(g.matching_gaps[beyond])) / np.diff(np.log(matching[beyond]))
    small, large = min(s.student_sizes), max(s.student_sizes)
    fewest, most = min(s.labelled_counts), max(s.labelled_counts)
    few = result.few_labels[fewest]
    gain_soft = _points(few[SOFT]) - _points(few[HARD])
    gain_pseudo = _points(few[PSEUDO]) - _points(few[HARD])
    return [
        # seeds 0-9: 0.961-0.978
        at_least("the teacher is a real classifier of the digits (test accuracy of 90 % or more)",
                 result.teacher_test_accuracy, 0.90),
        # float32 rounding only (the same formula); seeds 0-9: 1.25e-6 to 1.71e-6
        at_most("autograd through distillation_loss equals alpha T (q - p) / N",
                g.autograd_gap / g.gradient_scale, 1e-4),
        # 1/T^2 exactly in the limit; seeds 0-9: 4.18-4.21 per doubling
        at_least("without T^2 the soft gradient falls by about 4 per doubling of T (at least 3, from T = 8 up)",
                 fall_per_doubling.min(), 3.0),
        # seeds 0-9: 1.33x-1.38x
        at_most("with T^2 the soft gradient stays on one scale from T = 8 up (within a factor of 1.5)",
                g.norms_with[high].max() / g.norms_with[high].min(), 1.5, unit="x"),
        # seeds 0-9: 3.10x-3.21x
        at_least(f"below that, the scaled soft gradient still grows with T (at least doubling from T = {temps[0]:g} "
                 f"to T = {temps[low]:g})", g.norms_with[low] / g.norms_with[0], 2.0, unit="x"),
        # slope -1 is Eq. 4's 1/T; seeds 0-9: -1.006 to -1.004
        at_most("beyond T = 16 the gap to logit matching falls like 1/T (log-log slope -0.8 or steeper)",
                gap_slope.max(), -0.8),
        # seeds 0-9: -1.44 to +0.33 points (a test digit is 0.28 points, a mean over five students 0.06)
        at_most(f"on the same transfer set, soft targets do not clearly beat hard labels ({small} units: "
                "at most 1.5 points better, mean over the student seeds)",
                _points(result.same_set[small][SOFT]) - _points(result.same_set[small][HARD]), 1.5, unit="points"),
        # seeds 0-9: -1.06 to +0.72 points
        at_most(f"on the same transfer set, soft targets do not clearly beat hard labels ({large} units: "
                "at most 1.5 points better, mean over the student seeds)",
                _points(result.same_set[large][SOFT]) - _points(result.same_set[large][HARD]), 1.5, unit="points"),
        # seeds 0-9: -0.78 to +0.94 points
        at_most(f"the teacher is not much better than the {large}-unit hard-label students (2 points or less above "
                "their mean)", 100 * result.teacher_test_accuracy - _points(result.same_set[large][HARD]), 2.0,
                unit="points"),
        # seeds 0-9: 13.3-16.8 points
        at_least(f"with {fewest} labels, the teacher's labels on unlabelled digits lift the student by many "
                 "points (10 or more)", gain_soft, 10.0, unit="points"),
        # seeds 0-9: 0.83-0.95 of the gain
        at_least(f"with {fewest} labels, hard pseudo-labels recover most of that gain (three quarters or more)",
                 gain_pseudo / gain_soft if gain_soft > 0 else math.nan, 0.75),
        # seeds 0-9: +0.72 to +2.22 points
        at_most(f"with {fewest} labels, the soft probabilities add little on top of pseudo-labels "
                "(3 points or less)", _points(few[SOFT]) - _points(few[PSEUDO]), 3.0, unit="points"),
        # seeds 0-9: +0.06 to +1.61 points
        at_most(f"with {most} labels too, the soft probabilities add little on top of pseudo-labels "
                "(3 points or less)", _points(result.few_labels[most][SOFT]) - _points(result.few_labels[most][PSEUDO]),
                3.0, unit="points"),
        # the least share over five students; seeds 0-9: 0.81-0.95
        at_least(f"a student that never saw a {c} gets most test {c}s right (every student seed)",
                 min(class_share_right(o, result.test_labels, c, shifted=False) for o in distilled), 0.5),
        # seeds 0-9: -2.4 to +0.6 errors (one student alone: -3 to +1)
        at_most("the bias shift chosen on validation does not make the student clearly worse (at most one "
                "extra test error on average over the student seeds)", float(np.mean(extra_errors)), 1.0,
                unit="errors"),
        # mean over five students; seeds 0-9: 17.8-52.6 digits
        at_least("large bias shifts steal other digits (the largest shift loses five or more validation digits "
                 "against the best)", float(np.mean([(o.validation_accuracy.max() - o.validation_accuracy[-1])
                                                     * len(o.val_logits) for o in distilled])), 5.0, unit="digits"),
        # the hard-label student gets no 3 right on any seed; seeds 0-9: 82-100 points
        at_least(f"the soft targets taught the {c}s: after its shift, the distilled student gets far more test {c}s "
                 f"right than the same student on hard labels (95 % interval above 30 points)",
                 100 * over_hard.low, 30.0, unit="points"),
    ]
