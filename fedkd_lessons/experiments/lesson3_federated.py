"""Lesson 3's experiments: FedAvg on Dirichlet partitions of the digits, one round traced by hand,
and what median and DP-style aggregation cost (McMahan et al. 2017, Algorithm 1; Yu et al. 2020: the
abstract's claims, the CIFAR-10, DP and median settings of the authors' official code), with what the
lesson claims about them. The client-drift toy is in :mod:`.lesson3_client_drift`."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from fedkd_lessons.engine.batched import StackedData
from fedkd_lessons.data.partition import Federation, class_skew, make_federation
from fedkd_lessons.data.digits import ImageSplit, load_digits_split
from fedkd_lessons.fedavg import FedAvgHistory, FedAvgSettings, class_accuracies, fedavg_round, run_fedavg
from fedkd_lessons.engine.models import accuracy, make_mlp
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Each, Instance, Integer, Optional, Real, check_fields,
                                             checked_arguments)
from fedkd_lessons.experiments.claims import Claim, at_least, at_most
from fedkd_lessons.experiments.intervals import PairedInterval, paired_interval

NUM_CLASSES = 10


@dataclass(frozen=True)
class Settings:
    """Every constant of lesson 3's experiments. ``seed`` moves everything random: the partitions,
    the initial model, the clients chosen each round, the batches and the DP noise."""

    seed: int = 0
    num_clients: int = 20
    # the three federations: near-i.i.d., mildly and strongly skewed (the Dirichlet concentration, alpha in the prose)
    iid_concentration: float = 100
    mild_concentration: float = 1
    skewed_concentration: float = 0.1
    min_samples: int = 25  # per client before its local train/test split
    # At concentration 0.1 only about one Dirichlet draw in 500 gives all 20 clients 25 examples, so the
    # partition is redrawn up to this many times (the first 100 draws are make_federation's own).
    partition_retries: int = 20_000
    test_share: float = 0.3  # of each client's data kept as its local test set ...
    min_test: int = 10  # ... and never fewer than this many images
    hidden_units: int = 32
    # FedAvg, after Yu et al.'s CIFAR-10 setting (their official code; the rest as FedAvgSettings' defaults):
    # half the clients a round for 30 rounds
    rounds: int = 30
    client_fraction: float = 0.5
    local_epochs: int = FedAvgSettings.local_epochs
    lr: float = FedAvgSettings.lr
    batch_size: int = FedAvgSettings.batch_size
    optimizer: str = FedAvgSettings.optimizer
    momentum: float = FedAvgSettings.momentum
    # the traced round: ordinary rounds first, so the round starts from a model worth averaging
    warmup_rounds: int = 10
    trace_clients: tuple[int, ...] = (0, 1, 2)
    # DP-style FedAvg: S is this quantile of the plain skewed run's update norms; the paper's sigmas
    clip_quantile: float = 0.5
    dp_sigmas: tuple[float, ...] = (0.01, 0.1)
    # single rounds swing by several points under skew: accuracies are averaged over the last rounds
    last_rounds: int = 10
    accuracy_level: float = 0.8  # "first round at 80 %"
    hurt_points: float = 0.10  # a client "loses more than ten points"
    # the headline costs over seeds: seed, seed + 1, ..., seed + seeds - 1
    seeds: int = 5
    # exercise 2: the skew at more concentrations, over several partitions (numpy only)
    skew_concentrations: tuple[float, ...] = (100, 10, 1, 0.3, 0.1, 0.03)
    skew_partitions: int = 10

    def __post_init__(self):
        check_fields(self, seed=Integer(0), num_clients=Integer(2), min_samples=Integer(2), partition_retries=Integer(1),
                     test_share=Real(0, 1, closed="neither"), min_test=Integer(1), hidden_units=Integer(1),
                     warmup_rounds=Integer(1), clip_quantile=FRACTION, last_rounds=Integer(1), seeds=Integer(2),
                     accuracy_level=FRACTION, hurt_points=FRACTION, skew_partitions=Integer(1))
        check_fields(self, trace_clients=Each(Integer(0, self.num_clients - 1), min_length=2))  # once num_clients is known good
        # the concentrations and noise levels are checked without conversion to float: the lesson prints
        # them as given (alpha = 100, not 100.0)
        for name in ("iid_concentration", "mild_concentration", "skewed_concentration"):
            POSITIVE.check(getattr(self, name), name)
        for name in ("dp_sigmas", "skew_concentrations"):
            Each(POSITIVE, min_length=2).check(getattr(self, name), name)
        if not self.iid_concentration > self.mild_concentration > self.skewed_concentration:
            raise ValueError("the concentrations must fall from iid_concentration to mild_concentration to "
                             f"skewed_concentration, got {self.concentrations!r}")
        if self.min_test >= self.min_samples:
            raise ValueError(f"min_test must be below min_samples ({self.min_samples}) to leave training "
                             f"examples, got {self.min_test!r}")
        _ = self.fedavg  # FedAvgSettings checks rounds, client_fraction, local_epochs, lr, batch_size, optimizer, momentum
        if len(set(self.trace_clients)) != len(self.trace_clients):
            raise ValueError(f"trace_clients must name at least two different clients, got {self.trace_clients!r}")
        if len(self.dp_sigmas) != 2 or not self.dp_sigmas[0] < self.dp_sigmas[1]:
            raise ValueError(f"dp_sigmas must be two increasing noise levels > 0 (small, large), got {self.dp_sigmas!r}")
        if self.last_rounds > self.rounds:
            raise ValueError(f"last_rounds must be at most rounds ({self.rounds}), got {self.last_rounds!r}")

    @property
    def concentrations(self) -> tuple[float, float, float]:
        """The three federations' Dirichlet concentrations, from near-i.i.d. to skewed."""
        return (self.iid_concentration, self.mild_concentration, self.skewed_concentration)

    @property
    def fedavg(self) -> FedAvgSettings:
        """Plain FedAvg at the lesson's settings (each run passes ``seed`` beside it)."""
        return FedAvgSettings(rounds=self.rounds, client_fraction=self.client_fraction, local_epochs=self.local_epochs,
                              lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer, momentum=self.momentum)

    def model(self) -> torch.nn.Module:
        """The lesson's MLP (64 inputs, one hidden layer, 10 outputs), freshly initialised."""
        return make_mlp(hidden=(self.hidden_units,))


# the declared forms of the arguments the functions share
DIGITS = Instance(ImageSplit)
SETTINGS = Instance(Settings)
FEDERATION = Instance(Federation)
FEDERATIONS = Instance(dict)  # concentration -> Federation, as make_federations returns them
HISTORY = Instance(FedAvgHistory)
RUNS = Instance(dict)  # concentration (or run name) -> FedAvgRun
DESCRIPTION = Instance(str)


def _check_holds(name: str, mapping: dict, keys, what: str) -> None:
    """``mapping`` (argument ``name``) holds every one of ``keys`` (``what`` says what they are)."""
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ValueError(f"{name} must hold {what} {list(keys)}, got {list(mapping)} (missing {missing})")


@checked_arguments(digits=DIGITS, settings=SETTINGS)
def make_federations(digits: ImageSplit, settings: Settings) -> dict[float, Federation]:
    """The training digits dealt out to ``num_clients`` clients at each of the three concentrations:
    :func:`fedkd_lessons.data.partition.make_federation`, with ``partition_retries`` draws allowed."""
    return {concentration: make_federation(digits.train_images, digits.train_labels, settings.num_clients, concentration,
                                           seed=settings.seed, min_samples=settings.min_samples,
                                           test_share=settings.test_share, min_test=settings.min_test,
                                           max_retries=settings.partition_retries)
            for concentration in settings.concentrations}


@checked_arguments(federation=FEDERATION)
def client_labels(federation: Federation) -> list[np.ndarray]:
    """Each client's labels, local train and local test together: all the data it holds."""
    return [np.concatenate([y_train.numpy(), y_test.numpy()])
            for (_, y_train), (_, y_test) in zip(federation.train, federation.test)]


@checked_arguments(federation=FEDERATION)
def partition_statistics(federation: Federation) -> dict:
    """What a partition looks like, from the numpy seeds alone (no training): the class skew, the
    median share of a client's largest class, and the local training sizes."""
    labels = client_labels(federation)
    sizes = np.array([len(y) for _, y in federation.train])
    top_share = np.median([np.bincount(y, minlength=NUM_CLASSES).max() / len(y) for y in labels])
    return dict(skew=class_skew(labels, NUM_CLASSES), top_share=float(top_share), train_sizes=sizes)


@checked_arguments(federation=FEDERATION)
def client_main_classes(federation: Federation) -> np.ndarray:
    """``(K,)`` the class each client holds most of in its local training set."""
    return np.array([int(np.bincount(y.numpy(), minlength=NUM_CLASSES).argmax()) for _, y in federation.train])


@dataclass
class RoundTrace:
    """One FedAvg round done by hand for ``clients``: the start, what each returned, the average;
    and every model's accuracy on the traced clients' local test sets and on the central test set.
    Rows of the accuracy arrays: the start model, each client's model after local training, the
    weighted average of the clients' models."""

    clients: tuple[int, ...]
    start_state: dict[str, torch.Tensor]
    client_states: list[dict[str, torch.Tensor]]
    sizes: list[int]
    averaged_state: dict[str, torch.Tensor]
    row_names: list[str]
    local_accuracy: np.ndarray  # (rows, len(clients))
    central_accuracy: np.ndarray  # (rows,)


@checked_arguments(federation=FEDERATION, digits=DIGITS, settings=SETTINGS)
def trace_round(federation: Federation, digits: ImageSplit, settings: Settings) -> RoundTrace:
    """``warmup_rounds`` ordinary FedAvg rounds, then one more (:func:`fedkd_lessons.fedavg.fedavg_round`)
    with only the ``trace_clients``, each training ``local_epochs`` on its own data from the same
    global weights; the server averages them, weighted by their sizes."""
    if max(settings.trace_clients) >= len(federation.train):
        raise ValueError(f"settings.trace_clients must name clients of the federation (below {len(federation.train)}), "
                         f"got {settings.trace_clients!r}")
    start_model = run_fedavg(settings.model, federation.train, replace(settings.fedavg, rounds=settings.warmup_rounds),
                             seed=settings.seed, progress=False).model
    traced = StackedData.from_sets([federation.train[k] for k in settings.trace_clients])
    round_ = fedavg_round(start_model, traced, replace(settings.fedavg, client_fraction=1.0),
                          torch.Generator().manual_seed(settings.seed))
    models = [settings.model() for _ in settings.trace_clients]
    round_.client_models.write_to(models)
    averaged = settings.model()
    averaged.load_state_dict(round_.state)
    rows = [start_model] + models + [averaged]
    row_names = (["global model before the round"] + [f"client {k} after local training" for k in settings.trace_clients]
                 + [f"average of the {len(models)}"])
    local_accuracy = np.array([[accuracy(model, *federation.test[k]) for k in settings.trace_clients] for model in rows])
    central_accuracy = np.array([accuracy(model, digits.test_images, digits.test_labels) for model in rows])
    states = [{name: value.detach().clone() for name, value in model.state_dict().items()} for model in models]
    return RoundTrace(tuple(settings.trace_clients), {n: v.detach().clone() for n, v in start_model.state_dict().items()},
                      states, [int(n) for n in traced.sizes], round_.state, row_names, local_accuracy, central_accuracy)


@dataclass
class FedAvgRun:
    """What one FedAvg run measured: its history (accuracies per round, central and per client,
    update norms) and its final global model's accuracy per class on the central test set."""

    history: FedAvgHistory
    class_accuracy: np.ndarray  # (C,)


@checked_arguments(federation=FEDERATION, digits=DIGITS, settings=SETTINGS, description=DESCRIPTION,
                   fedavg=Optional(Instance(FedAvgSettings)))
def run_federation(federation: Federation, digits: ImageSplit, settings: Settings, description: str,
                   fedavg: FedAvgSettings | None = None, progress: bool | None = None) -> FedAvgRun:
    """FedAvg on ``federation`` with ``fedavg`` (default the lesson's plain ``settings.fedavg``; the
    aggregator runs pass it with another aggregator), seeded by ``settings.seed``."""
    central_test = (digits.test_images, digits.test_labels)
    result = run_fedavg(settings.model, federation.train, fedavg or settings.fedavg, seed=settings.seed,
                        client_test=federation.test, test_set=central_test, progress=progress, description=description)
    return FedAvgRun(result.history, class_accuracies(result.model, *central_test, num_classes=NUM_CLASSES))


@checked_arguments(federations=FEDERATIONS, digits=DIGITS, settings=SETTINGS)
def run_partition_runs(federations: dict[float, Federation], digits: ImageSplit, settings: Settings,
                       progress: bool | None = None) -> dict[float, FedAvgRun]:
    """Plain FedAvg on each federation: the same seed, so the same initial model and the same
    client choices; the partition is the only difference."""
    _check_holds("federations", federations, settings.concentrations, "the federations at settings' concentrations")
    return {concentration: run_federation(federation, digits, settings, f"FedAvg, alpha = {concentration:g}",
                                          progress=progress)
            for concentration, federation in federations.items()}


@checked_arguments(history=HISTORY, settings=SETTINGS)
def clip_norm_from(history: FedAvgHistory, settings: Settings) -> float:
    """The DP clipping norm S: the ``clip_quantile`` of the run's update norms, to two decimals
    (the paper's S = 15 is for ResNet-18; an update's norm depends on the model)."""
    if not history.update_norms:
        raise ValueError("history must hold the update norms of at least one round, got none")
    return float(np.round(np.quantile(np.concatenate(history.update_norms), settings.clip_quantile), 2))


@checked_arguments(sigma=POSITIVE)
def dp_name(sigma: float) -> str:
    return f"dp (sigma = {sigma:g})"


@checked_arguments(settings=SETTINGS)
def iid_median_name(settings: Settings) -> str:
    return f"median, alpha = {settings.iid_concentration:g}"


@checked_arguments(settings=SETTINGS)
def median(settings: Settings) -> FedAvgSettings:
    """The lesson's FedAvg with the coordinate-wise median as the server's rule."""
    return replace(settings.fedavg, aggregator="median")


@checked_arguments(settings=SETTINGS, clip_norm=POSITIVE, sigma=POSITIVE)
def dp(settings: Settings, clip_norm: float, sigma: float) -> FedAvgSettings:
    """The lesson's FedAvg with DP-style aggregation: clip at ``clip_norm``, noise ``sigma``."""
    return replace(settings.fedavg, aggregator="dp", clip_norm=clip_norm, noise_std=sigma)


@checked_arguments(skewed=FEDERATION, digits=DIGITS, settings=SETTINGS, clip_norm=POSITIVE)
def skewed_aggregator_runs(skewed: Federation, digits: ImageSplit, settings: Settings, clip_norm: float,
                           progress: bool | None = None) -> dict[str, FedAvgRun]:
    """The skewed federation under the median and under DP-style FedAvg at each of ``dp_sigmas``."""
    runs = {"median": run_federation(skewed, digits, settings, "median", median(settings), progress)}
    for sigma in settings.dp_sigmas:
        runs[dp_name(sigma)] = run_federation(skewed, digits, settings, dp_name(sigma), dp(settings, clip_norm, sigma),
                                              progress)
    return runs


@checked_arguments(federations=FEDERATIONS, digits=DIGITS, settings=SETTINGS, clip_norm=POSITIVE)
def run_aggregator_runs(federations: dict[float, Federation], digits: ImageSplit, settings: Settings,
                        clip_norm: float, progress: bool | None = None) -> dict[str, FedAvgRun]:
    """:func:`skewed_aggregator_runs`, and the near-i.i.d. federation under the median; the same seed
    as the plain runs they are compared with."""
    _check_holds("federations", federations, (settings.skewed_concentration, settings.iid_concentration),
                 "the federations at settings' skewed and i.i.d. concentrations")
    runs = skewed_aggregator_runs(federations[settings.skewed_concentration], digits, settings, clip_norm, progress)
    runs[iid_median_name(settings)] = run_federation(federations[settings.iid_concentration], digits, settings,
                                                     iid_median_name(settings), median(settings), progress)
    return runs


@dataclass
class SeedHeadlines:
    """The lesson's headline costs on ``settings.seeds`` seeds (each seed a new partition, initial
    model, client choice, batches and noise): per run name, the central test accuracy averaged over
    the last rounds, one per seed. ``intervals`` holds the paired differences behind the prose."""

    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]

    def intervals(self, settings: Settings) -> dict[str, PairedInterval]:
        small, large = (dp_name(sigma) for sigma in settings.dp_sigmas)
        plain = self.accuracy["FedAvg"]
        return {
            f"FedAvg: alpha = {settings.iid_concentration:g} - alpha = {settings.skewed_concentration:g}":
                paired_interval(self.accuracy["FedAvg, i.i.d."], plain),
            "skewed: FedAvg - median": paired_interval(plain, self.accuracy["median"]),
            f"skewed: FedAvg - {small}": paired_interval(plain, self.accuracy[small]),
            f"skewed: FedAvg - {large}": paired_interval(plain, self.accuracy[large]),
        }


@checked_arguments(digits=DIGITS, settings=SETTINGS)
def headline_runs(digits: ImageSplit, settings: Settings, progress: bool | None = None) -> dict[str, float]:
    """At ``settings.seed``: FedAvg on the near-i.i.d. and the skewed federation, and the skewed one
    under the median and DP at both sigmas (S from that seed's own plain run); each run's central
    accuracy over the last rounds."""
    federations = make_federations(digits, settings)
    skewed = federations[settings.skewed_concentration]
    plain = run_federation(skewed, digits, settings, "FedAvg", progress=progress)
    clip = clip_norm_from(plain.history, settings)
    runs = {"FedAvg": plain,
            "FedAvg, i.i.d.": run_federation(federations[settings.iid_concentration], digits, settings, "i.i.d.",
                                             progress=progress),
            **skewed_aggregator_runs(skewed, digits, settings, clip, progress)}
    return {name: run.history.global_accuracy_over_last(settings.last_rounds) for name, run in runs.items()}


@checked_arguments(digits=DIGITS, settings=SETTINGS, runs=RUNS, aggregator_runs=RUNS)
def headlines_over_seeds(digits: ImageSplit, settings: Settings, runs: dict[float, FedAvgRun],
                         aggregator_runs: dict[str, FedAvgRun], progress: bool | None = None) -> SeedHeadlines:
    """:func:`headline_runs` on the seeds after ``settings.seed``; ``settings.seed`` itself is read
    from ``runs`` and ``aggregator_runs``, the runs the lesson already made (nothing is trained twice)."""
    _check_holds("runs", runs, (settings.skewed_concentration, settings.iid_concentration),
                 "the plain runs at settings' skewed and i.i.d. concentrations")
    _check_holds("aggregator_runs", aggregator_runs, ["median", *(dp_name(sigma) for sigma in settings.dp_sigmas)],
                 "the runs")
    last = settings.last_rounds
    first = {"FedAvg": runs[settings.skewed_concentration].history.global_accuracy_over_last(last),
             "FedAvg, i.i.d.": runs[settings.iid_concentration].history.global_accuracy_over_last(last),
             **{name: aggregator_runs[name].history.global_accuracy_over_last(last)
                for name in ["median", *(dp_name(sigma) for sigma in settings.dp_sigmas)]}}
    seeds = tuple(settings.seed + i for i in range(settings.seeds))
    rows = [first] + [headline_runs(digits, replace(settings, seed=seed), progress=False)
                      for seed in progress_bar(seeds[1:], progress, "other seeds")]
    return SeedHeadlines(seeds, {name: np.array([row[name] for row in rows]) for name in first})


@dataclass
class FederatedResult:
    """Everything lesson 3's claims are measured on."""

    settings: Settings
    partitions: dict[float, dict]  # concentration -> partition_statistics
    main_classes: np.ndarray  # (K,) each skewed client's main class
    trace: RoundTrace
    runs: dict[float, FedAvgRun]  # concentration -> plain FedAvg
    clip_norm: float
    aggregator_runs: dict[str, FedAvgRun]
    over_seeds: SeedHeadlines


@checked_arguments(settings=SETTINGS, federations=FEDERATIONS, trace=Instance(RoundTrace), runs=RUNS,
                   clip_norm=POSITIVE, aggregator_runs=RUNS, over_seeds=Instance(SeedHeadlines))
def result_of(settings: Settings, federations: dict[float, Federation], trace: RoundTrace,
              runs: dict[float, FedAvgRun], clip_norm: float, aggregator_runs: dict[str, FedAvgRun],
              over_seeds: SeedHeadlines) -> FederatedResult:
    """Gather what the notebook (or :func:`run_claims_experiment`) computed."""
    _check_holds("federations", federations, (settings.skewed_concentration,), "the federation at settings' skewed "
                 "concentration")
    return FederatedResult(settings, {c: partition_statistics(f) for c, f in federations.items()},
                           client_main_classes(federations[settings.skewed_concentration]), trace, runs, clip_norm,
                           aggregator_runs, over_seeds)


@checked_arguments(settings=SETTINGS)
def run_claims_experiment(settings: Settings) -> FederatedResult:
    """Every experiment lesson 3's prose draws conclusions from, at ``settings``."""
    digits = load_digits_split()
    federations = make_federations(digits, settings)
    trace = trace_round(federations[settings.mild_concentration], digits, settings)
    runs = run_partition_runs(federations, digits, settings, progress=False)
    clip_norm = clip_norm_from(runs[settings.skewed_concentration].history, settings)
    aggregator_runs = run_aggregator_runs(federations, digits, settings, clip_norm, progress=False)
    over_seeds = headlines_over_seeds(digits, settings, runs, aggregator_runs, progress=False)
    return result_of(settings, federations, trace, runs, clip_norm, aggregator_runs, over_seeds)


@checked_arguments(history=HISTORY, level=FRACTION)
def first_round_at(history: FedAvgHistory, level: float) -> int:
    """The first round whose global model reaches ``level`` on the central test set (the number of
    rounds plus one if none does: a run that never gets there is later than any that does)."""
    return next((r for r, acc in enumerate(history.global_accuracy) if acc >= level), len(history.global_accuracy))


@checked_arguments(history=HISTORY)
def largest_drop(history: FedAvgHistory) -> float:
    """The largest fall of the central test accuracy from one round to the next."""
    return float(-np.diff(history.global_accuracy).min())


@checked_arguments(trace=Instance(RoundTrace))
def drift_towards_home(trace: RoundTrace) -> float:
    """How much more each traced client's local training changed its accuracy on its own local
    test set than on the other traced clients' sets, averaged over the traced clients."""
    before, after = trace.local_accuracy[0], trace.local_accuracy[1:-1]
    gains = after - before  # row i: client i's model; column j: client j's test set
    count = len(before)
    return float(np.mean([gains[i, i] - np.delete(gains[i], i).mean() for i in range(count)]))


@checked_arguments(result=Instance(FederatedResult), name=Instance(str))
def client_changes(result: FederatedResult, name: str) -> np.ndarray:
    """``(K,)`` each skewed client's accuracy on its own test set under aggregator ``name`` minus
    under plain FedAvg, both averaged over the last rounds."""
    if name not in result.aggregator_runs:
        raise ValueError(f"name must be one of result's aggregator runs {list(result.aggregator_runs)}, got {name!r}")
    last = result.settings.last_rounds
    plain = result.runs[result.settings.skewed_concentration].history.client_accuracy_over_last(last)
    return result.aggregator_runs[name].history.client_accuracy_over_last(last) - plain


@checked_arguments(result=Instance(FederatedResult))
def claims(result: FederatedResult) -> list[Claim]:
    """What lesson 3's prose says about its partitions, the traced round, FedAvg under skew, and
    what median and DP-style aggregation cost. Accuracies are compared in points (1 point = 1 %)."""
    s = result.settings
    iid, mild, skewed = s.concentrations
    parts, runs, aggregated, trace = result.partitions, result.runs, result.aggregator_runs, result.trace
    history = {c: run.history for c, run in runs.items()}
    last = {c: h.global_accuracy_over_last(s.last_rounds) for c, h in history.items()}
    first = {c: float(np.mean(h.global_accuracy[1:s.last_rounds + 1])) for c, h in history.items()}
    final_clients = {c: h.final_client_accuracy for c, h in history.items()}
    norms = np.concatenate(history[skewed].update_norms)
    median_norm = float(np.median(norms))
    noise_norms = [sigma * np.sqrt(sum(v.numel() for v in trace.start_state.values())) for sigma in s.dp_sigmas]
    small, large = (dp_name(sigma) for sigma in s.dp_sigmas)
    aggregated_last = {name: run.history.global_accuracy_over_last(s.last_rounds) for name, run in aggregated.items()}
    median_change, large_change = client_changes(result, "median"), client_changes(result, large)
    median_classes = aggregated["median"].class_accuracy
    central = trace.central_accuracy
    sizes = parts[skewed]["train_sizes"]
    points = 100.0
    headline = result.over_seeds.intervals(s)
    skew_cost, median_cost, small_cost, large_cost = headline.values()
    return [
        # --- the headlines over five seeds (paired differences of the central accuracy, last rounds)
        # seeds 0-9 (each with its four next seeds): 5.5-7.1 points
        at_least(f"over {s.seeds} seeds, skewed clients cost FedAvg accuracy on average (at least 2 points below "
                 f"alpha = {iid:g})", points * skew_cost.mean, 2.0, unit="points"),
        # the interval's lower end; seeds 0-9: 15.8-26.3 points
        at_least(f"over {s.seeds} seeds, the median costs skewed clients accuracy (the 95 % interval of its cost "
                 "lies above 5 points)", points * median_cost.low, 5.0, unit="points"),
        # the interval's lower end; seeds 0-9: 8.7-15.9 points
        at_least(f"over {s.seeds} seeds, sigma = {s.dp_sigmas[1]:g} costs accuracy (the 95 % interval of its cost "
                 "lies above 3 points)", points * large_cost.low, 3.0, unit="points"),
        # seeds 0-9: 0.4-3.5 points
        at_most(f"over {s.seeds} seeds, sigma = {s.dp_sigmas[0]:g} costs little (its mean cost is under 5 points)",
                points * abs(small_cost.mean), 5.0, unit="points"),
        # --- partitions: numpy seeds only, no training
        # seeds 0-9: the smaller of the two rises is 0.259-0.328
        at_least(f"smaller alpha, more skewed clients: the class skew rises from alpha = {iid:g} to {mild:g} to {skewed:g}",
                 min(parts[skewed]["skew"] - parts[mild]["skew"], parts[mild]["skew"] - parts[iid]["skew"]), 0.15),
        # seeds 0-9: 0.039-0.047
        at_most(f"at alpha = {iid:g} every client's class mix is close to the pooled one (class skew under 0.1)",
                parts[iid]["skew"], 0.1),
        # seeds 0-9: 0.113-0.120
        at_most(f"at alpha = {iid:g} a typical client's largest class is under 20 % of its data",
                parts[iid]["top_share"], 0.2),
        # seeds 0-9: 0.483-0.747
        at_least(f"at alpha = {skewed:g} a typical client's largest class is about half of its data or more (at least 40 %)",
                 parts[skewed]["top_share"], 0.4),
        # seeds 0-9: 5.4x-9.4x
        at_least(f"at alpha = {skewed:g} client sizes vary several-fold (largest local training set at least 3x the smallest)",
                 sizes.max() / sizes.min(), 3.0, unit="x"),
        # --- the round traced by hand (the mild concentration)
        # seeds 0-9: 6.7-36.7 points
        at_least("in the traced round local training helps a client's own test set more than the other traced clients' "
                 "(drift towards home)", points * drift_towards_home(trace), 2.0, unit="points"),
        # seeds 0-9: 8.3-20.8 points
        at_least("on the central test set the drifted models are on average worse than the global model they started from",
                 points * (central[0] - central[1:-1].mean()), 3.0, unit="points"),
        # seeds 0-9: 7.0-18.9 points
        at_least("on the central test set the weighted average of the drifted models beats their mean",
                 points * (central[-1] - central[1:-1].mean()), 3.0, unit="points"),
        # --- FedAvg: i.i.d. against skewed clients
        # seeds 0-9: 8.9-19.2 points
        at_least(f"skewed clients make FedAvg shakier: the largest one-round drop is larger at alpha = {skewed:g} "
                 f"than at alpha = {iid:g}", points * (largest_drop(history[skewed]) - largest_drop(history[iid])),
                 5.0, unit="points"),
        # seeds 0-9: 4-15 rounds
        at_least(f"skewed clients make FedAvg slower: the global model reaches {s.accuracy_level:.0%} later at "
                 f"alpha = {skewed:g} than at alpha = {iid:g}",
                 first_round_at(history[skewed], s.accuracy_level) - first_round_at(history[iid], s.accuracy_level),
                 2, unit="rounds"),
        # seeds 0-9: the lag shrinks by 16.7-31.1 points
        at_least(f"the skewed run's lag behind the i.i.d. run shrinks: smaller over the last {s.last_rounds} rounds "
                 f"than over the first {s.last_rounds}",
                 points * ((first[iid] - first[skewed]) - (last[iid] - last[skewed])), 8.0, unit="points"),
        # seeds 0-9: 2.4-14.6 points
        at_least(f"skewed FedAvg still ends below the i.i.d. run (mean of the last {s.last_rounds} rounds)",
                 points * (last[iid] - last[skewed]), 1.0, unit="points"),
        # seeds 0-9: 0.0-0.9 points
        at_most(f"the mild skew of alpha = {mild:g} costs almost nothing: within 3 points of the i.i.d. run",
                points * abs(last[mild] - last[iid]), 3.0, unit="points"),
        # --- one global model, many clients (the final global model on each client's own test set)
        # seeds 0-9: 0.77-0.87
        at_least(f"at alpha = {iid:g} no client is served badly: the worst client's own test accuracy is at least 70 %",
                 final_clients[iid].min(), 0.7),
        # seeds 0-9: 1.28x-3.42x
        at_least(f"under skew the clients' accuracies spread wider: their standard deviation is larger at "
                 f"alpha = {skewed:g} than at alpha = {iid:g}",
                 np.std(final_clients[skewed]) / np.std(final_clients[iid]), 1.1, unit="x"),
        # --- the DP scale
        # seeds 0-9: 4.2-6.1
        at_most("the paper's S = 15 would never clip our updates (the largest update norm is below 15)", norms.max(), 15.0),
        # seeds 0-9: 0.000-0.007 (the clip is the median, rounded to two decimals)
        at_most("clipping at S clips about half of the plain run's updates (within 5 % of a half)",
                abs(float(np.mean(norms > result.clip_norm)) - 0.5), 0.05),
        # seeds 0-9: 0.33x-0.43x
        at_most(f"sigma = {s.dp_sigmas[0]:g} adds a noise vector shorter than a median update",
                noise_norms[0] / median_norm, 0.7, unit="x"),
        # seeds 0-9: 3.3x-4.3x
        at_least(f"sigma = {s.dp_sigmas[1]:g} adds a noise vector several times (at least twice) longer than a median update",
                 noise_norms[1] / median_norm, 2.0, unit="x"),
        # --- median aggregation
        # seeds 0-9: 14.7-35.3 points
        at_least(f"the median costs accuracy on skewed clients: at least 8 points below FedAvg at alpha = {skewed:g}",
                 points * (last[skewed] - aggregated_last["median"]), 8.0, unit="points"),
        # seeds 0-9: 0.0-0.6 points
        at_most(f"on near-i.i.d. clients the median costs little: within 2 points of FedAvg at alpha = {iid:g}",
                points * abs(last[iid] - aggregated_last[iid_median_name(s)]), 2.0, unit="points"),
        # seeds 0-9: 0.00-0.44
        at_most("the median forgets whole classes: its global model gets some digit class right at most half the time",
                median_classes.min(), 0.5),
        # seeds 0-9: 0.38-0.92
        at_least("the clients the median hurts most are those whose main class its model knows worst (correlation "
                 "of a client's change with the median model's accuracy on its main class)",
                 float(np.corrcoef(median_change, median_classes[result.main_classes])[0, 1]), 0.2),
        # seeds 0-9: 20.5-50.8 points
        at_least("under the median the most hurt client loses at least 15 points more than the average client",
                 points * (median_change.mean() - median_change.min()), 15.0, unit="points"),
        # --- DP-style aggregation
        # seeds 0-9: 0.9-6.3 points, in either direction
        at_most(f"sigma = {s.dp_sigmas[0]:g} costs little: within 10 points of plain FedAvg, above or below",
                points * abs(last[skewed] - aggregated_last[small]), 10.0, unit="points"),
        # seeds 0-9: 12.8-21.1 points
        at_least(f"sigma = {s.dp_sigmas[1]:g} costs much more than sigma = {s.dp_sigmas[0]:g}: at least 7 points lower",
                 points * (aggregated_last[small] - aggregated_last[large]), 7.0, unit="points"),
        # seeds 0-9: 6.5-24.5 points
        at_least(f"sigma = {s.dp_sigmas[1]:g} ends clearly below plain FedAvg (at least 3 points)",
                 points * (last[skewed] - aggregated_last[large]), 3.0, unit="points"),
        # seeds 0-9: 6-17 of 20 clients, 0.30-0.85
        at_least(f"under sigma = {s.dp_sigmas[1]:g} a fifth of the clients or more lose over "
                 f"{points * s.hurt_points:.0f} points", float(np.mean(large_change < -s.hurt_points)), 0.2),
        # seeds 0-9: 10.6-54.0 points
        at_least(f"under sigma = {s.dp_sigmas[1]:g} the most hurt client loses at least 5 points more than the average client",
                 points * (large_change.mean() - large_change.min()), 5.0, unit="points"),
    ]
