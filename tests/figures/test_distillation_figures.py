import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from fedkd_lessons import softmax_with_temperature  # noqa: E402
from fedkd_lessons.figures.lesson2_distillation import (bias_shift_figure, gradient_scale_figure, readme_figure,
                                                        soft_targets_figure, student_comparison_figure,
                                                        sweep_heatmap_figure)


def test_soft_targets_figure_shows_the_softened_teacher(digits):
    logits = torch.randn(3, 10, generator=torch.Generator().manual_seed(0)) * 5
    fig = soft_targets_figure(digits.test_images[:3], logits, digits.test_labels[:3], temperature=4)
    bars = [patch.get_height() for patch in fig.axes[3 * 2 + 1 - 1].patches]  # row 3, column 1 (T = 4)
    np.testing.assert_allclose(bars, softmax_with_temperature(logits[0], 4).numpy(), atol=1e-6)
    assert len(fig.axes) == 9
    plt.close(fig)


def test_other_figures_return_figures_with_the_expected_panels():
    figures = [
        (gradient_scale_figure([1, 2, 4], [1.0, 0.25, 0.0625], [1.0, 1.0, 1.0]), 1),
        (student_comparison_figure({"16": {"hard labels": [0.9, 0.92], "soft targets": [0.91, 0.9]}},
                                   {"50": {"hard labels": [0.7, 0.8], "pseudo-labels": [0.9, 0.9],
                                           "soft targets": [0.93, 0.92]}}, title="finding"), 2),
        (sweep_heatmap_figure([np.full((2, 3), 0.9), np.full((2, 3), 0.95)], [1, 4, 8], [0.5, 1.0], ["a", "b"]), 3),
        (bias_shift_figure([0, 1, 2], [0.9, 0.95, 0.8], 1.0), 1),
    ]
    for fig, panels in figures:
        assert isinstance(fig, Figure) and len(fig.axes) == panels
        plt.close(fig)
    assert figures[1][0].get_suptitle() == "finding"
    assert not any(ax.patches for ax in figures[1][0].axes)  # dots on a cut axis, never bars


def test_readme_figure_needs_no_arguments():
    fig = readme_figure()
    assert isinstance(fig, Figure) and len(fig.axes) == 12
    plt.close(fig)
