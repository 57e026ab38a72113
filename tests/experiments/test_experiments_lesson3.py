"""Lesson 3's experiment helpers against references computed by hand or by the package's own
federation builder, on small inputs."""

import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fedkd_lessons.data.partition import Federation, make_federation  # noqa: E402
from fedkd_lessons.experiments.lesson3_federated import (RoundTrace, Settings, clip_norm_from,  # noqa: E402
                                                         drift_towards_home, first_round_at, largest_drop,
                                                         make_federations, partition_statistics, trace_round)
from fedkd_lessons.fedavg import FedAvgHistory  # noqa: E402
from fedkd_lessons.figures.lesson3_federated import plot_federation_partitions  # noqa: E402


def test_first_round_at_and_largest_drop_by_hand():
    history = FedAvgHistory(global_accuracy=[0.1, 0.5, 0.85, 0.7, 0.9])
    assert first_round_at(history, 0.8) == 2
    assert first_round_at(history, 0.5) == 1
    assert first_round_at(history, 0.95) == 5  # never reached: later than any round
    assert largest_drop(history) == pytest.approx(0.15)
    assert largest_drop(FedAvgHistory(global_accuracy=[0.1, 0.2, 0.3])) == pytest.approx(-0.1)  # no drop at all


def test_clip_norm_is_the_quantile_of_all_update_norms_to_two_decimals():
    history = FedAvgHistory(update_norms=[np.array([1.0, 2.0, 3.0]), np.array([4.0])])
    assert clip_norm_from(history, Settings()) == 2.5  # median of 1, 2, 3, 4
    # the lower quartile of 1, 2, 3, 4 by linear interpolation: 1 + 0.75 * (2 - 1)
    assert clip_norm_from(history, Settings(clip_quantile=0.25)) == 1.75
    assert clip_norm_from(FedAvgHistory(update_norms=[np.array([1.234567])]), Settings()) == 1.23


def test_drift_towards_home_by_hand():
    # rows: start, client 0's model, client 1's model, average; columns: client 0's and client 1's test sets
    local = np.array([[0.5, 0.5],
                      [0.9, 0.4],   # client 0 gains 0.4 at home, loses 0.1 away: drift 0.5
                      [0.3, 0.6],   # client 1 gains 0.1 at home, loses 0.2 away: drift 0.3
                      [0.6, 0.6]])
    trace = RoundTrace((0, 1), {}, [], [], {}, [], local, np.zeros(4))
    assert drift_towards_home(trace) == pytest.approx(0.4)


def _labels_federation(train_labels, test_labels):
    def sets(labels):
        return [(torch.zeros(len(y), 1, 8, 8), torch.tensor(y)) for y in labels]
    return Federation(sets(train_labels), sets(test_labels), [], [])


def test_partition_statistics_by_hand():
    # client 0 holds 3 zeros and 1 one; client 1 holds 1 zero and 3 twos (train and test together)
    federation = _labels_federation([[0, 0, 1], [2, 2]], [[0], [0, 2]])
    stats = partition_statistics(federation)
    pooled = np.array([4, 1, 3, 0, 0, 0, 0, 0, 0, 0]) / 8
    mixes = [np.array([3, 1, 0, 0, 0, 0, 0, 0, 0, 0]) / 4, np.array([1, 0, 3, 0, 0, 0, 0, 0, 0, 0]) / 4]
    assert stats["skew"] == pytest.approx(np.mean([0.5 * np.abs(m - pooled).sum() for m in mixes]))
    assert stats["top_share"] == pytest.approx(0.75)
    assert list(stats["train_sizes"]) == [3, 2]


def test_make_federations_is_make_federation_at_the_notebook_seed(digits):
    settings = Settings()
    federations = make_federations(digits, settings)
    for concentration in settings.concentrations:
        reference = make_federation(digits.train_images, digits.train_labels, settings.num_clients, concentration,
                                    seed=settings.seed, min_samples=settings.min_samples,
                                    test_share=settings.test_share, min_test=settings.min_test)
        for mine, theirs in zip(federations[concentration].train_indices + federations[concentration].test_indices,
                                reference.train_indices + reference.test_indices):
            np.testing.assert_array_equal(mine, theirs)


def test_make_federations_redraws_where_make_federation_gives_up(digits):
    settings = dataclasses.replace(Settings(), seed=1)
    with pytest.raises(ValueError, match="after 100 draws"):
        make_federation(digits.train_images, digits.train_labels, settings.num_clients, settings.skewed_concentration,
                        seed=settings.seed, min_samples=settings.min_samples)
    federation = make_federations(digits, settings)[settings.skewed_concentration]
    held = [np.concatenate([train, test]) for train, test in zip(federation.train_indices, federation.test_indices)]
    assert min(len(h) for h in held) >= settings.min_samples
    np.testing.assert_array_equal(np.sort(np.concatenate(held)), np.arange(len(digits.train_labels)))


def test_trace_round_averages_by_sample_count_and_scores_every_model(digits):
    settings = Settings(warmup_rounds=1, local_epochs=1, trace_clients=(3, 5))
    federation = make_federations(digits, settings)[settings.mild_concentration]
    trace = trace_round(federation, digits, settings)
    assert trace.sizes == [len(federation.train[k][1]) for k in (3, 5)]
    share = trace.sizes[0] / sum(trace.sizes)
    for name, value in trace.averaged_state.items():
        by_hand = share * trace.client_states[0][name] + (1 - share) * trace.client_states[1][name]
        torch.testing.assert_close(value, by_hand, rtol=1e-5, atol=1e-6)
    # row 0 is the start model: score it again with a plain forward pass
    model = settings.model()
    model.load_state_dict(trace.start_state)
    with torch.no_grad():
        predicted = model(digits.test_images).argmax(dim=1)
    assert trace.central_accuracy[0] == pytest.approx((predicted == digits.test_labels).float().mean().item())
    assert trace.local_accuracy.shape == (4, 2) and len(trace.row_names) == 4
    assert np.all((0 <= trace.local_accuracy) & (trace.local_accuracy <= 1))


def test_plot_federation_partitions_counts_every_example_of_every_client():
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    train = [np.array([0, 2]), np.array([4, 5])]
    test = [np.array([3, 6]), np.array([1, 7])]
    federations = {1.0: Federation([], [], train, test), 0.5: Federation([], [], train[::-1], test[::-1])}
    fig = plot_federation_partitions(federations, labels)
    first = fig.axes[0]
    heights = np.zeros(2)
    for bar in first.patches:
        heights[int(round(bar.get_x() + bar.get_width() / 2))] += bar.get_height()
    np.testing.assert_array_equal(heights, [4, 4])
    # client 0 holds classes 0, 1, 1, 0 and client 1 holds 2, 2, 0, 1 against pooled shares (3, 3, 2) / 8
    pooled = np.array([3, 3, 2]) / 8
    skew = np.mean([0.5 * np.abs(np.array([2, 2, 0]) / 4 - pooled).sum(), 0.5 * np.abs(np.array([1, 1, 2]) / 4 - pooled).sum()])
    assert first.get_title() == f"α = 1: class skew {skew:.2f}"
    assert fig.axes[1].get_title().startswith("α = 0.5")
    plt.close(fig)


# --- the client-drift toy: closed forms by hand ---------------------------------------------------

from fedkd_lessons.experiments.lesson3_client_drift import (DriftSettings, QuadraticClient,  # noqa: E402
                                                            fedavg_fixed_point, fedavg_path, fedavg_round,
                                                            global_optimum, local_steps)
from fedkd_lessons.figures.lesson3_federated import plot_client_drift  # noqa: E402


def test_drift_toy_global_optimum_by_hand():
    # The lesson's clients: optima (-2, 1) and (2, -1), curvatures (4, 0.5) and (0.5, 4), equal sizes.
    # w1* = (4 * -2 + 0.5 * 2) / 4.5 = -14/9, w2* = (0.5 * 1 + 4 * -1) / 4.5 = -7/9.
    np.testing.assert_allclose(global_optimum(DriftSettings().clients), [-14 / 9, -7 / 9])


def test_drift_toy_fixed_points_by_hand():
    clients, lr = DriftSettings().clients, 0.1
    # One local step: FedAvg is gradient descent on the federation's loss and settles at its optimum.
    np.testing.assert_allclose(fedavg_fixed_point(clients, 1, lr), [-14 / 9, -7 / 9])
    # Twenty: client 1 keeps m = 0.6^20 of its w1 gap, client 2 m = 0.95^20:
    # w1 = (-2 (1 - 0.6^20) + 2 (1 - 0.95^20)) / ((1 - 0.6^20) + (1 - 0.95^20)), and w2 mirrored.
    pull_steep, pull_flat = 1 - 0.6**20, 1 - 0.95**20
    expected = [(-2 * pull_steep + 2 * pull_flat) / (pull_steep + pull_flat),
                (1 * pull_flat - 1 * pull_steep) / (pull_steep + pull_flat)]
    np.testing.assert_allclose(fedavg_fixed_point(clients, 20, lr), expected)
    # Very many steps: each client reaches its own optimum, FedAvg the plain mean of the optima.
    np.testing.assert_allclose(fedavg_fixed_point(clients, 10_000, lr), [0.0, 0.0], atol=1e-12)


def test_drift_toy_round_by_hand_and_simulation_reaches_the_closed_form():
    a, b = QuadraticClient((0.0,), (1.0,), 1), QuadraticClient((4.0,), (1.0,), 3)
    np.testing.assert_allclose(local_steps(a, [2.0], 2, 0.5)[:, 0], [2.0, 1.0, 0.5])
    assert fedavg_round(np.array([2.0]), [a, b], 2, 0.5)[0] == pytest.approx((0.5 + 3 * 3.5) / 4)
    settings = dataclasses.replace(DriftSettings(), rounds=150)
    for steps in settings.local_steps:
        np.testing.assert_allclose(fedavg_path(settings, steps)[-1], fedavg_fixed_point(settings.clients, steps, 0.1),
                                   atol=1e-9)


@pytest.mark.parametrize("change, message", [
    (dict(lr=0.6), "must be below 2"),
    (dict(local_steps=(0, 5)), r"local_steps\[0\] must be an integer >= 1, got 0"),
    (dict(start=(0.0,)), "length of start"),
    (dict(clients=(QuadraticClient((0.0, 0.0), (1.0, 1.0), 5),)),
     r"^clients must be a list or tuple of at least 2 item\(s\)"),
])
def test_drift_settings_reject_bad_values(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(DriftSettings(), **change)


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "^seed must be an integer >= 0, got -1$"),
    ("num_clients", 1, "^num_clients must be an integer >= 2, got 1$"),
    ("mild_concentration", 0, "^mild_concentration must be a finite number > 0, got 0$"),
    ("mild_concentration", 200, "^the concentrations must fall from iid_concentration"),
    ("test_share", 1.0, r"^test_share must be a number in \(0, 1\), got 1.0$"),
    ("min_test", 25, r"^min_test must be below min_samples \(25\)"),
    ("trace_clients", (0, 20), r"^trace_clients\[1\] must be an integer in \[0, 19\], got 20$"),
    ("trace_clients", (1, 1), "^trace_clients must name at least two different clients"),
    ("trace_clients", (1,), r"^trace_clients must be a list or tuple of at least 2 item\(s\)"),
    ("dp_sigmas", (0.1, 0.01), "^dp_sigmas must be two increasing noise levels"),
    ("dp_sigmas", (0.0, 0.1), r"^dp_sigmas\[0\] must be a finite number > 0, got 0.0$"),
    ("last_rounds", 31, r"^last_rounds must be at most rounds \(30\), got 31$"),
    ("hurt_points", 1.5, r"^hurt_points must be a number in \[0, 1\], got 1.5$"),
    ("skew_concentrations", (1.0,), r"^skew_concentrations must be a list or tuple of at least 2 item\(s\)"),
    ("rounds", 0, "^rounds must be an integer >= 1, got 0$"),  # through FedAvgSettings
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_settings_keep_the_concentrations_as_given():
    assert Settings().concentrations == (100, 1, 0.1) and type(Settings().iid_concentration) is int  # printed as 100


def test_quadratic_client_rejects_bad_values():
    with pytest.raises(ValueError, match=r"^curvature\[0\] must be a finite number > 0, got 0.0$"):
        QuadraticClient((0.0,), (0.0,), 1)
    with pytest.raises(ValueError, match="same length"):
        QuadraticClient((0.0, 1.0), (1.0,), 1)


def test_client_drift_figure_states_its_finding_and_draws_no_bars():
    fig = plot_client_drift()
    assert "settles away from the optimum" in fig.get_suptitle()
    assert len(fig.axes) == 2 and not any(ax.patches for ax in fig.axes)
    plt.close(fig)


# --- arguments that do not fit together are named before any training ------------------------------

from fedkd_lessons.experiments.lesson3_client_drift import weighted_average  # noqa: E402
from fedkd_lessons.experiments.lesson3_federated import (FederatedResult, SeedHeadlines,  # noqa: E402
                                                         client_changes, headlines_over_seeds, result_of,
                                                         run_aggregator_runs, run_partition_runs)


def _two_client_federation():
    client = (torch.rand(4, 1, 8, 8), torch.arange(4))
    return Federation([client, client], [client, client], [np.arange(4)] * 2, [np.arange(4)] * 2)


def _trace():
    return RoundTrace((0, 1), {}, [], [], {}, [], np.zeros((4, 2)), np.zeros(4))


PLAIN_RUNS = {Settings().skewed_concentration: None, Settings().iid_concentration: None}

FEDERATED_REJECTIONS = {
    "trace_round: traced clients of the federation":
        (lambda digits: trace_round(_two_client_federation(), digits, Settings()),
         r"^settings.trace_clients must name clients of the federation \(below 2\), got \(0, 1, 2\)"),
    "run_partition_runs: a federation per concentration":
        (lambda digits: run_partition_runs({100: _two_client_federation()}, digits, Settings()),
         r"^federations must hold the federations at settings' concentrations \[100, 1, 0.1\]"),
    "clip_norm_from: a history with update norms":
        (lambda digits: clip_norm_from(FedAvgHistory(), Settings()), r"^history must hold the update norms"),
    "run_aggregator_runs: the skewed and i.i.d. federations":
        (lambda digits: run_aggregator_runs({100: _two_client_federation()}, digits, Settings(), 1.0),
         r"^federations must hold the federations at settings' skewed and i.i.d. concentrations.*missing \[0.1\]"),
    "headlines_over_seeds: the plain runs":
        (lambda digits: headlines_over_seeds(digits, Settings(), {}, {}),
         r"^runs must hold the plain runs at settings' skewed and i.i.d. concentrations"),
    "headlines_over_seeds: the aggregator runs":
        (lambda digits: headlines_over_seeds(digits, Settings(), PLAIN_RUNS, {"median": None}),
         r"^aggregator_runs must hold the runs \['median', 'dp \(sigma = 0.01\)', 'dp \(sigma = 0.1\)'\]"),
    "result_of: the skewed federation":
        (lambda digits: result_of(Settings(), {}, _trace(), {}, 1.0, {}, SeedHeadlines((0, 1), {})),
         r"^federations must hold the federation at settings' skewed concentration"),
    "client_changes: an aggregator run of the result":
        (lambda digits: client_changes(FederatedResult(Settings(), {}, np.zeros(2), _trace(), {}, 1.0, {"median": None},
                                                       SeedHeadlines((0, 1), {})), "mean"),
         r"^name must be one of result's aggregator runs \['median'\], got 'mean'"),
}


@pytest.mark.parametrize("call, message", list(FEDERATED_REJECTIONS.values()), ids=list(FEDERATED_REJECTIONS))
def test_federated_arguments_that_do_not_fit_together_are_named(digits, call, message):
    with pytest.raises(ValueError, match=message):
        call(digits)


ONE_D, OTHER_ONE_D = QuadraticClient((0.0,), (1.0,), 1), QuadraticClient((4.0,), (1.0,), 3)
TWO_D = QuadraticClient((0.0, 1.0), (1.0, 1.0), 2)

DRIFT_REJECTIONS = {
    "local_steps: start of the client's dimension":
        (lambda: local_steps(ONE_D, [0.0, 1.0], 1, 0.1), r"^start must have the clients' dimension 1, got 2$"),
    "weighted_average: a point per client":
        (lambda: weighted_average([[0.0]], [ONE_D, OTHER_ONE_D]),
         r"^points must hold one point per client \(2\), got 1$"),
    "weighted_average: points of the clients' dimension":
        (lambda: weighted_average([[0.0], [0.0, 1.0]], [ONE_D, OTHER_ONE_D]),
         r"^points\[1\] must have the clients' dimension 1, got 2$"),
    "fedavg_round: weights of the clients' dimension":
        (lambda: fedavg_round([0.0, 1.0], [ONE_D, OTHER_ONE_D], 1, 0.1),
         r"^weights must have the clients' dimension 1"),
    "global_optimum: clients of one dimension":
        (lambda: global_optimum([ONE_D, TWO_D]),
         r"^clients must all have weights of one dimension, got 1 for clients\[0\]"),
    "fedavg_fixed_point: clients of one dimension":
        (lambda: fedavg_fixed_point([ONE_D, TWO_D], 2, 0.1), r"^clients must all have weights of one dimension"),
}


@pytest.mark.parametrize("call, message", list(DRIFT_REJECTIONS.values()), ids=list(DRIFT_REJECTIONS))
def test_drift_arguments_that_do_not_fit_together_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_drift_points_are_computed_on_as_float_arrays_as_before():
    # a list of ints, a tuple and an array give the same path: the declared check converts as the body did
    for start in ([2, 0], (2.0, 0.0), np.array([2.0, 0.0])):
        np.testing.assert_array_equal(local_steps(TWO_D, start, 1, 0.5), [[2.0, 0.0], [1.0, 0.5]])
