"""Lesson 6's figures: built from their arguments only, showing what they claim."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedkd_lessons.fedmd import FedMDHistory  # noqa: E402
from fedkd_lessons.figures.lesson6_flower import (flower_architecture_figure, flower_vs_in_process_figure,
                                                  wire_bytes_figure)
from fedkd_lessons.flower.launcher import FlowerFedMDRun  # noqa: E402


@pytest.fixture
def runs():
    accuracy = np.array([[0.1, 0.5, 0.2], [0.2, 0.6, 0.3], [0.3, 0.7, np.nan]])
    messages = [dict(bytes_down={"0": 400, "1": 400, "2": 400}, bytes_up={"0": 7000, "1": 7000, "2": 7000}),
                dict(bytes_down={"0": 7600, "1": 7600, "2": 7600}, bytes_up={"0": 7000, "1": 7000}),
                dict(bytes_down={"0": 7400, "1": 7400}, bytes_up={"0": 200, "1": 200})]
    flower = FlowerFedMDRun(accuracy, ("a", "b", "c"), messages, [{}, {}, {}], 2, 10.0, [1, 2], [], {})
    in_process = FedMDHistory(np.nan_to_num(accuracy, nan=0.4), ("a", "b", "c"), [], {})
    return flower, in_process


def test_architecture_figure_names_every_party_and_the_stopped_one():
    fig = flower_architecture_figure(["mlp 32", "cnn 8", "mlp 64"], subset_size=100, stopped=1)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert isinstance(fig, Figure)
    assert all(f"party {k}" in texts for k in range(3))
    assert "stopped mid-run" in texts and "1,600 floats" in texts  # 100 samples x 16 classes
    plt.close(fig)


def test_accuracy_figure_draws_both_runs_per_party(runs):
    flower, in_process = runs
    fig = flower_vs_in_process_figure(flower, in_process)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 * 3 + 1  # in-process line + Flower markers per party, the stop line
    np.testing.assert_array_equal(lines[1].get_ydata(), flower.accuracy[:, 0])
    assert "party 2 stopped" in " ".join(t.get_text() for t in fig.axes[0].texts)
    plt.close(fig)


def test_bytes_figure_sums_each_message_over_parties(runs):
    flower, _ = runs
    fig = wire_bytes_figure(flower, fedavg_bytes_per_round=50_000)
    values = [list(line.get_ydata()) for line in fig.axes[0].get_lines()]
    assert values == [[1200, 22800, 14800], [21000, 14000, 400], [50_000]]  # down, up per message; FedAvg
    assert len(fig.axes[0].patches) == 0  # dots, not bars, on the log axis
    plt.close(fig)
