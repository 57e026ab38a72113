"""After FedMD: FD, FedDF and DS-FL on FedMD's parties, and what published scores leak (lesson 7).

Three later methods that, like FedMD (:mod:`fedkd_lessons.fedmd`), let parties learn together by
exchanging model *outputs*. Each is a few plain functions; a round reuses FedMD's steps
(:func:`~fedkd_lessons.fedmd.party_logits`, :func:`~fedkd_lessons.fedmd.digest`,
:func:`~fedkd_lessons.fedmd.revisit`, :func:`~fedkd_lessons.fedmd.train_parties`) wherever the
maths is the same, and changes only what differs. (The communicate step is
:func:`~fedkd_lessons.fedmd.party_logits` for many parties at once, :func:`logits_of_many`.)

- **FD** (federated distillation, Jeong et al. 2018): no public data. Each party uploads, for every
  label it holds, the mean of its logits on its *private* examples of that label
  (:func:`per_label_mean_logits`); each party then trains on its private data with cross-entropy
  plus a term pulling its outputs towards the *other* parties' mean for the example's label
  (:func:`fd_teachers`, :func:`fd_loss`).
- **FedDF** (ensemble distillation, Lin et al. 2020): the server averages the weights of each
  architecture's models (:func:`average_weights`), then distils every averaged model towards the
  mean of all parties' logits on unlabelled public data (:func:`feddf_targets`), and sends it back.
- **DS-FL** (distillation-based semi-supervised FL, Itahara et al. 2021): FedMD's sharing of
  outputs on open data, but the server *sharpens* the averaged probabilities on purpose
  (entropy-reduction averaging, :func:`entropy_reduction_average`).

:func:`run_methods_together` runs any of them (and FedMD and its same-epochs control) for several
federations in lockstep, so the parties of one architecture train at once across methods and seeds.
:func:`add_noise` is the defence of lesson 7 (Gaussian noise on the scores a party publishes);
:func:`estimate_class_mix` is the attack (a party's private class mix read off its public scores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.batched import ModelStack, group_by_architecture
from fedkd_lessons.fedmd import (NUM_CLASSES, FedMDHistory, Party, compute_consensus, copies_for_rounds, digest,
                                 revisit, train_parties)
from fedkd_lessons.engine.models import count_parameters
from fedkd_lessons.temperature import entropy, log_softmax_with_temperature, softmax_with_temperature
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (POSITIVE, Each, Instance, Integer, OneOf, Optional, Real, Tensor,
                                             as_logits, check_fields, checked_arguments)

METHODS = ("FedMD", "control", "FD", "FedDF", "DS-FL")
PUBLIC_DATA = {"FedMD": "public, unlabelled use", "control": "none", "FD": "none",
               "FedDF": "public, unlabelled (server side)", "DS-FL": "public, unlabelled"}
ARCHITECTURES = {"FedMD": "any, per party", "control": "any", "FD": "any, per party",
                 "FedDF": "any; averaged within each architecture", "DS-FL": "any, per party"}

# The declared forms of the arguments the functions share. Logits may hold -inf (a class masked
# out): as_logits checks them further where they are read.
METHOD = OneOf(*METHODS)
PARTIES = Each(Instance(Party))
MODELS = Each(Instance(nn.Module))
IMAGES = Tensor()
LABELS = Tensor(ndim=1, dtype="integer")
NON_NEGATIVE = Real(0)


# ---------------------------------------------------------------------------------------------- FD

@checked_arguments(logits=Tensor(ndim=2, min_rows=0, finite=False), labels=Tensor(ndim=1, min_rows=0, dtype="integer"),
                   num_classes=Integer(1))
def per_label_mean_logits(logits, labels, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """FD's upload (Jeong et al. 2018, section 2): the mean logit vector of each label.

    Args:
        logits: ``(n, C)`` a party's logits on its private examples.
        labels: ``(n,)`` their integer labels in ``[0, num_classes)``.
        num_classes: ``L``, the number of labels (rows of the table).

    Returns:
        ``means (L, C)``, row ``y`` = ``1/n_y sum_{i: y_i = y} z_i`` (zeros where ``n_y = 0``), and
        ``counts (L,)`` = ``n_y``.
    """
    logits = as_logits(logits)
    if len(labels) != len(logits):
        raise ValueError(f"labels must give one label per row of logits ({len(logits)}), got {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (num_classes = {num_classes}), got "
                         f"{int(labels.min())}..{int(labels.max())}")
    counts = torch.bincount(labels.long(), minlength=num_classes).to(logits.dtype)
    sums = torch.zeros(num_classes, logits.shape[1], dtype=logits.dtype).index_add_(0, labels.long(), logits)
    return sums / counts.clamp(min=1).unsqueeze(1), counts


@checked_arguments(tables=Tensor(ndim=3, finite=False), counts=Tensor(ndim=2))
def fd_teachers(tables, counts) -> tuple[torch.Tensor, torch.Tensor]:
    """FD's server: for every party ``k`` and label ``y``, the mean of the *other* parties' per-label
    means, over the parties that hold ``y`` (equal weight per party):
    ``t_k[y] = 1/|P_y \\ {k}| sum_{j in P_y, j != k} mean_j[y]``, with ``P_y = {j: n_j[y] > 0}``.

    The brief form of FD's regulariser was not checked against the paper (its exact weighting of
    parties may differ); excluding the party's own mean follows the idea that a party is taught by
    the others.

    Args:
        tables: ``(m, L, C)`` every party's :func:`per_label_mean_logits` means.
        counts: ``(m, L)`` the matching counts.

    Returns:
        ``teachers (m, L, C)`` (zeros where undefined) and ``defined (m, L)``: True where at least one
        other party holds the label.
    """
    tables = as_logits(tables, "tables")
    if counts.shape != tables.shape[:2]:
        raise ValueError(f"counts must be (parties, labels) = {tuple(tables.shape[:2])} as tables (parties, labels, "
                         f"classes) is, got shape {tuple(counts.shape)}")
    if (counts < 0).any():
        raise ValueError("counts must be >= 0")
    holds = (counts > 0).to(tables.dtype)  # (m, L)
    total = (tables * holds.unsqueeze(-1)).sum(dim=0, keepdim=True)  # (1, L, C)
    others = holds.sum(dim=0, keepdim=True) - holds  # (m, L): how many *other* parties hold y
    teachers = (total - tables * holds.unsqueeze(-1)) / others.clamp(min=1).unsqueeze(-1)
    defined = others > 0
    return teachers * defined.unsqueeze(-1), defined


def fd_loss(logits, labels, teacher_logits, has_teacher=None, *, weight: float = 1.0,
            temperature: float = 1.0) -> torch.Tensor:
    """FD's local objective for each example ``(n,)``: cross-entropy plus the distillation term
    towards the teacher logits of the example's label,

    ``CE(z, y) + weight * T^2 * KL(softmax(t_y / T) || softmax(z / T))``

    (Hinton et al. 2015's soft-target term, lesson 2). FD's paper regularises towards the global
    per-label mean logits; its exact divergence and weight were not checked: this is the course's
    choice, stated in the notebook.

    Args:
        logits: ``(n, C)`` the party's logits on its private examples.
        labels: ``(n,)`` their labels.
        teacher_logits: ``(n, C)`` the teacher row of each example's label (``t_{y_i}``).
        has_teacher: ``(n,)`` bool, False where no other party holds the label (then only CE);
            default all True.
        weight: ``beta >= 0`` of the distillation term; temperature: ``T > 0``.
    """
    logits, teacher_logits = as_logits(logits), as_logits(teacher_logits, "teacher_logits")
    if logits.shape != teacher_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and teacher_logits {tuple(teacher_logits.shape)} must have "
                         "the same shape (one teacher row per example)")
    # checked inline, not declared: this runs on every mini-batch (fd_train declares both before training)
    weight, temperature = NON_NEGATIVE.check(weight, "weight"), POSITIVE.check(temperature, "temperature")
    hard = F.cross_entropy(logits, labels, reduction="none")
    soft = F.kl_div(log_softmax_with_temperature(logits, temperature),
                    softmax_with_temperature(teacher_logits, temperature), reduction="none").sum(dim=-1)
    soft = soft * temperature**2
    if has_teacher is not None:
        soft = soft * torch.as_tensor(has_teacher, dtype=soft.dtype)
    return hard + weight * soft


@checked_arguments(parties=PARTIES)
def fd_tables(parties) -> tuple[torch.Tensor, torch.Tensor]:
    """FD's communicate step: every party's per-label mean logits on its own private data
    ``(m, C, C)`` and counts ``(m, C)`` (eval mode)."""
    logits = logits_of_many([p.model for p in parties], [p.private_images for p in parties])
    tables, counts = zip(*(per_label_mean_logits(z, p.private_labels) for z, p in zip(logits, parties)))
    return torch.stack(tables), torch.stack(counts)


@checked_arguments(parties=PARTIES, teachers=Each(Tensor(ndim=2, finite=False)), defined=Each(Tensor(ndim=1)),
                   epochs=Integer(0), weight=NON_NEGATIVE, temperature=POSITIVE)
def fd_train(parties, teachers, defined, *, epochs: int, weight: float, temperature: float) -> None:
    """FD's local step, in place: ``epochs`` on each party's private data with :func:`fd_loss`
    (this replaces FedMD's revisit; parties of one architecture and batch size train at once).
    ``teachers[k]`` ``(L, C)`` and ``defined[k]`` ``(L,)`` are party ``k``'s rows of :func:`fd_teachers`."""
    if len(teachers) != len(parties) or len(defined) != len(parties):
        raise ValueError(f"teachers and defined must give one table per party ({len(parties)}), got {len(teachers)} "
                         f"and {len(defined)}")
    for k, party in enumerate(parties):
        if len(teachers[k]) != len(defined[k]) or int(party.private_labels.max()) >= len(teachers[k]):
            raise ValueError(f"teachers[{k}] must hold a row for every label of party {party.name!r} (up to "
                             f"{int(party.private_labels.max())}), and defined[{k}] one flag per row; got "
                             f"{len(teachers[k])} and {len(defined[k])} rows")

    def loss_fn(logits, labels, teacher, has_teacher):
        return fd_loss(logits, labels, teacher, has_teacher, weight=weight, temperature=temperature)

    for batch_size in sorted({p.batch_size for p in parties}):
        same = [k for k, p in enumerate(parties) if p.batch_size == batch_size]
        sets = [(parties[k].private_images, parties[k].private_labels, teachers[k][parties[k].private_labels],
                 defined[k][parties[k].private_labels]) for k in same]
        train_parties([parties[k] for k in same], sets, epochs=epochs, batch_size=batch_size, loss_fn=loss_fn)


# ------------------------------------------------------------------------------------------ FedDF

@checked_arguments(models=MODELS)
def average_weights(models) -> dict[str, torch.Tensor]:
    """FedDF's first server step (Lin et al. 2020, Algorithm 1; its code: a uniform average):
    ``theta = 1/n sum_k theta_k`` over models of *one* architecture, entry by entry of the state dict."""
    states = [m.state_dict() for m in models]
    keys = list(states[0])
    for k, state in enumerate(states[1:], start=1):
        if list(state) != keys or any(state[key].shape != states[0][key].shape for key in keys):
            raise ValueError(f"models[{k}] has another architecture than models[0]; average each architecture apart")
    return {key: torch.stack([s[key].float() for s in states]).mean(dim=0).to(states[0][key].dtype) for key in keys}


@checked_arguments(logits=Tensor(ndim=3, finite=False), temperature=POSITIVE)
def feddf_targets(logits, temperature: float = 1.0) -> torch.Tensor:
    """FedDF's distillation target (Lin et al. 2020, section 3; its code: T = 1): the softened
    probabilities of the mean logits, ``softmax((1/m sum_k z_k) / T)``, ``(S, C)`` from ``(m, S, C)``."""
    return softmax_with_temperature(compute_consensus(logits, "logits"), temperature)


# ------------------------------------------------------------------------------------------- DS-FL

@checked_arguments(probabilities=Tensor(ndim=3), temperature=POSITIVE)
def entropy_reduction_average(probabilities, temperature: float = 0.1) -> torch.Tensor:
    """DS-FL's entropy-reduction averaging, as commonly implemented (third-party code; the paper's
    exact formula and temperature were not checked): the parties' probabilities averaged, then
    sharpened, ``softmax((1/m sum_k p_k) / T)`` with a small ``T`` (0.1). It keeps the order of
    the classes. Whether it lowers the entropy depends on the average, because dividing
    probabilities (numbers in [0, 1]) by ``T`` turns them into logits at most ``1/T`` apart: a
    majority, e.g. ``(0.7, 0.3, 0, ...)``, becomes much sharper (0.97 on the top class with 16
    classes); a split vote ``(0.4, 0.3, 0.3, 0, ...)`` comes out *softer*, because every absent
    class gets ``exp(0)`` against the top class's ``exp(4)``; so does a near-uniform average, and a
    one-hot average keeps 0.9993 on its class. (The tests pin each case.)

    Args:
        probabilities: ``(m, S, C)`` every party's softmax outputs on the same open samples (rows sum to 1).
        temperature: ``T > 0``.

    Returns:
        ``(S, C)`` sharpened probabilities.
    """
    if not probabilities.is_floating_point():
        probabilities = probabilities.to(torch.get_default_dtype())
    if (probabilities < 0).any() or not torch.allclose(probabilities.sum(-1), torch.ones(()), atol=1e-4):
        raise ValueError("probabilities must be >= 0 with rows summing to 1 (softmax outputs)")
    return softmax_with_temperature(probabilities.mean(dim=0), temperature)


# --------------------------------------------------------------------------------- defence, attack

@checked_arguments(scores=Tensor(min_rows=0), noise_std=NON_NEGATIVE, generator=Optional(Instance(torch.Generator)))
def add_noise(scores, noise_std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``scores + noise_std * N(0, 1)``, element by element (``noise_std = 0``: unchanged)."""
    if noise_std == 0:
        return scores
    return scores + noise_std * torch.randn(scores.shape, generator=generator)


@checked_arguments(scores=Tensor(ndim=2, finite=False), classes=Each(Integer(0)))
def estimate_class_mix(scores, classes) -> torch.Tensor:
    """The attack: a party's private class mix guessed from the scores it published on public data.

    A model trained on more examples of a class leans towards it everywhere, even on inputs of
    another task. The attacker averages the party's probabilities over the public samples,
    keeps the columns of the private ``classes`` and renormalises:
    ``mix_c = mean_s softmax(z_s)_c / sum_{c' in classes} mean_s softmax(z_s)_{c'}``.

    Args:
        scores: ``(S, C)`` the logits a party published.
        classes: the private classes' column indices (lesson 5: 10-15).

    Returns:
        ``(len(classes),)`` the estimated mix (sums to 1).
    """
    scores = as_logits(scores, "scores")
    if max(classes) >= scores.shape[1]:
        raise ValueError(f"classes must be column indices of scores, in [0, {scores.shape[1] - 1}], got "
                         f"{list(classes)}")
    classes = torch.as_tensor(classes, dtype=torch.long)
    mean = F.softmax(scores, dim=-1).mean(dim=0)[classes]
    return mean / mean.sum()


# --------------------------------------------------------------------------------- the one harness

@dataclass
class MethodRun:
    """One federation run with one method: its parties and test set. ``method`` is one of
    :data:`METHODS`; ``noise_std`` is the defence on the scores FedMD parties publish (0: none);
    ``seed`` seeds the server's public subsets (drawn exactly as FedMD draws them) and the noise."""

    method: str
    parties: list
    test_images: torch.Tensor
    test_labels: torch.Tensor
    subset_size: int = 500
    seed: int = 0
    noise_std: float = 0.0

    def __post_init__(self):
        check_fields(self, method=METHOD, parties=PARTIES, test_images=IMAGES, test_labels=LABELS,
                     subset_size=Integer(1), seed=Integer(0), noise_std=NON_NEGATIVE)
        if len(self.test_labels) != len(self.test_images):
            raise ValueError(f"test_labels must give one label per test image ({len(self.test_images)}), got "
                             f"{len(self.test_labels)}")
        if self.noise_std and self.method != "FedMD":
            raise ValueError(f"noise_std is the defence on FedMD's published logits; method {self.method!r} got "
                             f"noise_std = {self.noise_std!r}")


@dataclass(frozen=True)
class MethodOptions:
    """The per-method constants of a round (see each method's functions)."""

    digest_epochs: int = 1
    revisit_epochs: int = 2
    digest_batch_size: int = 64
    fd_weight: float = 1.0
    fd_temperature: float = 1.0
    feddf_temperature: float = 1.0
    era_temperature: float = 0.1

    def __post_init__(self):
        check_fields(self, digest_epochs=Integer(0), revisit_epochs=Integer(0), digest_batch_size=Integer(1),
                     fd_weight=NON_NEGATIVE, fd_temperature=POSITIVE, feddf_temperature=POSITIVE,
                     era_temperature=POSITIVE)


# Samples per forward pass when scoring: with dozens of stacked CNNs, a chunk of 64 images keeps
# the activations in cache; measured on the 2-core CI machine at one thread, scoring 600 images with
# 40 stacked CNNs of the zoo took about a third of the time of one chunk of 1,024.
SCORING_CHUNK = 64


@checked_arguments(models=MODELS, images=Each(IMAGES))
def logits_of_many(models, images) -> list[torch.Tensor]:
    """Each model's eval-mode logits on its own images, ``models[k]`` on ``images[k] (n_k, ...)``;
    models of one architecture (and ``n_k``) predict at once (:class:`~fedkd_lessons.engine.batched.ModelStack`),
    which equals :func:`~fedkd_lessons.engine.models.predict_logits` model by model up to float rounding."""
    if len(images) != len(models):
        raise ValueError(f"images must give one image tensor per model ({len(models)}), got {len(images)}")
    out: list = [None] * len(models)
    for group in group_by_architecture(models, extra=[len(x) for x in images]):
        logits = ModelStack.from_models([models[k] for k in group]).predict_logits(
            torch.stack([images[k] for k in group]), per_model=True, chunk=SCORING_CHUNK)
        for row, k in enumerate(group):
            out[k] = logits[row]
    return out


@checked_arguments(models=MODELS, sets=Each(Instance((tuple, list))))
def accuracies(models, sets) -> np.ndarray:
    """``(K,)`` test accuracy of ``models[k]`` on ``sets[k] = (images, labels)``, models of one
    architecture at once (:func:`logits_of_many`)."""
    if len(sets) != len(models):
        raise ValueError(f"sets must give one test set per model ({len(models)}), got {len(sets)}")
    for k, test_set in enumerate(sets):
        if len(test_set) != 2:
            raise ValueError(f"sets[{k}] must be an (images, labels) pair, got {len(test_set)} item(s)")
        if len(test_set[1]) != len(test_set[0]):
            raise ValueError(f"sets[{k}] must give one label per image ({len(test_set[0])}), got {len(test_set[1])}")
    logits = logits_of_many(models, [images for images, _ in sets])
    return np.array([float((z.argmax(dim=1) == torch.as_tensor(labels)).float().mean())
                     for z, (_, labels) in zip(logits, sets)])


@checked_arguments(runs=Each(Instance(MethodRun)), servers=Each(Instance(torch.Generator)),
                   noise=Each(Instance(torch.Generator)), public_images=IMAGES, options=Instance(MethodOptions))
def methods_round(runs: list[MethodRun], servers: list[torch.Generator], noise: list[torch.Generator],
                  public_images: torch.Tensor, options: MethodOptions) -> None:
    """One round of every run in ``runs``, in place; steps shared across runs train together.

    1. communicate: the server draws the public subset as FedMD does; FedMD, DS-FL and FedDF score
       it; FD's parties score their own private data instead;
    2. aggregate: FedMD the mean logits (after the defence's noise, :func:`add_noise`); DS-FL
       :func:`entropy_reduction_average` of the probabilities; FedDF :func:`average_weights` per
       architecture and :func:`feddf_targets`; FD :func:`per_label_mean_logits` and
       :func:`fd_teachers`; the control nothing;
    3. distil: FedMD's digest (MAE on logits); DS-FL's and FedDF's digest (KL to probabilities,
       T = 1), FedDF's on one averaged model per architecture, then copied to that architecture's parties;
    4. local: every party but FD's revisits its private data; FD's train with :func:`fd_loss`.
    """
    if len(servers) != len(runs) or len(noise) != len(runs):
        raise ValueError(f"servers and noise must give one generator per run ({len(runs)}), got {len(servers)} and "
                         f"{len(noise)}")
    for k, run in enumerate(runs):
        if run.subset_size > len(public_images):
            raise ValueError(f"runs[{k}].subset_size must be at most the public set's size {len(public_images)}, "
                             f"got {run.subset_size}")
    subsets = []
    for run, server in zip(runs, servers):
        indices = torch.randperm(len(public_images), generator=server)[: run.subset_size]
        subsets.append(public_images[indices])
    # 1. communicate: every scoring of the round at once
    requests = [(p.model, p.private_images if run.method == "FD" else subset)
                for run, subset in zip(runs, subsets) if run.method != "control" for p in run.parties]
    logits = iter(logits_of_many([model for model, _ in requests], [images for _, images in requests]))
    fd_jobs: tuple[list, list, list] = ([], [], [])
    logit_jobs: tuple[list, list, list] = ([], [], [])
    probability_jobs: tuple[list, list, list] = ([], [], [])
    copies_after: list[tuple[Party, list[Party]]] = []
    local = []
    for run, subset, rng in zip(runs, subsets, noise):
        parties = list(run.parties)
        if run.method == "control":
            local.extend(parties)
            continue
        scores = [next(logits) for _ in parties]
        if run.method == "FD":
            tables, counts = zip(*(per_label_mean_logits(z, p.private_labels) for z, p in zip(scores, parties)))
            teachers, defined = fd_teachers(torch.stack(tables), torch.stack(counts))
            for job, items in zip(fd_jobs, (parties, teachers, defined)):
                job.extend(items)
            continue
        local.extend(parties)
        scores = torch.stack(scores)
        if run.method == "FedMD":
            consensus = compute_consensus(add_noise(scores, run.noise_std, rng), "logits")
            for job, items in zip(logit_jobs, (parties, [subset] * len(parties), [consensus] * len(parties))):
                job.extend(items)
        elif run.method == "DS-FL":
            target = entropy_reduction_average(F.softmax(scores, dim=-1), options.era_temperature)
            for job, items in zip(probability_jobs, (parties, [subset] * len(parties), [target] * len(parties))):
                job.extend(items)
        else:  # FedDF: the server scores with the uploaded models, averages each architecture, distils
            target = feddf_targets(scores, options.feddf_temperature)
            for group in group_by_architecture([p.model for p in parties]):
                members = [parties[k] for k in group]
                members[0].model.load_state_dict(average_weights([p.model for p in members]))
                copies_after.append((members[0], members[1:]))
                for job, items in zip(probability_jobs, ([members[0]], [subset], [target])):
                    job.extend(items)
    # 3. distil, 4. local training
    if logit_jobs[0]:
        digest(logit_jobs[0], logit_jobs[1], logit_jobs[2], epochs=options.digest_epochs,
               batch_size=options.digest_batch_size, kind="logits")
    if probability_jobs[0]:
        digest(probability_jobs[0], probability_jobs[1], probability_jobs[2], epochs=options.digest_epochs,
               batch_size=options.digest_batch_size, kind="probabilities", temperature=1.0)
    for source, targets in copies_after:
        for party in targets:
            party.model.load_state_dict(source.model.state_dict())
    if fd_jobs[0]:
        fd_train(*fd_jobs, epochs=options.revisit_epochs, weight=options.fd_weight, temperature=options.fd_temperature)
    if local:
        revisit(local, epochs=options.revisit_epochs)


@checked_arguments(runs=Each(Instance(MethodRun)), public_images=IMAGES, rounds=Integer(0),
                   options=Instance(MethodOptions), measure_every=Optional(Integer(1)))
def run_methods_together(runs: list[MethodRun], public_images: torch.Tensor, *, rounds: int,
                         options: MethodOptions = MethodOptions(), measure_every: int | None = 1,
                         progress: bool | None = None, description: str = "rounds") -> list[FedMDHistory]:
    """``rounds`` rounds of every run in lockstep, each on deep copies of its parties, each with its
    own server stream (``seed``). Returns one history per run, in order.

    Test accuracy is measured before the first round (row 0 = private-only; runs that start from
    the same parties and test set share it), after every ``measure_every``-th round and after the
    last; ``measure_every=None`` measures only round 0 and the last round (scoring hundreds of
    models on the test set each round costs as much as a third of the round). ``history.settings["measured_rounds"]`` names the round of each row of
    ``history.accuracy``.
    """
    measured = sorted({0, rounds} | (set(range(0, rounds + 1, measure_every)) if measure_every else set()))

    def scores(runs) -> list[np.ndarray]:
        flat = accuracies([p.model for run in runs for p in run.parties],
                          [(run.test_images, run.test_labels) for run in runs for _ in run.parties])
        return np.split(flat, np.cumsum([len(run.parties) for run in runs])[:-1])

    # Round 0: runs that start from the same parties and test set (every method of one federation)
    # are scored once, on the originals (their copies are equal).
    def start(run) -> tuple:
        return tuple(id(p) for p in run.parties), id(run.test_images), id(run.test_labels)

    copies, servers = copies_for_rounds(runs, public_images, "MethodRun")
    starts = {start(run): run for run in runs}
    first = dict(zip(starts, scores(list(starts.values()))))
    history = [[first[start(run)] for run in runs]]
    runs = copies
    noise = [torch.Generator().manual_seed(10_000 + run.seed) for run in runs]
    for done in progress_bar(range(1, rounds + 1), progress, description):
        methods_round(runs, servers, noise, public_images, options)
        if done in measured:
            history.append(scores(runs))
    return [FedMDHistory(np.array([row[r] for row in history]), tuple(p.name for p in run.parties), run.parties,
                         dict(method=run.method, rounds=rounds, measured_rounds=tuple(measured),
                              subset_size=run.subset_size, seed=run.seed, noise_std=run.noise_std,
                              **dataclasses.asdict(options)))
            for r, run in enumerate(runs)]


# ------------------------------------------------------------------------------------------- bytes

@checked_arguments(method=METHOD, models=MODELS, subset_size=Integer(1), labels_held=Integer(1), num_classes=Integer(1),
                   bytes_per_number=Integer(1))
def method_bytes_per_round(method: str, models, *, subset_size: int, labels_held: int,
                           num_classes: int = NUM_CLASSES, bytes_per_number: int = 4) -> int:
    """Bytes one round moves, uploads plus downloads over all ``m`` parties, counted like
    :func:`fedkd_lessons.fedmd.bytes_per_round` (32-bit numbers by default):

    - FedMD, DS-FL: scores up, consensus down on ``S`` public samples: ``2 m S C``;
    - FD: each party's per-label means up and its teachers down, ``labels_held`` rows of ``C``:
      ``2 m L C`` (the counts, ``m L`` more numbers, are left out as FedMD leaves out the indices);
    - FedDF: weights up and the distilled model down, as FedAvg: ``2 sum_k |theta_k|``;
    - control: 0.
    """
    m = len(models)
    numbers = {"FedMD": 2 * m * subset_size * num_classes, "DS-FL": 2 * m * subset_size * num_classes,
               "FD": 2 * m * labels_held * num_classes, "control": 0,
               "FedDF": 2 * sum(count_parameters(model) for model in models)}[method]
    return numbers * bytes_per_number


@checked_arguments(probabilities=Tensor(ndim=2))
def mean_entropy(probabilities) -> float:
    """Mean entropy (nats) of the rows of ``(S, C)`` probabilities (lesson 1's :func:`entropy`)."""
    return float(entropy(probabilities).mean())
