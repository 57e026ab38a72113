"""Lesson 5's figures: each is drawn from its inputs, and the letter reading is checked by hand on
parties whose models answer every image with fixed logits."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from fedkd_lessons.fedmd import FedMDHistory, make_parties  # noqa: E402
from fedkd_lessons.figures.lesson5_fedmd import (bytes_figure, compare_runs_figure, consensus_letters_figure,
                                                 fedmd_diagram, letter_reading, party_gains_figure,
                                                 rounds_over_seeds_figure, validation_curves_figure, zoo_figure)


def constant_party_models(biases):
    """Models that ignore the image and answer with ``bias`` (16 logits)."""
    models = []
    for k, bias in enumerate(biases):
        layer = nn.Linear(64, 16)
        nn.init.zeros_(layer.weight)
        with torch.no_grad():
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
        models.append((f"constant {k}", nn.Sequential(nn.Flatten(), layer)))
    return models


@pytest.fixture
def constant_parties():
    generator = torch.Generator().manual_seed(0)
    biases = torch.randn(3, 16, generator=generator) * 2
    private = [(torch.rand(6, 1, 8, 8), torch.arange(10, 16))] * 3
    return biases, make_parties(constant_party_models(biases), private)


def test_letter_reading_by_hand(constant_parties):
    biases, parties = constant_parties
    public = torch.rand(40, 1, 8, 8)
    labels = torch.arange(40) % 10  # four images of each digit
    mass, reading = letter_reading(parties, public, labels, per_digit=2)
    for k in range(3):
        expected = np.exp(biases[k].numpy()) / np.exp(biases[k].numpy()).sum()
        assert np.allclose(mass[k], expected[10:].sum(), atol=1e-6)  # the same for every digit
    mean = biases.mean(dim=0).numpy()
    consensus = np.exp(mean) / np.exp(mean).sum()
    assert np.allclose(mass[3], consensus[10:].sum(), atol=1e-6)
    assert np.allclose(reading, consensus[10:] / consensus[10:].sum(), atol=1e-6)
    assert mass.shape == (4, 10) and reading.shape == (10, 6)


def history(rows):
    rows = np.array(rows, dtype=float)
    return FedMDHistory(rows, tuple(f"p{k}" for k in range(rows.shape[1])), [], {})


def test_every_figure_is_drawn(constant_parties):
    _, parties = constant_parties
    runs = [history([[0.5, 0.6], [0.55, 0.7]]), history([[0.4, 0.6], [0.5, 0.6]])]
    figures = [
        fedmd_diagram(), zoo_figure(parties), bytes_figure(parties, (10, 30)),
        validation_curves_figure(np.array([0, 5, 10]), np.array([[0.1, 0.5, 0.6]] * 2), np.array([[0.2, 0.6, 0.7]] * 2),
                                 fixed_epochs=5),
        rounds_over_seeds_figure(runs, runs, no_digits=0.6, upper_bound=0.9),
        rounds_over_seeds_figure(runs, runs, no_digits=0.6),
        party_gains_figure(np.array([[0.1, -0.05], [0.02, 0.03]]), ["p0", "p1"], "gains"),
        consensus_letters_figure(parties, torch.rand(20, 1, 8, 8), torch.arange(20) % 10, per_digit=2),
        compare_runs_figure({"a": runs[0]}, "title", reference=0.3),
    ]
    for figure in figures:
        assert isinstance(figure, matplotlib.figure.Figure)
        plt.close(figure)


def test_party_gains_colour_losses_apart():
    figure = party_gains_figure(np.array([[0.1, -0.05]]), ["p0", "p1"], "gains")
    points = {line.get_color(): line.get_ydata() for line in figure.axes[0].lines if len(line.get_ydata())}
    assert 10.0 in np.concatenate(list(points.values())) and -5.0 in np.concatenate(list(points.values()))
    plt.close(figure)
