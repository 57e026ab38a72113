"""Lesson 6's experiment: three of lesson 5's parties as separate Flower processes on loopback, one
of them stopped mid-run, against the same FedMD (Li & Wang 2019, Algorithm 1) in one process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import ImageSplit, load_digits_split
from ..fedmd import FedMDHistory, Party, run_fedmd
from ..flower_fedmd.protocol import RoundPolicy
from ..flower_run import FlowerFedMDRun, run_fedmd_on_flower
from ..letters import LetterData
from ..validation import check_int_at_least, check_positive_finite
from . import lesson5_fedmd
from .claims import Claim, at_least, at_most

NUM_CLASSES = 16  # 10 public digit classes + 6 private letters (fedkd_lessons.fedmd)


@dataclass(frozen=True)
class Settings:
    """Lesson 6's run. The parties, their letters and their transfer learning are lesson 5's, made
    by lesson 5's own functions from lesson 5's settings at the same seed; the rounds are fewer,
    because every message starts a fresh process per party."""

    seed: int = 0
    chosen: tuple[int, ...] = (0, 6, 3)  # of lesson 5's ten: mlp 32, cnn 8-16, mlp 64-32-32 (no dropout)
    rounds: int = 3
    subset_size: int = 500
    digest_epochs: int = 1
    revisit_epochs: int = 2
    stop_party: int = 2  # position in ``chosen`` of the party whose machine is stopped ...
    stop_before_message: int = 2  # ... right before this message reaches it
    min_replies: int = 2
    timeout: float = 120.0
    grace: float = 6.0

    def __post_init__(self):
        check_int_at_least(self.seed, "seed", 0)
        everyone = self.lesson5.parties
        if len(self.chosen) < 2 or len(set(self.chosen)) != len(self.chosen):
            raise ValueError(f"chosen must name at least two different parties, got {self.chosen!r}")
        for k in self.chosen:
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < everyone:
                raise ValueError(f"chosen must hold lesson 5's party numbers in [0, {everyone - 1}], got {self.chosen!r}")
        check_int_at_least(self.subset_size, "subset_size", 1)
        for name in ("digest_epochs", "revisit_epochs"):
            check_int_at_least(getattr(self, name), name, 0)
        check_int_at_least(self.rounds, "rounds", 1)
        if not 0 <= self.stop_party < len(self.chosen):
            raise ValueError(f"stop_party must be a position in chosen, in [0, {len(self.chosen) - 1}], "
                             f"got {self.stop_party!r}")
        if not 1 <= self.stop_before_message <= self.rounds:
            raise ValueError(f"stop_before_message must be in [1, rounds = {self.rounds}], "
                             f"got {self.stop_before_message!r}")
        if not 1 <= self.min_replies <= len(self.chosen) - 1:
            raise ValueError(f"min_replies must be in [1, {len(self.chosen) - 1}] so that the run survives the "
                             f"stopped party, got {self.min_replies!r}")
        check_positive_finite(self.timeout, "timeout")
        check_positive_finite(self.grace, "grace")

    @property
    def lesson5(self) -> lesson5_fedmd.Settings:
        """Lesson 5's settings at this seed: its letters, models, seeds and transfer learning."""
        return lesson5_fedmd.Settings(seed=self.seed)

    @property
    def policy(self) -> RoundPolicy:
        return RoundPolicy(min_replies=self.min_replies, timeout=self.timeout, grace=self.grace)

    @property
    def fedmd_options(self) -> dict:
        """The arguments that ``run_fedmd`` and ``run_fedmd_on_flower`` share."""
        return dict(rounds=self.rounds, subset_size=self.subset_size, digest_epochs=self.digest_epochs,
                    revisit_epochs=self.revisit_epochs, seed=self.seed)


def transfer_learned_parties(settings: Settings, public: ImageSplit) -> tuple[list[Party], LetterData]:
    """Lesson 5's parties ``settings.chosen``, with lesson 5's letters, initial weights and seeds,
    after lesson 5's transfer learning (public digits, then their private letters)."""
    lesson5 = settings.lesson5
    letters = lesson5_fedmd.make_letters(lesson5)
    everyone = lesson5_fedmd.make_lesson_parties(lesson5, letters, image_size=public.train_images.shape[-1])
    parties = [everyone[k] for k in settings.chosen]
    lesson5_fedmd.transfer_learn(parties, public, letters, lesson5, with_upper_bound=False)
    return parties, letters


def run_on_flower(settings: Settings, parties, public: ImageSplit, letters: LetterData) -> FlowerFedMDRun:
    """The parties as Flower SuperNodes on loopback; party ``settings.stop_party`` is stopped."""
    return run_fedmd_on_flower(parties, public.train_images, letters.test_images, letters.test_labels,
                               **settings.fedmd_options, policy=settings.policy,
                               stop_party=(settings.stop_party, settings.stop_before_message))


def run_in_one_process(settings: Settings, parties, public: ImageSplit, letters: LetterData,
                       progress: bool | None = None) -> FedMDHistory:
    """Lesson 5's ``run_fedmd`` on the same parties and seed, nobody stopped: the reference."""
    return run_fedmd(parties, public.train_images, letters.test_images, letters.test_labels,
                     **settings.fedmd_options, progress=progress, description="in one process")


@dataclass
class FlowerLessonResult:
    settings: Settings
    flower: FlowerFedMDRun
    in_process: FedMDHistory


def run_claims_experiment(settings: Settings) -> FlowerLessonResult:
    """Build the parties, run them on Flower and in one process."""
    public = load_digits_split()
    parties, letters = transfer_learned_parties(settings, public)
    flower = run_on_flower(settings, parties, public, letters)
    return FlowerLessonResult(settings, flower, run_in_one_process(settings, parties, public, letters, progress=False))


def comparable_before_stop(settings: Settings, shape) -> np.ndarray:
    """Which ``accuracy[j, k]`` both runs computed from the same consensus: every party up to the
    stop (the consensus of round ``stop_before_message`` still holds the stopped party's logits, sent
    with its last reply), and only the stopped party is left out from then on."""
    before = np.zeros(shape, dtype=bool)
    before[: settings.stop_before_message + 1, :] = True
    before[settings.stop_before_message:, settings.stop_party] = False
    return before


def largest_consensus_error(flower: FlowerFedMDRun) -> float:
    """The largest gap between the consensus a party received and the mean of the logits the
    parties sent that round, both read from the parties' own diaries."""
    worst = 0.0
    rounds = sorted({r for diary in flower.diaries for kind, r in diary if kind == "sent"})
    for round_number in rounds:
        sent = [d[("sent", round_number)] for d in flower.diaries if ("sent", round_number) in d]
        mean = sum(sent) / len(sent)
        for diary in flower.diaries:
            if ("received", round_number) in diary:
                worst = max(worst, float((diary[("received", round_number)] - mean).abs().max()))
    return worst


def full_round_overhead(flower: FlowerFedMDRun, subset_size: int, num_classes: int = NUM_CLASSES) -> float:
    """Measured bytes of a full round (a message every party answered, carrying a consensus and new
    indices) over lesson 5's formula 2 m S C x 4 B, minus 1."""
    parties = len(flower.party_names)
    full = [j for j, m in enumerate(flower.messages)
            if len(m["replied"]) == parties and 0 < j < len(flower.messages) - 1]
    if not full:
        raise ValueError("the run has no message that every party answered between its first and last")
    down, up = flower.bytes_per_message()[full[0]]
    return (down + up) / (2 * parties * subset_size * num_classes * 4) - 1


def claims(result: FlowerLessonResult) -> list[Claim]:
    """What lesson 6's prose says of the run."""
    settings, flower, in_process = result.settings, result.flower, result.in_process
    survivors = [k for k in range(len(settings.chosen)) if k != settings.stop_party]
    before = comparable_before_stop(settings, in_process.accuracy.shape)
    difference = np.abs(flower.accuracy - in_process.accuracy)[before]
    after_stop = flower.messages[settings.stop_before_message + 1:]
    return [
        # the same seeded draws, thread count and order of summation on both sides: exactly equal
        at_most("up to the stop, every accuracy on Flower equals the one-process run's",
                float(difference.max()) if np.isfinite(difference).all() else float("nan"), 1e-6),
        at_most("each party received the mean of the logits the parties sent that round",
                largest_consensus_error(flower), 1e-6),
        at_least("the run finished: every party but the stopped one answered the last message",
                 len(set(survivors) & set(flower.messages[-1]["replied"])) - len(survivors), 0),
        at_most("once it missed a message, the stopped party was not addressed again",
                sum(settings.stop_party in m["addressed"] for m in after_stop), 0),
        # the indices (sent with the new subset and with the consensus) and Flower's headers;
        # measured 5.7 % at S = 500 on seeds 0 and 1
        at_most("a full round costs lesson 5's formula 2 m S C x 4 B plus at most 10 %",
                full_round_overhead(flower, settings.subset_size), 0.10),
        at_most("no process that the run started is left running", len(flower.left_running), 0),
    ]
