"""The paired interval over seeds against scipy's own paired t-test, and its figure."""

import matplotlib
import numpy as np
import pytest
from scipy import stats

from fedkd_lessons.experiments.intervals import paired_interval
from fedkd_lessons.figures.plotting import paired_differences_figure

matplotlib.use("Agg")


def test_interval_equals_scipys_paired_t_interval():
    rng = np.random.default_rng(0)
    better, worse = rng.normal(0.8, 0.02, 7), rng.normal(0.78, 0.02, 7)
    interval = paired_interval(better, worse)
    reference = stats.ttest_rel(better, worse).confidence_interval(0.95)
    assert interval.mean == pytest.approx(np.mean(better - worse))
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high))


def test_interval_by_hand_and_verdicts():
    # differences 3, 4, 5: mean 4, s = 1, t(0.975, 2) = 4.302653, half-width 4.302653 / sqrt(3)
    interval = paired_interval([3.0, 5.0, 7.0], [0.0, 1.0, 2.0])
    assert interval.low == pytest.approx(4 - 4.302653 / 3**0.5, abs=1e-6)
    assert interval.verdict == "above zero"
    assert paired_interval([0.1, 0.2, 0.3], [0.2, 0.1, 0.35]).verdict == "no measurable difference"
    assert paired_interval([0.0, 0.0, 0.1], [0.5, 0.6, 0.5]).verdict == "below zero"
    assert paired_interval([0.5, 0.6], [0.4, 0.5]).points() == "+10.0 [+10.0, +10.0]"


@pytest.mark.parametrize("better, worse, message", [
    ([1.0], [0.0], "^better must hold at least 2 seeds"),
    ([[1.0, 2.0]], [0.0, 0.5], "^better must be 1-D"),
    ([1.0, float("nan")], [0.0, 0.0], "^better must be finite"),
    ([1.0, 2.0], [0.0, "x"], "^worse must be one finite number per seed"),
])
def test_bad_input_is_rejected(better, worse, message):
    with pytest.raises(ValueError, match=message):
        paired_interval(better, worse)
    with pytest.raises(ValueError, match="^confidence must be a number in"):
        paired_interval([1.0, 2.0], [0.0, 0.5], confidence=1.0)


def test_worse_of_another_length_than_better_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^worse must pair with better, one number per seed: better has 3, worse 2"):
        paired_interval([1.0, 2.0, 3.0], [0.0, 0.5])


def test_a_list_of_python_floats_is_not_rounded_to_float32():
    difference = 0.1 + 1e-9  # lost in float32
    interval = paired_interval([difference, difference + 1e-9], [0.0, 0.0])
    assert interval.differences.dtype == np.float64 and interval.differences[0] == difference


def test_figure_draws_a_row_per_comparison_with_every_seed():
    comparisons = {"A - B": paired_interval([0.9, 0.8, 0.85], [0.8, 0.8, 0.8]),
                   "C - B": paired_interval([0.7, 0.8, 0.75], [0.8, 0.8, 0.8])}
    fig = paired_differences_figure(comparisons, "A beats B; C does not")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C - B", "A - B"]
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert sorted(round(x, 6) for line in dots for x in line.get_xdata()) == [-10.0, -5.0, 0.0, 0.0, 5.0, 10.0]
    with pytest.raises(ValueError, match="comparisons is empty"):
        paired_differences_figure({}, "nothing")
