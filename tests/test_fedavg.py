import warnings
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

with warnings.catch_warnings():  # flwr's command-line dependencies warn about click on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from flwr.server.strategy.aggregate import aggregate, aggregate_median

from fedkd_lessons import accuracy, make_mlp, train  # noqa: E402
from fedkd_lessons.data.partition import client_datasets, dirichlet_partition, iid_partition, local_train_test_split  # noqa: E402
from fedkd_lessons.engine.batched import StackedData  # noqa: E402
from fedkd_lessons.fedavg import (FedAvgSettings, class_accuracies, dp_fedavg, fedavg, fedavg_round,
                                  median_aggregate, run_fedavg, update_norm)
from fedkd_lessons.figures.lesson3_federated import (plot_accuracy_curves, plot_aggregator_cost,
                                                     plot_client_accuracy_histogram, plot_client_examples,
                                                     plot_partition, plot_partitions_by_concentration)


def random_states(count, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [{"layer.weight": torch.randn(4, 3, generator=generator), "layer.bias": torch.randn(4, generator=generator)}
            for _ in range(count)]


def as_ndarrays(state):
    return [state[name].numpy() for name in ("layer.weight", "layer.bias")]


def test_fedavg_is_the_hand_computed_weighted_mean():
    states = [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([5.0, -2.0])}]
    # (1 * [1, 2] + 3 * [5, -2]) / 4 = [4, -1]
    assert torch.equal(fedavg(states, [1, 3])["w"], torch.tensor([4.0, -1.0]))
    assert torch.equal(fedavg(states, [0, 2])["w"], torch.tensor([5.0, -2.0]))  # a zero weight drops a client


@pytest.mark.parametrize("count", [1, 3, 10])
def test_fedavg_equals_flowers_aggregate(count):
    states = random_states(count)
    sizes = [int(n) for n in np.random.default_rng(count).integers(1, 200, size=count)]
    ours = fedavg(states, sizes)
    flower = aggregate([(as_ndarrays(s), n) for s, n in zip(states, sizes)])
    for name, expected in zip(("layer.weight", "layer.bias"), flower):
        np.testing.assert_allclose(ours[name].numpy(), expected, rtol=1e-6, atol=1e-6)
        assert ours[name].dtype == torch.float32


@pytest.mark.parametrize("count", [3, 4])
def test_median_equals_numpy_and_flowers_aggregate_median(count):
    states = random_states(count, seed=1)
    ours = median_aggregate(states)
    flower = aggregate_median([(as_ndarrays(s), 1) for s in states])
    for name, expected in zip(("layer.weight", "layer.bias"), flower):
        np.testing.assert_allclose(ours[name].numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(ours[name].numpy(), np.median(np.stack([s[name].numpy() for s in states]), axis=0),
                                   rtol=1e-6)


def test_median_ignores_one_outlier_the_mean_follows():
    states = [{"w": torch.tensor([1.0])}, {"w": torch.tensor([2.0])}, {"w": torch.tensor([1000.0])}]
    assert median_aggregate(states)["w"].item() == 2.0
    assert fedavg(states, [1, 1, 1])["w"].item() == pytest.approx(1003 / 3)


def test_dp_fedavg_clips_each_update_to_norm_s_hand_computed():
    global_state = {"w": torch.zeros(2)}
    # updates of norm 5 ([3, 4]) and 0.5 ([0.3, 0.4]); S = 1 scales only the first by 1/5
    states = [{"w": torch.tensor([3.0, 4.0])}, {"w": torch.tensor([0.3, 0.4])}]
    result = dp_fedavg(global_state, states, [1, 1], clip_norm=1.0, noise_std=0.0)
    torch.testing.assert_close(result["w"], (torch.tensor([0.6, 0.8]) + torch.tensor([0.3, 0.4])) / 2)
    assert update_norm(states[0], global_state) == pytest.approx(5.0)


def test_dp_fedavg_without_binding_clip_or_noise_is_fedavg():
    states = random_states(4, seed=2)
    start = random_states(1, seed=3)[0]
    result = dp_fedavg(start, states, [1, 2, 3, 4], clip_norm=1e6, noise_std=0.0)
    for name, value in fedavg(states, [1, 2, 3, 4]).items():
        torch.testing.assert_close(result[name], value)


def test_dp_fedavg_noise_has_std_sigma_on_every_coordinate():
    global_state = {"w": torch.zeros(200, 100)}
    states = [{"w": torch.full((200, 100), 0.01)}]
    generator = torch.Generator().manual_seed(0)
    result = dp_fedavg(global_state, states, [1], clip_norm=1e6, noise_std=0.1, generator=generator)
    noise = (result["w"] - 0.01).flatten()
    assert noise.mean().abs() < 0.005 and noise.std().item() == pytest.approx(0.1, rel=0.03)


def test_states_with_different_keys_or_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"client_states\[1\] has different keys.*missing \['b'\]"):
        fedavg([{"a": torch.zeros(2), "b": torch.zeros(1)}, {"a": torch.zeros(2)}], [1, 1])
    with pytest.raises(ValueError, match=r"client_states\[1\]\['a'\] has shape \(3,\) but client_states\[0\]\['a'\] has \(2,\)"):
        median_aggregate([{"a": torch.zeros(2)}, {"a": torch.zeros(3)}])
    with pytest.raises(ValueError, match="floating-point tensor, got dtype torch.int64"):
        fedavg([{"a": torch.zeros(2, dtype=torch.long)}], [1])
    with pytest.raises(ValueError, match=r"^weights must have at least 1 row\(s\), got shape \(0,\)"):
        fedavg([], [])
    with pytest.raises(ValueError, match="^client_states must be a list or a tuple or a ModelStack"):
        fedavg({"a": torch.zeros(2)}, [1])


@pytest.mark.parametrize("weights, message", [([1, -1], ">= 0"), ([0, 0], "all be zero"), ([1], "one number per client"),
                                              ([1, float("nan")], "^weights contains NaN or infinity at 1 place"),
                                              ([[1, 1]], r"^weights must have 1 dimension\(s\)")])
def test_bad_weights_are_rejected(weights, message):
    with pytest.raises(ValueError, match=message):
        fedavg(random_states(2), weights)


def test_dp_rejects_bad_clip_and_noise():
    states = random_states(2)
    with pytest.raises(ValueError, match="clip_norm"):
        dp_fedavg(states[0], states, [1, 1], clip_norm=0.0, noise_std=0.1)
    with pytest.raises(ValueError, match="noise_std must be a finite number >= 0, got -0.1"):
        dp_fedavg(states[0], states, [1, 1], clip_norm=1.0, noise_std=-0.1)


@pytest.fixture(scope="module")
def federation(digits):
    labels = digits.train_labels.numpy()
    parts = dirichlet_partition(labels, 8, 1.0, seed=0, min_samples=30)
    train_parts, test_parts = local_train_test_split(parts, test_share=0.3, min_test=8, seed=0)
    return (client_datasets(digits.train_images, digits.train_labels, train_parts),
            client_datasets(digits.train_images, digits.train_labels, test_parts),
            (digits.test_images, digits.test_labels))


def run_small(federation, client_test=None, **changes):
    client_train, default_test, test_set = federation
    settings = FedAvgSettings(**{"rounds": 4, "client_fraction": 0.5, "local_epochs": 1, "lr": 0.1, **changes})
    return run_fedavg(lambda: make_mlp((16,)), client_train, settings, test_set=test_set,
                      client_test=default_test if client_test is None else client_test)


def test_run_fedavg_learns_records_history_and_is_deterministic(federation):
    result = run_small(federation)
    model, history = result.model, result.history
    assert len(history.global_accuracy) == 5 and len(history.client_accuracy) == 5 and len(history.selected) == 4
    assert all(len(chosen) == 4 and len(set(chosen)) == 4 for chosen in history.selected)  # 0.5 of 8 clients
    assert history.global_accuracy[0] < 0.25 and history.global_accuracy[-1] > 0.6  # chance is 0.1
    client_test, test_set = federation[1], federation[2]
    assert history.global_accuracy[-1] == accuracy(model, *test_set)
    np.testing.assert_allclose(history.final_client_accuracy, [accuracy(model, *pair) for pair in client_test])
    assert history.global_accuracy_over_last(2) == pytest.approx(np.mean(history.global_accuracy[-2:]))
    np.testing.assert_allclose(history.client_accuracy_over_last(5), np.mean(history.client_accuracy, axis=0))
    again = run_small(federation).history
    assert again.global_accuracy == history.global_accuracy
    assert all(np.array_equal(a, b) for a, b in zip(again.selected, history.selected))


def test_run_fedavg_one_client_one_round_is_plain_local_training(federation):
    images, labels = federation[0][0]
    start = make_mlp((16,))
    result = run_fedavg(start, [(images, labels)], FedAvgSettings(rounds=1, lr=0.1, local_epochs=2), seed=5)
    model, history = result.model, result.history
    # the same local training by hand: run_fedavg's generator first picks the client, then shuffles
    reference = make_mlp((16,))
    reference.load_state_dict(start.state_dict())
    generator = torch.Generator().manual_seed(5)
    torch.randperm(1, generator=generator)
    train(reference, images, labels, epochs=2, lr=0.1, batch_size=16, optimizer="sgd", generator=generator)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert not torch.equal(start.state_dict()["1.weight"], model.state_dict()["1.weight"])  # the start is copied
    assert history.update_norms[0][0] == pytest.approx(update_norm(model.state_dict(), start.state_dict()), rel=1e-5)


@pytest.mark.parametrize("aggregator, extra", [("median", {}), ("dp", {"clip_norm": 1.0, "noise_std": 0.01})])
def test_run_fedavg_other_aggregators_run(federation, aggregator, extra):
    history = run_small(federation, aggregator=aggregator, rounds=2, **extra).history
    assert len(history.global_accuracy) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"aggregator": "trimmed"}, "aggregator must be one of"),
    ({"aggregator": "dp"}, "needs clip_norm"),
    ({"aggregator": "dp", "clip_norm": 1.0, "noise_std": -1.0}, "noise_std"),
    ({"aggregator": "median", "clip_norm": 1.0}, "for aggregator='dp' only"),
    ({"aggregator": "mean", "noise_std": 0.1}, "for aggregator='dp' only"),
    ({"client_fraction": 0.0}, "client_fraction"),
    ({"client_fraction": 1.5}, "client_fraction"),
    ({"rounds": 0}, "rounds"),
    ({"local_epochs": 0}, "local_epochs"),
    ({"lr": float("nan")}, "lr"),
    ({"batch_size": 0}, "batch_size"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"momentum": 1.5}, "momentum"),
    ({"momentum": 1.0}, r"^momentum must be a number in \[0, 1\), got 1"),  # as Training and make_optimizer: SGD never settles at 1
])
def test_fedavg_settings_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FedAvgSettings(**kwargs)


def test_run_fedavg_rejects_bad_arguments(federation, digits):
    with pytest.raises(ValueError, match="one set per client"):
        run_small(federation, client_test=[federation[1][0]])
    with pytest.raises(ValueError, match="settings must be a FedAvgSettings"):
        run_fedavg(make_mlp(), federation[0], {"rounds": 1})
    with pytest.raises(ValueError, match="seed"):
        run_fedavg(make_mlp(), federation[0], seed=-1)


def test_fedavg_round_by_hand_two_clients_one_sgd_step():
    # A linear model z = W x + b (1 input, 2 classes) starting at zero, so softmax(z) = [0.5, 0.5] and the
    # cross-entropy gradient is (p - onehot(y)) x for W and p - onehot(y) for b. One step of plain SGD, lr 1:
    #   client 0, one example x = 1, y = 0:    W = [[0.5], [-0.5]], b = [0.5, -0.5]   (update norm 1)
    #   client 1, three copies of x = 2, y = 1: W = [[-1], [1]],     b = [-0.5, 0.5]   (update norm sqrt(2.5))
    # FedAvg weights them 1 : 3: W = [[(0.5 - 3) / 4], [(-0.5 + 3) / 4]] = [[-0.625], [0.625]], b = [-0.25, 0.25].
    model = torch.nn.Sequential(torch.nn.Linear(1, 2))
    torch.nn.init.zeros_(model[0].weight)
    torch.nn.init.zeros_(model[0].bias)
    clients = StackedData.from_sets([(torch.tensor([[1.0]]), torch.tensor([0])),
                                     (torch.tensor([[2.0]] * 3), torch.tensor([1] * 3))])
    settings = FedAvgSettings(rounds=1, local_epochs=1, lr=1.0, batch_size=4, momentum=0.0)
    round_ = fedavg_round(model, clients, settings, torch.Generator().manual_seed(0))
    assert round_.chosen.tolist() == [0, 1]
    torch.testing.assert_close(round_.client_models.parameters["0.weight"], torch.tensor([[[0.5], [-0.5]], [[-1.0], [1.0]]]))
    torch.testing.assert_close(round_.state["0.weight"], torch.tensor([[-0.625], [0.625]]))
    torch.testing.assert_close(round_.state["0.bias"], torch.tensor([-0.25, 0.25]))
    np.testing.assert_allclose(round_.update_norms, [1.0, np.sqrt(2.5)], rtol=1e-6)
    assert torch.equal(model[0].weight, torch.zeros(2, 1))  # the global model is left as it was
    median = fedavg_round(model, clients, replace(settings, aggregator="median"), torch.Generator().manual_seed(0))
    torch.testing.assert_close(median.state["0.bias"], torch.tensor([0.0, 0.0]))  # the middle of 0.5 and -0.5
    clipped = fedavg_round(model, clients, replace(settings, aggregator="dp", clip_norm=1.0),
                           torch.Generator().manual_seed(0))
    # sigma = 0: client 1's update shrinks by 1 / sqrt(2.5) to norm 1, then the 1 : 3 average
    torch.testing.assert_close(clipped.state["0.bias"], torch.tensor([0.5 - 3 * 0.5 / np.sqrt(2.5), -0.5 + 3 * 0.5 / np.sqrt(2.5)],
                                                                     dtype=torch.float32) / 4)


def test_history_without_test_sets_says_so(federation):
    history = run_fedavg(lambda: make_mlp((4,)), federation[0][:2], FedAvgSettings(rounds=1)).history
    with pytest.raises(ValueError, match="no test_set"):
        history.global_accuracy_over_last()
    with pytest.raises(ValueError, match="no client test sets"):
        history.final_client_accuracy


def test_run_fedavg_rejects_bad_client_sets(digits):
    with pytest.raises(ValueError, match=r"^client_train must be a list or tuple of at least 1 item\(s\)"):
        run_fedavg(make_mlp(), [])
    with pytest.raises(ValueError, match=r"client_train\[0\] must hold as many labels as images"):
        run_fedavg(make_mlp(), [(digits.train_images[:5], digits.train_labels[:4])])


def test_figures_are_returned(federation, digits):
    labels = digits.train_labels.numpy()
    parts = iid_partition(labels, 5, seed=0)
    fig = plot_partition(parts, labels, title="five clients")
    heights = sorted(round(sum(p.get_height() for p in fig.axes[0].patches if p.get_x() < k + 0.5 and p.get_x() > k - 0.5))
                     for k in range(5))
    assert heights == sorted(len(p) for p in parts)  # each stacked bar is as tall as its client's data
    history = run_small(federation, rounds=1).history
    figures = [
        fig,
        plot_partitions_by_concentration(labels, concentrations=(100, 0.1), num_clients=4, min_samples=5),
        plot_accuracy_curves({"iid": history}, "curves"),
        plot_client_accuracy_histogram({"non-iid": history.final_client_accuracy}, "spread"),
        plot_aggregator_cost({"mean": np.full(10, 0.9), "median": np.linspace(0, 1, 10)},
                             {"mean": history.final_client_accuracy, "median": history.final_client_accuracy * 0.5}, "cost"),
        plot_client_examples(federation[0], clients=(0, 1), per_client=3),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    assert "α = 0.1" in figures[1].axes[1].get_title()
    assert not any(ax.patches for ax in figures[4].axes)  # what an aggregator costs is drawn in dots
    styled = plot_aggregator_cost({"dp": np.full(10, 0.9), "dp, more noise": np.full(10, 0.5)},
                                  {"dp": history.final_client_accuracy, "dp, more noise": history.final_client_accuracy},
                                  "cost", baseline="dp", colours={"dp": "C0", "dp, more noise": "C0"},
                                  styles={"dp": {"fillstyle": "none"}})
    fill = {line.get_label(): line.get_fillstyle() for line in styled.axes[0].lines}
    assert fill == {"dp": "none", "dp, more noise": "full"}  # one colour per method, a style per setting
    curves = plot_accuracy_curves({"a": history, "b": history}, "curves", styles={"b": {"linestyle": "--"}})
    assert [line.get_linestyle() for line in curves.axes[0].lines] == ["-", "--"]
    plt.close("all")


def test_class_accuracies_hand_counted(digits):
    model = make_mlp((8,))
    predicted = model(digits.test_images).argmax(1)
    expected = [(predicted[digits.test_labels == c] == c).float().mean().item() for c in range(10)]
    np.testing.assert_allclose(class_accuracies(model, digits.test_images, digits.test_labels), expected)
    assert np.isnan(class_accuracies(model, digits.test_images[:3], digits.test_labels[:3], num_classes=11)[10])
