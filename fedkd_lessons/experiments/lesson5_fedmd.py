"""Lesson 5's experiments: FedMD (Li & Wang 2019, Algorithm 1) between ten parties of different
architectures, against a same-epochs control, an own-logits control and the pooled upper bound;
softened probabilities as the consensus; the public subset's size. And what the lesson claims
about FedMD against the same-epochs control.

The parties, letters and seeds are built exactly as lesson 6 builds them (same seed derivation,
same order of calls), so lesson 6's in-process run reproduces this lesson's parties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import ImageSplit, load_digits_split
from ..fedmd import NUM_CLASSES, NUM_PRIVATE_CLASSES, FedMDHistory, Party, make_parties, pooled_upper_bound
from ..fedmd import FedMDRun, pretrain_on_public, revisit, run_fedmd, run_fedmd_together
from ..letters import WRITERS, LetterData, make_letter_parties
from ..models import accuracy, make_fedmd_zoo
from ..validation import check_int_at_least, check_positive_finite
from .claims import Claim, at_least, at_most

CHANCE = 1 / NUM_PRIVATE_CLASSES  # guessing one of the six letters


@dataclass(frozen=True)
class Settings:
    """Every constant of lesson 5's experiments. ``seed`` moves everything random: the letters
    drawn (``make_letter_parties(seed=seed)``), the models' initial weights
    (``torch.manual_seed(seed)`` right before the zoo is built), each party's mini-batches (party
    ``k`` shuffles with ``seed + k``) and the server's public subsets (``run_fedmd(seed=seed)``).
    The digits' train/test split is the course's fixed one."""

    seed: int = 0
    parties: int = 10  # one writer each, the first ``parties`` models of the zoo
    letters_per_class: int = 10  # private letters per class per party
    evaluation_per_class: int = 10  # validation and test letters per class per writer
    public_epochs: int = 10  # transfer learning, first half: the public digits
    private_epochs: int = 30  # transfer learning, second half: the party's own letters
    pooled_epochs: int = 10  # the pooled upper bound, on all parties' letters after the public digits
    rounds: int = 10
    subset_size: int = 500  # public digits drawn afresh each round
    digest_epochs: int = 1
    revisit_epochs: int = 2
    softened_temperature: float = 4.0  # the consensus of softened probabilities (section 7)
    other_subset_sizes: tuple[int, ...] = (50, 1437)  # section 8, beside ``subset_size``

    def __post_init__(self):
        check_int_at_least(self.seed, "seed", 0)
        check_int_at_least(self.parties, "parties", 2)
        if self.parties > len(WRITERS):
            raise ValueError(f"parties must be at most {len(WRITERS)} (one writer each), got {self.parties!r}")
        for name in ("letters_per_class", "evaluation_per_class", "pooled_epochs", "rounds", "subset_size"):
            check_int_at_least(getattr(self, name), name, 1)
        for name in ("public_epochs", "private_epochs", "digest_epochs", "revisit_epochs"):
            check_int_at_least(getattr(self, name), name, 0)
        check_positive_finite(self.softened_temperature, "softened_temperature")
        for size in self.other_subset_sizes:
            check_int_at_least(size, "other_subset_sizes", 1)
        if self.subset_size in self.other_subset_sizes or len(set(self.other_subset_sizes)) != len(self.other_subset_sizes):
            raise ValueError(f"other_subset_sizes must be distinct and differ from subset_size = {self.subset_size}, "
                             f"got {self.other_subset_sizes!r}")

    @property
    def fedmd_options(self) -> dict:
        """The arguments every run of this lesson gives ``run_fedmd``."""
        return dict(rounds=self.rounds, subset_size=self.subset_size, digest_epochs=self.digest_epochs,
                    revisit_epochs=self.revisit_epochs, seed=self.seed)

    @property
    def subset_sizes(self) -> tuple[int, ...]:
        """Every public subset size section 8 compares, smallest first."""
        return tuple(sorted((self.subset_size, *self.other_subset_sizes)))


def make_letters(settings: Settings) -> LetterData:
    """The private letters (synthetic, one writer per party) and the test letters of every writer."""
    return make_letter_parties(num_parties=settings.parties, per_class=settings.letters_per_class,
                               evaluation_per_class=settings.evaluation_per_class, seed=settings.seed)


def make_lesson_parties(settings: Settings, letters: LetterData, image_size: int) -> list[Party]:
    """The zoo's first ``settings.parties`` models paired with the writers' letters."""
    torch.manual_seed(settings.seed)  # the zoo's initial weights
    zoo = make_fedmd_zoo(num_classes=NUM_CLASSES, image_size=image_size)[: settings.parties]
    return make_parties(zoo, letters.private, seed=settings.seed)


@dataclass(frozen=True)
class TransferResult:
    """What transfer learning measured: digit test accuracy after the public half, and the pooled
    upper bound branched off there (``None`` when it was not asked for)."""

    digit_accuracy: np.ndarray  # (m,)
    upper_bound: np.ndarray | None  # (m,)


def transfer_learn(parties: list[Party], public: ImageSplit, letters: LetterData, settings: Settings, *,
                   with_upper_bound: bool = True) -> TransferResult:
    """Algorithm 1's first step, in place: public digits, then private letters; between the two,
    the pooled upper bound. The parties end the same with or without it: it trains copies, and
    torch's global random stream (which draws the dropout masks) is restored after it, so the
    claims experiment can skip it and still measure the notebook's parties."""
    pretrain_on_public(parties, public.train_images, public.train_labels, epochs=settings.public_epochs)
    digit_accuracy = np.array([accuracy(p.model, public.test_images, public.test_labels) for p in parties])
    upper_bound = None
    if with_upper_bound:
        with torch.random.fork_rng(devices=[]):
            upper_bound = pooled_upper_bound(parties, letters.test_images, letters.test_labels,
                                             epochs=settings.pooled_epochs)
    revisit(parties, epochs=settings.private_epochs)
    return TransferResult(digit_accuracy, upper_bound)


def run_rounds(parties: list[Party], public: ImageSplit, letters: LetterData, settings: Settings, *,
               progress: bool | None = None, description: str = "FedMD", **changes) -> FedMDHistory:
    """``settings.rounds`` FedMD rounds on copies of the transfer-learned ``parties``; ``changes``
    overrides any of ``run_fedmd``'s arguments (``digest_target``, ``consensus``, ``revisit_epochs`` ...)."""
    options = {**settings.fedmd_options, **changes}
    return run_fedmd(parties, public.train_images, letters.test_images, letters.test_labels, **options,
                     progress=progress, description=description)


def run_variants(parties: list[Party], public: ImageSplit, letters: LetterData, settings: Settings,
                 variants: dict[str, dict], *, progress: bool | None = None) -> dict[str, FedMDHistory]:
    """Variants of the lesson's ``settings.rounds`` FedMD rounds, each on copies of the same
    transfer-learned ``parties``, run in lockstep (:func:`fedkd_lessons.fedmd.run_fedmd_together`,
    so each round's parties of one architecture train at once). Each variant's dict overrides
    ``digest_target``, ``consensus``, ``temperature`` or ``subset_size`` (see ``run_fedmd``)."""
    runs = [FedMDRun(parties, letters.test_images, letters.test_labels,
                     **{"subset_size": settings.subset_size, "seed": settings.seed, **changes})
            for changes in variants.values()]
    histories = run_fedmd_together(runs, public.train_images, rounds=settings.rounds,
                                   digest_epochs=settings.digest_epochs, revisit_epochs=settings.revisit_epochs,
                                   progress=progress, description=", ".join(variants))
    return dict(zip(variants, histories))


CONTROL = {"digest_target": "none"}  # the same rounds, subsets and revisit epochs, no digest step
OWN_LOGITS = {"digest_target": "own logits"}  # digest each party's own scores: nothing from the others


def run_fedmd_and_control(parties, public, letters, settings, progress=None) -> tuple[FedMDHistory, FedMDHistory]:
    """FedMD, and the control that runs the same rounds, subsets and revisit epochs from the same
    start with the digest step removed (``digest_target="none"``)."""
    runs = run_variants(parties, public, letters, settings, {"FedMD": {}, "control": CONTROL}, progress=progress)
    return runs["FedMD"], runs["control"]


def run_fedmd_and_controls(parties, public, letters, settings,
                           progress=None) -> tuple[FedMDHistory, FedMDHistory, FedMDHistory]:
    """FedMD, the same-epochs control and the control that digests each party's own scores (the
    same public data, loss and steps, nothing learned from the others)."""
    runs = run_variants(parties, public, letters, settings,
                        {"FedMD": {}, "control": CONTROL, "own logits": OWN_LOGITS}, progress=progress)
    return runs["FedMD"], runs["control"], runs["own logits"]


def run_softened(parties, public, letters, settings, progress=None) -> FedMDHistory:
    """FedMD with the consensus of softened probabilities at ``settings.softened_temperature``."""
    variant = {"consensus": "probabilities", "temperature": settings.softened_temperature}
    return run_variants(parties, public, letters, settings, {f"softened T={settings.softened_temperature:g}": variant},
                        progress=progress).popitem()[1]


def run_other_subset_sizes(parties, public, letters, settings, progress=None) -> dict[int, FedMDHistory]:
    """FedMD at each of ``settings.other_subset_sizes`` (the run at ``subset_size`` is FedMD itself)."""
    runs = run_variants(parties, public, letters, settings,
                        {f"S={size}": {"subset_size": size} for size in settings.other_subset_sizes}, progress=progress)
    return dict(zip(settings.other_subset_sizes, runs.values()))


@dataclass(frozen=True)
class GainSplit:
    """Where FedMD's final mean accuracy comes from, against the same-epochs control; accuracies
    are fractions (multiply by 100 for points)."""

    round_zero: float  # mean accuracy after transfer learning, before any round
    more_training: float  # control - round 0: the same epochs of private training, no consensus
    consensus_gain: float  # FedMD - control: what the consensus adds, on average
    parties_below_control: int  # parties whose FedMD accuracy ends below their control's
    smallest_party_gain: float  # min over parties of (FedMD - control), each party against its own control
    worst_round_zero: float  # the lowest party accuracy at round 0
    parties_below_chance_at_round_zero: int  # round-0 parties under 1/6 on the letters

    @property
    def over_round_zero(self) -> float:
        return self.more_training + self.consensus_gain


def gain_split(fedmd: FedMDHistory, control: FedMDHistory) -> GainSplit:
    """The split of FedMD's final mean accuracy into more training and the consensus, from two runs
    that share their start (round 0)."""
    if not np.array_equal(fedmd.accuracy[0], control.accuracy[0]):
        raise ValueError("fedmd and control must start from the same transfer-learned parties (round 0)")
    final, final_control, round_zero = fedmd.accuracy[-1], control.accuracy[-1], fedmd.accuracy[0]
    return GainSplit(
        round_zero=float(round_zero.mean()),
        more_training=float(final_control.mean() - round_zero.mean()),
        consensus_gain=float(final.mean() - final_control.mean()),
        parties_below_control=int((final < final_control).sum()),
        smallest_party_gain=float((final - final_control).min()),
        worst_round_zero=float(round_zero.min()),
        parties_below_chance_at_round_zero=int((round_zero < CHANCE).sum()),
    )


@dataclass
class FedMDLessonResult:
    """The runs the lesson's prose draws its conclusions from: transfer learning, FedMD and the
    same-epochs control. The own-logits control, the pooled upper bound, softened probabilities
    and other subset sizes are shown in the notebook, and the prose draws no conclusion from them
    (running them too would triple the claims test's time)."""

    settings: Settings
    digit_accuracy: np.ndarray
    fedmd: FedMDHistory
    control: FedMDHistory


def run_claims_experiment(settings: Settings, progress: bool | None = False) -> FedMDLessonResult:
    """Build the data and parties at ``settings`` and run the experiments the prose concludes from."""
    public = load_digits_split()
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, public.train_images.shape[-1])
    transfer = transfer_learn(parties, public, letters, settings, with_upper_bound=False)
    fedmd, control = run_fedmd_and_control(parties, public, letters, settings, progress)
    return FedMDLessonResult(settings, transfer.digit_accuracy, fedmd, control)


def claims(result: FedMDLessonResult) -> list[Claim]:
    """What lesson 5's prose concludes from its runs. Gains are in points (100 x accuracy)."""
    split = gain_split(result.fedmd, result.control)
    return [
        # seeds 0-9: 0.000-0.122 (chance is 0.167)
        at_most(f"at round 0 some party still scores below the 1-in-{round(1 / CHANCE)} chance of guessing a letter, "
                "so round 0 is not a fair no-collaboration baseline", split.worst_round_zero, CHANCE),
        # seeds 0-9: 0.70-0.88
        at_least("most of FedMD's climb from round 0 is more private training, which the control gets too",
                 split.more_training / split.over_round_zero, 0.55, unit="of the climb"),
        # seeds 0-9: +3.7 to +10.6 points
        at_least("on average FedMD ends above the control that trains as long without the consensus",
                 100 * split.consensus_gain, 1.0, unit="points"),
        # mean gain - smallest party gain; seeds 0-9: 5.1-9.5 points (on most seeds some party ends below its control)
        at_least("the consensus helps the parties unevenly: the least-helped party gains at least two points "
                 "less than the average", 100 * (split.consensus_gain - split.smallest_party_gain), 2.0, unit="points"),
    ]
