"""FedMD: parties with different models learn together through class scores on public data (lesson 5).

Li & Wang 2019, Algorithm 1. Every party first learns the public task and then its
own private task (transfer learning). Then, each round:

1. communicate: every party computes its logits on a fresh random subset of the public data;
2. aggregate: the server averages them into the consensus ``f = 1/m sum_k f_k``;
3. digest: every party trains its own model towards the consensus on that subset;
4. revisit: every party trains a few epochs on its private data.

Only class scores cross the wire, so the parties' architectures may all differ. The per-party
steps (:func:`party_logits`, :func:`digest`, :func:`revisit`) are separate functions acting on a
:class:`Party` or a list of them: lesson 6 runs each party in its own process with the same
functions, and in one process the parties that share an architecture (across federations of
several seeds, say) train at once (:mod:`fedkd_lessons.engine.batched`).
"""

import copy
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.batched import ModelStack, StackedData, group_by_architecture, train_stack
from fedkd_lessons.engine.models import accuracy, count_parameters, predict_logits
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (POSITIVE, Callable as CallableArgument, Each, Instance, Integer, OneOf,
                                             Optional, Real, Tensor, as_logits, check_fields, checked_arguments)
from fedkd_lessons.temperature import log_softmax_with_temperature, softmax_with_temperature

NUM_PUBLIC_CLASSES = 10
NUM_PRIVATE_CLASSES = 6
NUM_CLASSES = NUM_PUBLIC_CLASSES + NUM_PRIVATE_CLASSES  # Li & Wang's output layer: 10 public digits + 6 private letters a-f
CONSENSUS_KINDS = ("logits", "probabilities")
CONSENSUS_RULES = ("mean", "median", "trimmed mean")
DIGEST_TARGETS = ("consensus", "none", "own logits")
TRIM = Real(0, 0.5, closed="left")  # the share a trimmed mean cuts from each end
LABELS = Tensor(ndim=1, dtype="integer")


@dataclass
class Party:
    """One FedMD participant: its own model, its private data and how it trains.

    ``generator`` shuffles this party's mini-batches, so a party's training does not depend on
    what the other parties drew. Adam with ``lr`` as in the paper's code (FedMD_clean: Adam, 0.001).
    """

    name: str
    model: nn.Module
    private_images: torch.Tensor
    private_labels: torch.Tensor
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 32
    generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self):
        if len(self.private_labels) == 0:
            raise ValueError(f"party {self.name!r}: the private set is empty; every party needs private data")
        if len(self.private_images) != len(self.private_labels):
            raise ValueError(
                f"party {self.name!r}: {len(self.private_images)} private images but {len(self.private_labels)} labels"
            )
        outputs = predict_logits(self.model, self.private_images[:1]).shape[-1]
        if outputs != NUM_CLASSES:
            raise ValueError(
                f"party {self.name!r}: the model has {outputs} outputs, but FedMD needs "
                f"{NUM_PUBLIC_CLASSES} public + {NUM_PRIVATE_CLASSES} private = {NUM_CLASSES}"
            )
        self.generator = torch.Generator().manual_seed(self.seed)


@checked_arguments(seed=Integer(0))
def make_parties(named_models, private_sets, seed: int = 0) -> list[Party]:
    """Pair each ``(name, model)`` with its ``(images, labels)`` private set; party ``k`` shuffles
    with seed ``seed + k``."""
    named_models, private_sets = list(named_models), list(private_sets)
    if len(named_models) != len(private_sets):
        raise ValueError(f"{len(named_models)} models but {len(private_sets)} private sets: give one per party")
    return [
        Party(name, model, images, labels, seed=seed + k)
        for k, ((name, model), (images, labels)) in enumerate(zip(named_models, private_sets))
    ]


def _as_parties(parties) -> list[Party]:
    return [parties] if isinstance(parties, Party) else list(parties)


@checked_arguments(epochs=Integer(0), batch_size=Integer(1), loss_fn=Optional(CallableArgument()))
def train_parties(parties, sets, *, epochs: int, batch_size: int, loss_fn=None) -> None:
    """Train each party's model on its set, in place: ``sets[k] = (images, targets...)`` for party ``k``,
    with the party's own learning rate and batch stream. Parties of one architecture (and learning
    rate) train at once (:mod:`fedkd_lessons.engine.batched`), which equals training them one by one;
    ``loss_fn`` gives one loss per example (the engine's convention), default cross-entropy."""
    parties = _as_parties(parties)
    if len(sets) != len(parties):
        raise ValueError(f"sets must give one training set per party ({len(parties)}), got {len(sets)}")
    for group in group_by_architecture([p.model for p in parties], extra=[p.lr for p in parties]):
        members = [parties[k] for k in group]
        stack = ModelStack.from_models([p.model for p in members])
        train_stack(stack, StackedData.from_sets([sets[k] for k in group]), epochs=epochs, lr=members[0].lr,
                    batch_size=batch_size, loss_fn=loss_fn, generators=[p.generator for p in members],
                    model_names=[f"party {p.name!r}" for p in members], progress=False)
        stack.write_to([p.model for p in members])


@checked_arguments(public_images=Tensor(), public_labels=LABELS, epochs=Integer(0), batch_size=Integer(1))
def pretrain_on_public(parties, public_images, public_labels, *, epochs: int, batch_size: int = 64) -> None:
    """Transfer learning, first half (Algorithm 1): each party learns the public task (cross-entropy)."""
    parties = _as_parties(parties)
    train_parties(parties, [(public_images, public_labels)] * len(parties), epochs=epochs, batch_size=batch_size)


@checked_arguments(public_epochs=Integer(0), private_epochs=Integer(0))
def transfer_learning(parties, public_images, public_labels, *, public_epochs: int, private_epochs: int) -> None:
    """Algorithm 1's first step, in place: public data, then ``private_epochs`` on private data."""
    pretrain_on_public(parties, public_images, public_labels, epochs=public_epochs)
    revisit(parties, epochs=private_epochs)


@dataclass(frozen=True)
class FedMDSettings:
    """FedMD's round settings (Li & Wang 2019, Algorithm 1), with their defaults in this one place.

    The same object drives :func:`run_fedmd` in one process and FedMD on Flower (lesson 6), whose
    apps receive it as Flower's run-config (:meth:`to_run_config`, :meth:`from_run_config`; the
    app's ``pyproject.toml`` holds these defaults, and a test checks that they agree).

    Args:
        rounds: communicate/aggregate/digest/revisit rounds (0 allowed).
        subset_size: public samples drawn afresh each round (the paper: 5,000 of MNIST's 60,000).
        digest_epochs, revisit_epochs: epochs of the digest and revisit steps (the paper's code: 1 and 2-10).
        digest_batch_size: mini-batch size of the digest step.
        kind: what the parties' scores are, as :func:`compute_consensus` and :func:`digest` name
            it: ``"logits"`` (aggregate raw logits, fitted with MAE, the authors' code) or
            ``"probabilities"`` (softened probabilities at ``temperature``, fitted with ``T^2`` KL).
        temperature: ``T`` of ``kind="probabilities"``.
        rule: how the server aggregates: ``"mean"`` (FedMD's), ``"median"`` or ``"trimmed mean"``
            (:func:`compute_consensus`), cutting ``trim`` of the parties from each end.
        seed: seeds the server's choice of public subsets (:func:`draw_public_subset`).
    """

    rounds: int = 10
    subset_size: int = 500
    digest_epochs: int = 1
    revisit_epochs: int = 2
    digest_batch_size: int = 64
    kind: str = "logits"
    temperature: float = 1.0
    rule: str = "mean"
    trim: float = 0.1
    seed: int = 0

    def __post_init__(self):
        check_fields(self, rounds=Integer(0), subset_size=Integer(1), digest_epochs=Integer(0),
                     revisit_epochs=Integer(0), digest_batch_size=Integer(1), kind=OneOf(*CONSENSUS_KINDS),
                     temperature=POSITIVE, rule=OneOf(*CONSENSUS_RULES), trim=TRIM,
                     seed=Integer(0))

    def to_run_config(self) -> dict:
        """Flower's run-config keys (``digest-epochs``: dashes, as Flower's examples write them)."""
        return {name.replace("_", "-"): getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_run_config(cls, config) -> "FedMDSettings":
        """The settings in a Flower run-config (other keys are ignored), checked as on construction."""
        missing = [name for name in cls.__dataclass_fields__ if name.replace("_", "-") not in config]
        if missing:
            raise ValueError(f"the run-config lacks FedMD's settings {missing}")
        return cls(**{name: config[name.replace("_", "-")] for name in cls.__dataclass_fields__})


@checked_arguments(server=Instance(torch.Generator), public_size=Integer(1), subset_size=Integer(1))
def draw_public_subset(server: torch.Generator, public_size: int, subset_size: int) -> torch.Tensor:
    """The server's draw that starts each round: ``subset_size`` distinct indices of the public set
    (of ``public_size`` samples), fresh every round (Algorithm 1), from the server's own stream, so
    that a run in one process and a run on Flower with the same seed score the same images."""
    if subset_size > public_size:
        raise ValueError(f"subset_size must be at most the public set's size {public_size}, got {subset_size}")
    return torch.randperm(public_size, generator=server)[:subset_size]


@checked_arguments(party=Instance(Party), public_images=Tensor())
def party_logits(party: Party, public_images: torch.Tensor, indices) -> torch.Tensor:
    """Communicate: the party's raw logits ``(S, C)`` on ``public_images[indices]``, without the
    softmax (the paper sends logits "without applying the softmax"), in eval mode (dropout off)."""
    return predict_logits(party.model, public_images[torch.as_tensor(indices)])


@checked_arguments(kind=OneOf(*CONSENSUS_KINDS), temperature=POSITIVE, rule=OneOf(*CONSENSUS_RULES), trim=TRIM)
def compute_consensus(logits, kind: str = "logits", temperature: float = 1.0, rule: str = "mean",
                      trim: float = 0.1) -> torch.Tensor:
    """Aggregate: the server's equal-weight mean over the ``m`` parties (Li & Wang 2019, Algorithm 1:
    f = 1/m sum_k f_k), or a robust stand-in for it, number by number.

    Args:
        logits: ``(m, S, C)`` every party's logits on the same ``S`` public samples (or a list of
            ``m`` tensors ``(S, C)``).
        kind: ``"logits"`` aggregates the raw logits (the authors' code); ``"probabilities"``
            aggregates the softened probabilities ``softmax(z_k / T)`` (Hinton et al. 2015, Eq. 1).
        temperature: ``T`` for ``kind="probabilities"``.
        rule: ``"mean"`` is FedMD's. ``"median"``: the coordinate-wise median over the parties (the
            mean of the two middle values when ``m`` is even, as ``numpy.median``). ``"trimmed mean"``:
            per coordinate, drop the ``floor(trim m)`` smallest and largest values and average the
            rest (as ``scipy.stats.trim_mean``). Both bound what a few parties sending extreme
            scores can do to the consensus (lesson 3 used the median for weights, Yin et al. 2018).
            With probabilities, a robust rule's rows are divided by their sum so that they stay a
            distribution.
        trim: the share cut from each end by ``"trimmed mean"``, in ``[0, 0.5)``.

    Returns:
        ``(S, C)``: the aggregated logits, or probabilities (rows sum to 1).
    """
    if isinstance(logits, (list, tuple)):
        if not logits:
            raise ValueError("logits: need at least one party's logits")
        logits = torch.stack([torch.as_tensor(z) for z in logits])
    logits = as_logits(logits)
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape (parties, samples, classes), got {tuple(logits.shape)}")
    scores = logits if kind == "logits" else softmax_with_temperature(logits, temperature)
    if rule == "mean":
        return scores.mean(dim=0)
    ordered = scores.sort(dim=0).values
    parties = len(ordered)
    if rule == "median":
        aggregated = (ordered[(parties - 1) // 2] + ordered[parties // 2]) / 2
    else:
        cut = int(trim * parties)
        aggregated = ordered[cut : parties - cut].mean(dim=0)
    if kind == "probabilities":
        aggregated = aggregated / aggregated.sum(dim=-1, keepdim=True)
    return aggregated


def consensus_loss(logits, consensus, kind: str = "logits", temperature: float = 1.0,
                   reduction: str = "mean") -> torch.Tensor:
    """How far a party's logits ``(S, C)`` are from the consensus ``(S, C)``.

    ``kind="logits"``: mean absolute error, as the authors' code fits the consensus (Li & Wang 2019,
    digest step of Algorithm 1). ``kind="probabilities"``: ``T^2 KL(consensus || softmax(z / T))``,
    Hinton's soft-target loss, scaled by ``T^2`` (Hinton et al. 2015, section 2).
    ``reduction="none"`` gives the ``(S,)`` loss of each sample, whose mean is the loss.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    if logits.shape != consensus.shape:
        raise ValueError(f"logits have shape {tuple(logits.shape)} but consensus has {tuple(consensus.shape)}; "
                         "they must match (same samples, same classes)")
    if kind == "logits":
        per_sample = (logits - consensus).abs().mean(dim=-1)
    elif kind == "probabilities":
        log_probs = log_softmax_with_temperature(logits, temperature)
        per_sample = F.kl_div(log_probs, consensus, reduction="none").sum(dim=-1) * temperature**2
    else:
        raise ValueError(f"kind must be one of {CONSENSUS_KINDS}, got {kind!r}")
    return per_sample.mean() if reduction == "mean" else per_sample


@checked_arguments(epochs=Integer(0), batch_size=Integer(1), kind=OneOf(*CONSENSUS_KINDS), temperature=POSITIVE)
def digest(parties, public_images, consensus, *, epochs: int = 1, batch_size: int = 64, kind: str = "logits",
           temperature: float = 1.0) -> None:
    """Digest, in place: train each party's model towards its consensus on the subset's images.

    Args:
        parties: one :class:`Party` or a list (trained at once where they share an architecture).
        public_images: the subset's images ``(S, ...)``, or one such tensor per party.
        consensus: ``(S, C)`` aligned row by row with the images (see :func:`consensus_loss` for
            ``kind`` and ``temperature``), or one per party.
    """
    parties = _as_parties(parties)
    images = list(public_images) if isinstance(public_images, (list, tuple)) else [public_images] * len(parties)
    targets = list(consensus) if isinstance(consensus, (list, tuple)) else [consensus] * len(parties)
    if len(images) != len(parties) or len(targets) != len(parties):
        raise ValueError(f"give one public subset and one consensus for all parties or one per party "
                         f"({len(parties)}), got {len(images)} and {len(targets)}")
    for k, (subset, target) in enumerate(zip(images, targets)):
        if len(subset) != len(target):
            raise ValueError(f"party {parties[k].name!r}: public_images has {len(subset)} rows but consensus has "
                             f"{len(target)}")
    loss_fn = functools.partial(consensus_loss, kind=kind, temperature=temperature, reduction="none")
    train_parties(parties, list(zip(images, targets)), epochs=epochs, batch_size=batch_size, loss_fn=loss_fn)


@checked_arguments(epochs=Integer(0))
def revisit(parties, *, epochs: int) -> None:
    """Revisit, in place: ``epochs`` of cross-entropy on each party's private data only."""
    parties = _as_parties(parties)
    for batch_size in sorted({p.batch_size for p in parties}):
        same = [p for p in parties if p.batch_size == batch_size]
        train_parties(same, [(p.private_images, p.private_labels) for p in same], epochs=epochs, batch_size=batch_size)


@dataclass(frozen=True)
class FedMDHistory:
    """What :func:`run_fedmd` measured: ``accuracy[r, k]`` is party ``k``'s test accuracy after
    round ``r`` (row 0: before the first round, i.e. the private-only baseline)."""

    accuracy: np.ndarray
    party_names: tuple[str, ...]
    parties: list[Party]
    settings: dict

    @property
    def mean_accuracy(self) -> np.ndarray:
        """``(rounds + 1,)`` the parties' mean test accuracy after each round."""
        return self.accuracy.mean(axis=1)


LOCKSTEP_FIELDS = ("rounds", "digest_epochs", "revisit_epochs", "digest_batch_size")  # shared by runs in lockstep


@dataclass
class FedMDRun:
    """One federation to run: its parties, test set and :class:`FedMDSettings` (its own subset
    size, consensus, rule and server seed; the runs of one :func:`run_fedmd_together` call share
    their :data:`LOCKSTEP_FIELDS`: rounds and epochs).

    ``digest_target``: ``"consensus"`` is FedMD. The controls keep every other step and epoch:
    ``"none"`` skips digest (parties only revisit: the gain from more private training alone);
    ``"own logits"`` digests the party's own logits instead of the average (the same public data,
    loss and steps, but nothing learned from the others: self-distillation).
    ``tamper``: what reaches the server instead of the parties' honest scores, a function of the
    ``(m, S, C)`` scores returning new ``(m, S, C)`` scores (a party that cheats, lesson 6); ``None``:
    everybody is honest. It acts on the consensus only, never on what a party digests of its own.
    """

    parties: list
    test_images: torch.Tensor
    test_labels: torch.Tensor
    settings: FedMDSettings = field(default_factory=FedMDSettings)
    digest_target: str = "consensus"
    tamper: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self):
        check_fields(self, settings=Instance(FedMDSettings), digest_target=OneOf(*DIGEST_TARGETS),
                     tamper=Optional(CallableArgument()))
        if not list(self.parties):
            raise ValueError("parties: FedMD needs at least one party")

    @property
    def subset_size(self) -> int:
        return self.settings.subset_size

    @property
    def seed(self) -> int:
        return self.settings.seed


@checked_arguments(runs=Each(Instance(FedMDRun)), servers=Each(Instance(torch.Generator)), public_images=Tensor())
def fedmd_round(runs: list[FedMDRun], servers: list[torch.Generator], public_images: torch.Tensor) -> None:
    """One round of Li & Wang's Algorithm 1 for every federation in ``runs``, in place:

    1. communicate: the server draws ``subset_size`` public indices (:func:`draw_public_subset`);
       every party scores them (:func:`party_logits`);
    2. aggregate: :func:`compute_consensus` of the parties' scores, by the run's ``rule``, after the
       run's ``tamper`` (the controls: each party's own scores, or nothing);
    3. digest: every party fits its consensus (:func:`digest`);
    4. revisit: every party trains on its private data (:func:`revisit`).

    Steps 3 and 4 take the parties of all federations at once, so parties that share an
    architecture train together; each keeps its own data, targets and batch stream. The epochs are
    the runs' shared :data:`LOCKSTEP_FIELDS`.
    """
    if len(servers) != len(runs):
        raise ValueError(f"servers must give one generator per run ({len(runs)}), got {len(servers)}")
    shared = _lockstep_settings(runs)
    digesting: dict[tuple, tuple[list, list, list]] = {}
    for run, server in zip(runs, servers):
        settings = run.settings
        indices = draw_public_subset(server, len(public_images), settings.subset_size)
        subset = public_images[indices]
        scores = torch.stack([party_logits(p, public_images, indices) for p in run.parties])
        if run.digest_target == "none":
            continue
        if run.digest_target == "consensus":
            received = scores if run.tamper is None else run.tamper(scores)
            if received.shape != scores.shape:
                raise ValueError(f"tamper must return scores of shape {tuple(scores.shape)}, got {tuple(received.shape)}")
            targets = [compute_consensus(received, settings.kind, settings.temperature, settings.rule,
                                         settings.trim)] * len(run.parties)
        else:  # "own logits": each party's own scores through the same code
            targets = [compute_consensus(scores[k : k + 1], settings.kind, settings.temperature)
                       for k in range(len(scores))]
        parties, subsets, consensus = digesting.setdefault((settings.kind, settings.temperature), ([], [], []))
        parties.extend(run.parties)
        subsets.extend([subset] * len(run.parties))
        consensus.extend(targets)
    for (kind, temperature), (parties, subsets, consensus) in digesting.items():
        digest(parties, subsets, consensus, epochs=shared.digest_epochs, batch_size=shared.digest_batch_size,
               kind=kind, temperature=temperature)
    revisit([party for run in runs for party in run.parties], epochs=shared.revisit_epochs)


def _lockstep_settings(runs: list[FedMDRun]) -> FedMDSettings:
    """The first run's settings, after checking every run agrees with it on :data:`LOCKSTEP_FIELDS`."""
    first = runs[0].settings
    for k, run in enumerate(runs):
        for name in LOCKSTEP_FIELDS:
            if getattr(run.settings, name) != getattr(first, name):
                raise ValueError(f"runs[{k}].settings.{name} is {getattr(run.settings, name)!r} but runs[0]'s is "
                                 f"{getattr(first, name)!r}: runs in lockstep share their rounds and epochs")
    return first


@checked_arguments(public_images=Tensor())
def copies_for_rounds(runs: list, public_images: torch.Tensor, kind: str) -> tuple[list, list[torch.Generator]]:
    """What every lockstep runner starts with: ``runs`` (each with ``parties``, ``subset_size`` and
    ``seed``) checked against the public set, each with deep copies of its parties (the originals
    stay untouched), and one server stream per run, seeded by the run's ``seed``. ``kind`` names the
    runs' type in the error for an empty list."""
    if not runs:
        raise ValueError(f"runs: give at least one {kind}")
    for run in runs:
        if run.subset_size > len(public_images):
            raise ValueError(f"subset_size must be at most the public set's size {len(public_images)}, "
                             f"got {run.subset_size}")
    copies = [dataclasses.replace(run, parties=copy.deepcopy(list(run.parties))) for run in runs]
    return copies, [torch.Generator().manual_seed(run.seed) for run in runs]


@checked_arguments(public_images=Tensor())
def run_fedmd_together(runs: list[FedMDRun], public_images: torch.Tensor, *, progress: bool | None = None,
                       description: str = "FedMD rounds") -> list[FedMDHistory]:
    """Several FedMD runs in lockstep (the same rounds and epochs), each on deep copies of its
    parties, each with its own server stream: the same histories as :func:`run_fedmd` run by run,
    faster, because each round trains the parties of every run at once (:func:`fedmd_round`)."""
    runs, servers = copies_for_rounds(runs, public_images, "FedMDRun")
    rounds = _lockstep_settings(runs).rounds

    def scores() -> list[list[float]]:
        return [[accuracy(p.model, run.test_images, run.test_labels) for p in run.parties] for run in runs]

    history = [scores()]
    for _ in progress_bar(range(rounds), progress, description):
        fedmd_round(runs, servers, public_images)
        history.append(scores())
    return [
        FedMDHistory(np.array([row[r] for row in history]), tuple(p.name for p in run.parties), run.parties,
                     dict(dataclasses.asdict(run.settings), digest_target=run.digest_target))
        for r, run in enumerate(runs)
    ]


@checked_arguments(public_images=Tensor(), test_images=Tensor(), test_labels=LABELS,
                   settings=Optional(Instance(FedMDSettings)), digest_target=OneOf(*DIGEST_TARGETS),
                   public_labels=Optional(LABELS))
def run_fedmd(parties, public_images: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
              settings: FedMDSettings | None = None, *, digest_target: str = "consensus",
              public_labels: torch.Tensor | None = None, transfer_epochs: tuple[int, int] | None = None,
              progress: bool | None = None, description: str = "FedMD rounds") -> FedMDHistory:
    """FedMD (Li & Wang 2019, Algorithm 1) on deep copies of ``parties``; the originals are untouched.

    Args:
        parties: :class:`Party` objects. Already transfer-learned unless ``transfer_epochs`` is given.
        public_images: the public data ``(N0, 1, H, W)``.
        test_images, test_labels: the private task's test set, used to *report* accuracy after each
            round, never to choose anything.
        settings: the rounds' :class:`FedMDSettings` (default: its defaults).
        digest_target: FedMD (``"consensus"``) or a control (:class:`FedMDRun`).
        public_labels: ``(N0,)``, needed only with ``transfer_epochs``.
        transfer_epochs: ``(public_epochs, private_epochs)`` to run transfer learning first.
    """
    settings = FedMDSettings() if settings is None else settings
    if public_labels is None and transfer_epochs is not None:
        raise ValueError("public_labels is needed for transfer learning (transfer_epochs)")
    run = FedMDRun(list(parties), test_images, test_labels, settings, digest_target=digest_target)
    if transfer_epochs is not None:
        run.parties = copy.deepcopy(run.parties)  # the originals stay untouched
        public_epochs, private_epochs = transfer_epochs
        transfer_learning(run.parties, public_images, public_labels, public_epochs=public_epochs,
                          private_epochs=private_epochs)
    return run_fedmd_together([run], public_images, progress=progress, description=description)[0]


@checked_arguments(test_images=Tensor(), test_labels=LABELS, epochs=Integer(1))
def pooled_upper_bound(parties, test_images, test_labels, *, epochs: int) -> np.ndarray:
    """The pooled upper bound (Li & Wang's reference): each party's architecture trained on *all* parties' private
    data together, for a fixed ``epochs`` (no early stopping on the test set: the official code's leak of test data into model selection is not
    copied). Give the parties after :func:`pretrain_on_public`; they are copied, not changed.
    Returns each architecture's test accuracy ``(m,)``."""
    images = torch.cat([p.private_images for p in parties])
    labels = torch.cat([p.private_labels for p in parties])
    pooled = copy.deepcopy(list(parties))
    for party in pooled:
        party.private_images, party.private_labels = images, labels
    revisit(pooled, epochs=epochs)
    return np.array([accuracy(party.model, test_images, test_labels) for party in pooled])


@dataclass(frozen=True)
class RoundBytes:
    """Bytes one round moves, uploads plus downloads over all parties."""

    fedmd: int
    fedavg: int


@checked_arguments(subset_size=Integer(1), num_classes=Integer(1), bytes_per_number=Integer(1))
def bytes_per_round(models, subset_size: int, num_classes: int = NUM_CLASSES, bytes_per_number: int = 4) -> RoundBytes:
    """What crosses the network in one round, counting 32-bit floats by default.

    FedMD: each of the ``m`` parties uploads its logits ``(S, C)`` and downloads the consensus
    ``(S, C)``: ``2 m S C`` numbers (the subset's indices can travel as one seed).
    FedAvg, had the models been averageable: each party uploads and downloads its weights,
    ``2 sum_k |theta_k|`` numbers.
    """
    models = list(models)
    fedmd = 2 * len(models) * subset_size * num_classes * bytes_per_number
    fedavg = 2 * sum(count_parameters(m) for m in models) * bytes_per_number
    return RoundBytes(fedmd, fedavg)
