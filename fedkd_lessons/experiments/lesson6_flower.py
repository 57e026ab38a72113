"""Lesson 6's experiments: three of lesson 5's parties as separate Flower processes on loopback, one
of them stopped mid-run, against the same FedMD (Li & Wang 2019, Algorithm 1) in one process; and a
party that poisons the consensus, under the mean and under a robust rule, over seeds, in one process."""

from __future__ import annotations

import copy
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fedkd_lessons.data.digits import ImageSplit, load_digits_split
from fedkd_lessons.data.letters import LetterData
from fedkd_lessons.fedmd import (CONSENSUS_RULES, FedMDHistory, FedMDRun, FedMDSettings, Party, pretrain_on_public,
                                 revisit, run_fedmd, run_fedmd_together)
from fedkd_lessons.flower.app.faults import parse_faults
from fedkd_lessons.flower.app.settings import FlowerSettings
from fedkd_lessons.flower.launcher import FlowerFedMDRun, Incidents, run_fedmd_on_flower
from fedkd_lessons.engine.seeding import seed_everything
from fedkd_lessons.engine.validation import (POSITIVE, Each, Instance, Integer, Optional, Real, check_fields,
                                             checked_arguments)
from fedkd_lessons.experiments import lesson5_fedmd
from fedkd_lessons.experiments.claims import Claim, at_least, at_most
from fedkd_lessons.experiments.intervals import PairedInterval, paired_interval

NUM_CLASSES = 16  # 10 public digit classes + 6 private letters (fedkd_lessons.fedmd)


@dataclass(frozen=True)
class Settings:
    """Lesson 6's run. The parties, their letters and their transfer learning are lesson 5's, made
    by lesson 5's own functions from lesson 5's settings at the same seed; the rounds are fewer,
    because every message starts a fresh process per party: two, one with every party and one
    without the party that stops. :attr:`fedmd` and :attr:`flower` are the settings objects the
    runs take."""

    seed: int = 0
    chosen: tuple[int, ...] = (0, 6, 3)  # of lesson 5's ten: mlp 32, cnn 8-16, mlp 64-32-32 (no dropout)
    rounds: int = 2  # each message starts a process per party: every round costs seconds of start-up
    subset_size: int = 500
    digest_epochs: int = 1
    revisit_epochs: int = 2
    stop_party: int = 2  # position in ``chosen`` of the party whose machine is stopped ...
    stop_before_message: int = 1  # ... right before this message reaches it
    min_replies: int = 2
    timeout: float = 120.0
    grace: float = 6.0
    secure: bool = True  # TLS and SuperNode authentication, with credentials made for the run
    intruder: bool = True  # a SuperNode whose key was never registered tries to join
    cheater_faults: str = "nan@0 spoof@1"  # a fourth, registered party that misbehaves (empty: none)

    def __post_init__(self):
        check_fields(self, seed=Integer(0), subset_size=Integer(1), digest_epochs=Integer(0), revisit_epochs=Integer(0),
                     rounds=Integer(1), stop_party=Integer(0), stop_before_message=Integer(1), min_replies=Integer(1),
                     timeout=POSITIVE, grace=POSITIVE, secure=Instance(bool), intruder=Instance(bool),
                     cheater_faults=Instance(str))
        if self.intruder and not self.secure:
            raise ValueError("intruder needs secure=True: without authentication any SuperNode may join")
        parse_faults(self.cheater_faults)
        everyone = self.lesson5.parties
        if len(self.chosen) < 2 or len(set(self.chosen)) != len(self.chosen):
            raise ValueError(f"chosen must name at least two different parties, got {self.chosen!r}")
        for k in self.chosen:
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < everyone:
                raise ValueError(f"chosen must hold lesson 5's party numbers in [0, {everyone - 1}], got {self.chosen!r}")
        if not 0 <= self.stop_party < len(self.chosen):
            raise ValueError(f"stop_party must be a position in chosen, in [0, {len(self.chosen) - 1}], "
                             f"got {self.stop_party!r}")
        if not 1 <= self.stop_before_message <= self.rounds:
            raise ValueError(f"stop_before_message must be in [1, rounds = {self.rounds}], "
                             f"got {self.stop_before_message!r}")
        if not 1 <= self.min_replies <= len(self.chosen) - 1:
            raise ValueError(f"min_replies must be in [1, {len(self.chosen) - 1}] so that the run survives the "
                             f"stopped party, got {self.min_replies!r}")

    @property
    def lesson5(self) -> lesson5_fedmd.Settings:
        """Lesson 5's settings at this seed: its letters, models, seeds and transfer learning."""
        return lesson5_fedmd.Settings(seed=self.seed)

    @property
    def fedmd(self) -> FedMDSettings:
        """FedMD's settings of this run, the same object for Flower and for the run in one process."""
        return FedMDSettings(rounds=self.rounds, subset_size=self.subset_size, digest_epochs=self.digest_epochs,
                             revisit_epochs=self.revisit_epochs, seed=self.seed)

    @property
    def flower(self) -> FlowerSettings:
        return FlowerSettings(min_replies=self.min_replies, round_timeout=self.timeout, grace=self.grace,
                              secure=self.secure)


@checked_arguments(settings=Instance(Settings), public=Instance(ImageSplit))
def transfer_learned_parties(settings: Settings, public: ImageSplit) -> tuple[list[Party], LetterData]:
    """Lesson 5's parties ``settings.chosen``, with lesson 5's letters, initial weights and seeds,
    after lesson 5's transfer learning (public digits, then their private letters)."""
    lesson5 = settings.lesson5
    letters = lesson5_fedmd.make_letters(lesson5)
    everyone = lesson5_fedmd.make_lesson_parties(lesson5, letters, image_size=public.train_images.shape[-1])
    parties = [everyone[k] for k in settings.chosen]
    lesson5_fedmd.transfer_learn(parties, public, letters, lesson5, with_upper_bound=False)
    return parties, letters


@checked_arguments(parties=Each(Instance(Party)))
def cheating_party(parties) -> Party:
    """The misbehaving party of the lesson's run: a copy of the first party (its model, letters and
    seed), registered like the others; only its replies are spoiled."""
    cheater = copy.deepcopy(parties[0])
    cheater.name = f"{cheater.name} (cheats)"
    return cheater


@checked_arguments(settings=Instance(Settings), parties=Each(Instance(Party)), public=Instance(ImageSplit),
                   letters=Instance(LetterData))
def run_on_flower(settings: Settings, parties, public: ImageSplit, letters: LetterData) -> FlowerFedMDRun:
    """The parties as Flower SuperNodes on loopback, with TLS and SuperNode authentication unless
    ``settings.secure`` is off: party ``settings.stop_party`` is stopped; with ``cheater_faults`` a
    cheating party joins as the last one; with ``intruder`` an unregistered SuperNode tries to."""
    parties = list(parties)
    faults = {}
    if settings.cheater_faults:
        faults[len(parties)] = settings.cheater_faults
        parties.append(cheating_party(parties))
    incidents = Incidents(stop_party=(settings.stop_party, settings.stop_before_message), faults=faults,
                          intruder=settings.intruder)
    return run_fedmd_on_flower(parties, public.train_images, letters.test_images, letters.test_labels,
                               settings.fedmd, settings.flower, incidents)


@checked_arguments(settings=Instance(Settings), parties=Each(Instance(Party)), public=Instance(ImageSplit),
                   letters=Instance(LetterData))
def run_in_one_process(settings: Settings, parties, public: ImageSplit, letters: LetterData,
                       progress: bool | None = None) -> FedMDHistory:
    """Lesson 5's ``run_fedmd`` on the same parties with the same settings, nobody stopped: the reference."""
    return run_fedmd(parties, public.train_images, letters.test_images, letters.test_labels, settings.fedmd,
                     progress=progress, description="in one process")


@dataclass
class FlowerLessonResult:
    settings: Settings
    flower: FlowerFedMDRun
    in_process: FedMDHistory


@checked_arguments(settings=Instance(Settings))
def run_claims_experiment(settings: Settings) -> FlowerLessonResult:
    """Build the parties, run them on Flower and in one process."""
    public = load_digits_split()
    parties, letters = transfer_learned_parties(settings, public)
    flower = run_on_flower(settings, parties, public, letters)
    return FlowerLessonResult(settings, flower, run_in_one_process(settings, parties, public, letters, progress=False))


@checked_arguments(settings=Instance(Settings), shape=Each(Integer(1)))
def comparable_before_stop(settings: Settings, shape) -> np.ndarray:
    """Which ``accuracy[j, k]`` both runs computed from the same consensus: every party up to the
    stop (the consensus of round ``stop_before_message`` still holds the stopped party's logits, sent
    with its last reply), and only the stopped party is left out from then on. ``shape`` is the
    accuracy table's, ``(rounds + 1, parties)``."""
    if tuple(shape) != (settings.rounds + 1, len(settings.chosen)):
        raise ValueError(f"shape must be (rounds + 1, parties) = {(settings.rounds + 1, len(settings.chosen))}, "
                         f"got {tuple(shape)}")
    before = np.zeros(shape, dtype=bool)
    before[: settings.stop_before_message + 1, :] = True
    before[settings.stop_before_message:, settings.stop_party] = False
    return before


def largest_consensus_error(flower: FlowerFedMDRun) -> float:
    """The largest gap between the consensus a party received and the mean of the logits sent that
    round by the parties whose replies the server accepted (its record), the logits and the
    consensus both read from the parties' own diaries."""
    worst = 0.0
    for message in flower.messages[:-1]:
        round_number = message["message"] + 1
        mean = sum(flower.diaries[k][("sent", round_number)] for k in message["replied"]) / len(message["replied"])
        for diary in flower.diaries:
            if ("received", round_number) in diary:
                worst = max(worst, float((diary[("received", round_number)] - mean).abs().max()))
    return worst


def full_round_message(flower: FlowerFedMDRun) -> dict:
    """The first message that carried a consensus and new indices (neither the first nor the last)
    and that some party answered: each party that answered it moved a full round's traffic."""
    full = [m for m in flower.messages[1:-1] if m["replied"]]
    if not full:
        raise ValueError("the run has no message between its first and last that a party answered")
    return full[0]


def full_round_bytes_per_party(flower: FlowerFedMDRun) -> float:
    """Measured bytes of a full round per party: the mean, over the parties that answered
    :func:`full_round_message`, of each one's download (consensus and indices) plus upload (logits)."""
    message = full_round_message(flower)
    return float(np.mean([message["bytes_down"][str(p)] + message["bytes_up"][str(p)] for p in message["replied"]]))


@checked_arguments(subset_size=Integer(1), num_classes=Integer(1))
def full_round_overhead(flower: FlowerFedMDRun, subset_size: int, num_classes: int = NUM_CLASSES) -> float:
    """:func:`full_round_bytes_per_party` over lesson 5's formula 2 S C x 4 B per party, minus 1."""
    return full_round_bytes_per_party(flower) / (2 * subset_size * num_classes * 4) - 1


@checked_arguments(result=Instance(FlowerLessonResult))
def claims(result: FlowerLessonResult) -> list[Claim]:
    """What lesson 6's prose says of the run."""
    settings, flower, in_process = result.settings, result.flower, result.in_process
    lesson = len(settings.chosen)  # the honest parties; a cheater, if any, comes after them
    survivors = [k for k in range(lesson) if k != settings.stop_party]
    before = comparable_before_stop(settings, in_process.accuracy.shape)
    difference = np.abs(flower.accuracy[:, :lesson] - in_process.accuracy)[before]
    after_stop = flower.messages[settings.stop_before_message + 1:]
    out = [
        # the same seeded draws, thread count and order of summation on both sides: exactly equal
        at_most("up to the stop, every accuracy on Flower equals the one-process run's",
                float(difference.max()) if np.isfinite(difference).all() else float("nan"), 1e-6),
        at_most("each party received the mean of the logits of the replies the server accepted",
                largest_consensus_error(flower), 1e-6),
        at_least("the run finished: every honest party but the stopped one answered the last message",
                 len(set(survivors) & set(flower.messages[-1]["replied"])) - len(survivors), 0),
        at_most("once it missed a message, the stopped party was not addressed again",
                sum(settings.stop_party in m["addressed"] for m in after_stop), 0),
        # the indices (sent with the new subset and with the consensus) and Flower's headers;
        # measured 5.7 % at S = 500 on seeds 0 and 1
        at_most("a full round costs lesson 5's formula 2 S C x 4 B per party plus at most 10 %",
                full_round_overhead(flower, settings.subset_size), 0.10),
        at_most("no process that the run started is left running", len(flower.left_running), 0),
    ]
    if settings.cheater_faults:
        faults = parse_faults(settings.cheater_faults)
        dropped = {(j, party) for j, party, _ in flower.dropped()}
        out += [
            at_least("every spoiled reply of the cheating party was dropped",
                     sum((j, lesson) in dropped for j in faults) - len(faults), 0),
            at_most("no honest party's reply was dropped", sum(party != lesson for _, party in dropped), 0),
            at_most("after its spoofed id the cheating party was not addressed again",
                    sum(lesson in m["addressed"] for m in flower.messages[max(faults) + 1:]), 0),
        ]
    if settings.intruder:
        fate = flower.intruder
        out.append(at_least("the SuperLink refused the SuperNode whose key was not registered",
                            float(fate["exit_code"] not in (None, 0) and not fate["got_node_id"]
                                  and not fate["addressed_strangers"]), 1.0))
    return out


# ---- a party that poisons the consensus (in one process, over seeds) ----

@dataclass(frozen=True)
class PoisoningSettings:
    """A party that sends ``scale`` times its honest logits (negative: flipped, the classes it finds
    least likely made the most likely, and louder), in lesson 5's federation at seeds
    ``seed .. seed + seeds - 1``, restricted to lesson 5's parties ``chosen``. Every run of a seed
    starts from the same transfer-learned parties: nobody cheats or the party at position
    ``poisoner`` of ``chosen`` cheats, under the ``"mean"`` (FedMD's) and under ``robust_rule``, for
    ``rounds`` rounds.

    ``chosen`` defaults to every other one of lesson 5's ten parties (mlp 32, mlp 128-64, cnn 8,
    cnn 8-16, cnn 8-16-16: both kinds, one to three layers, one with dropout): all ten cost more than
    twice as much of one core as these five (13 s on the machine that measured the claims' bounds),
    which lets the experiment finish inside the Flower run's idle time. Among five, one cheater holds
    a fifth of the mean's weight."""

    seed: int = 0
    seeds: int = 5
    chosen: tuple[int, ...] = (0, 2, 4, 6, 8)
    poisoner: int = 0  # position in ``chosen``: lesson 5's party 0 (mlp 32)
    scale: float = -5.0
    robust_rule: str = "median"
    rounds: int = 5
    fedmd: lesson5_fedmd.Settings = field(default_factory=lesson5_fedmd.Settings)

    def __post_init__(self):
        check_fields(self, seed=Integer(0), seeds=Integer(2), rounds=Integer(1),
                     fedmd=Instance(lesson5_fedmd.Settings))
        everyone = self.fedmd.parties
        if len(self.chosen) < 3 or len(set(self.chosen)) != len(self.chosen) or not all(
                isinstance(k, int) and not isinstance(k, bool) and 0 <= k < everyone for k in self.chosen):
            raise ValueError(f"chosen must name at least three different parties of lesson 5's, in [0, {everyone - 1}] "
                             f"(a median needs two honest parties to outvote one), got {self.chosen!r}")
        if isinstance(self.poisoner, bool) or not isinstance(self.poisoner, int) \
                or not 0 <= self.poisoner < len(self.chosen):
            raise ValueError(f"poisoner must be a position in chosen, in [0, {len(self.chosen) - 1}], got {self.poisoner!r}")
        if not (isinstance(self.scale, (int, float)) and np.isfinite(self.scale) and self.scale != 1):
            raise ValueError(f"scale must be a finite number other than 1 (1 is honest), got {self.scale!r}")
        if self.robust_rule not in CONSENSUS_RULES or self.robust_rule == "mean":
            raise ValueError(f"robust_rule must be one of {CONSENSUS_RULES[1:]}, got {self.robust_rule!r}")

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.seed + i for i in range(self.seeds))

    @property
    def variants(self) -> dict[str, dict]:
        """The four runs per seed: who cheats (nobody / the poisoner) x how the server aggregates."""
        poison = ScaleScores(self.poisoner, self.scale)
        return {"honest, mean": dict(rule="mean"), f"honest, {self.robust_rule}": dict(rule=self.robust_rule),
                "poisoned, mean": dict(rule="mean", tamper=poison),
                f"poisoned, {self.robust_rule}": dict(rule=self.robust_rule, tamper=poison)}


@dataclass(frozen=True)
class ScaleScores:
    """What reaches the server when party ``party`` sends ``scale`` times its logits and the others
    are honest: a ``tamper`` for :class:`fedkd_lessons.fedmd.FedMDRun`, ``(m, S, C) -> (m, S, C)``."""

    party: int
    scale: float

    def __post_init__(self):
        check_fields(self, party=Integer(0), scale=Real())

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        tampered = scores.clone()
        tampered[self.party] = self.scale * scores[self.party]
        return tampered


@dataclass
class PoisoningResult:
    """``final[variant]``: ``(seeds, m)`` every party's test accuracy after the last round;
    ``start``: ``(seeds, m)`` after transfer learning, before any round."""

    settings: PoisoningSettings
    final: dict[str, np.ndarray]
    start: np.ndarray

    def others(self, variant: str) -> np.ndarray:
        """``(seeds,)`` the mean final accuracy of every party but the poisoner."""
        keep = [k for k in range(self.start.shape[1]) if k != self.settings.poisoner]
        return self.final[variant][:, keep].mean(axis=1)

    def comparisons(self) -> dict[str, PairedInterval]:
        """The headlines, as paired differences over seeds of the other parties' mean accuracy."""
        robust = self.settings.robust_rule
        return {
            "poisoned - honest, under the mean": paired_interval(self.others("poisoned, mean"), self.others("honest, mean")),
            f"poisoned - honest, under the {robust}": paired_interval(self.others(f"poisoned, {robust}"),
                                                                      self.others(f"honest, {robust}")),
            f"poisoned: {robust} - mean": paired_interval(self.others(f"poisoned, {robust}"), self.others("poisoned, mean")),
            f"nobody cheats: {robust} - mean": paired_interval(self.others(f"honest, {robust}"), self.others("honest, mean")),
        }


@checked_arguments(settings=Instance(PoisoningSettings), public=Instance(ImageSplit))
def transfer_learned_federations(settings: PoisoningSettings, public: ImageSplit):
    """Lesson 5's parties ``settings.chosen`` at every seed, transfer-learned as lesson 5 does:
    ``(parties [seed][party], letters [seed])``. Each seed's parties are lesson 5's at that seed
    (initial weights, letters, batch streams); all seeds' parties learn the public digits and then
    their own letters together, and each seed draws its own subsets and dropout masks in the rounds."""
    image_size = public.train_images.shape[-1]
    lessons = [replace(settings.fedmd, seed=seed) for seed in settings.seed_list]
    letters = [lesson5_fedmd.make_letters(lesson) for lesson in lessons]
    parties = [[row[k] for k in settings.chosen]
               for row in (lesson5_fedmd.make_lesson_parties(lesson, data, image_size) for lesson, data in zip(lessons, letters))]
    everyone = [p for row in parties for p in row]
    pretrain_on_public(everyone, public.train_images, public.train_labels, epochs=settings.fedmd.public_epochs)
    revisit(everyone, epochs=settings.fedmd.private_epochs)
    return parties, letters


@checked_arguments(settings=Instance(PoisoningSettings), public=Optional(Instance(ImageSplit)))
def run_poisoning(settings: PoisoningSettings, public: ImageSplit | None = None,
                  progress: bool | None = None) -> PoisoningResult:
    """Every seed's federation under the four :attr:`PoisoningSettings.variants`, all in lockstep
    (:func:`fedkd_lessons.fedmd.run_fedmd_together`)."""
    public = public or load_digits_split()
    parties, letters = transfer_learned_federations(settings, public)
    runs = [FedMDRun(row, data.test_images, data.test_labels,
                     replace(settings.fedmd.rounds_at(seed), rounds=settings.rounds, rule=variant["rule"]),
                     tamper=variant.get("tamper"))
            for variant in settings.variants.values() for seed, row, data in zip(settings.seed_list, parties, letters)]
    histories = run_fedmd_together(runs, public.train_images, progress=progress,
                                   description="poisoning, 4 variants x seeds")
    final, start = {}, None
    for v, name in enumerate(settings.variants):
        mine = histories[v * settings.seeds : (v + 1) * settings.seeds]
        final[name] = np.stack([h.accuracy[-1] for h in mine])
        start = np.stack([h.accuracy[0] for h in mine])
    return PoisoningResult(settings, final, start)


def _background_worker(seed: int) -> None:
    """Lowest priority, so that this job takes only the CPU that the Flower processes leave idle.
    Linux shares the CPU between sessions first ("autogroups") and only then by nice value within
    each, and every Flower process leads a session of its own: a niced job in the notebook's session
    would still get as much as any of them. So the job leaves that session and lowers its own."""
    os.setsid()
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write("19")
    except OSError:  # not Linux, or autogroups off: the nice value below is what counts then
        pass
    os.nice(19)
    seed_everything(seed)  # as the notebook's first cell does: one torch thread, seeded streams


@checked_arguments(settings=Instance(PoisoningSettings))
def run_poisoning_in_background(settings: PoisoningSettings) -> tuple[ProcessPoolExecutor, Future]:
    """Start :func:`run_poisoning` in a separate, lower-priority process, and return the executor
    and the future of its :class:`PoisoningResult` (``future.result()`` waits for it; shut the
    executor down afterwards). Lesson 6 runs it while the Flower run mostly waits on its polls;
    the numbers are those of a foreground run, as the process is seeded the same way."""
    executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_background_worker, initargs=(settings.seed,))
    return executor, executor.submit(run_poisoning, settings, None, False)


@checked_arguments(result=Instance(PoisoningResult))
def poisoning_claims(result: PoisoningResult) -> list[Claim]:
    """What lesson 6's prose says of the poisoning experiment (intervals over its seeds). Measured
    at the notebook's settings (five of lesson 5's parties, five rounds, each seed lesson 5's at that
    seed), in points, over the ten windows of five seeds 0-4, 5-9, ..., 45-49: poisoned - honest
    under the mean from -23.3 [-30.0, -16.6] to -12.6 [-18.9, -6.3] (0-4: -18.2 [-23.3, -13.2]);
    under the median means from -0.6 to +1.1, interval bottoms from -3.2 (35-39: -0.6 [-3.2, +1.9])
    to +0.1 (10-14: +1.1 [+0.1, +2.1]; 0-4: -0.4 [-1.7, +1.0]); median - mean when poisoned bottoms
    from +6.5 to +14.5; when nobody cheats means from -0.8 to +0.7, bottoms from -2.8 (30-34:
    -0.3 [-2.8, +2.1]) to -0.1 (0-4: +0.5 [-0.1, +1.2]). Hence 4 points for the two costs: five
    seeds' intervals are a few points wide. (With one public pretraining shared by the seeds, as
    before, the bottoms stayed above -2.0 on seeds 0-19: the shared start hid that source of
    variation. All ten parties, measured before that: -8.1 [-9.8, -6.5] under the mean on seeds 0-4:
    among ten, one cheater moves the mean half as far.)"""
    robust = result.settings.robust_rule
    intervals = result.comparisons()
    return [
        at_most("under the mean, the poisoning party lowers the others' accuracy (the interval's top below 0)",
                intervals["poisoned - honest, under the mean"].high, 0.0),
        at_least(f"under attack the {robust} keeps the others above the mean (the interval's bottom above 0)",
                 intervals[f"poisoned: {robust} - mean"].low, 0.0),
        at_least(f"under the {robust} the poisoning party costs the others at most 4 points (the interval's bottom)",
                 intervals[f"poisoned - honest, under the {robust}"].low, -0.04),
        at_least(f"when nobody cheats the {robust} costs at most 4 points (the interval's bottom)",
                 intervals[f"nobody cheats: {robust} - mean"].low, -0.04),
    ]
