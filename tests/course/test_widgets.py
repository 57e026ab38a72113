import math
import re

import numpy as np
import pytest
import torch

from fedkd_lessons import entropy, softmax_with_temperature
from fedkd_lessons.course.widgets import temperature_widget


@pytest.fixture(scope="module")
def widget_and_inputs(digits):
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0)) * 6
    return temperature_widget(digits.test_images[:6], logits, digits.test_labels[:6]), logits


def shown_entropy(widget):
    return float(re.search(r"entropy H = <b>([0-9.]+)</b>", widget.readout.value).group(1))


def test_slider_covers_at_least_005_to_100_on_a_log_scale(widget_and_inputs):
    slider = widget_and_inputs[0].temperature_slider
    assert slider.base == 10 and 10**slider.min <= 0.05 and 10**slider.max >= 100


def test_bars_and_readout_follow_slider_and_picker(widget_and_inputs):
    widget, logits = widget_and_inputs
    previous_png = None
    for index in (0, 3, 5):
        widget.digit_picker.value = index
        for temperature in np.geomspace(0.05, 100, 9):
            widget.temperature_slider.value = float(temperature)
            expected = softmax_with_temperature(logits[index], widget.temperature_slider.value)
            heights = torch.tensor([bar.get_height() for bar in widget.bars])
            torch.testing.assert_close(heights, expected, atol=1e-6, rtol=0)
            assert shown_entropy(widget) == pytest.approx(entropy(expected).item(), abs=6e-4)
            top = f"{expected.max().item():.3f}"
            assert f"top probability = <b>{top}</b>" in widget.readout.value
            assert widget.image.value != previous_png
            previous_png = widget.image.value


def test_ends_of_the_slider_reach_the_limits(widget_and_inputs):
    widget, _ = widget_and_inputs
    widget.temperature_slider.value = 10**widget.temperature_slider.max
    assert shown_entropy(widget) > 0.97 * math.log(10)
    widget.temperature_slider.value = 10**widget.temperature_slider.min
    assert shown_entropy(widget) < 0.05 * math.log(10)


def test_picker_shows_the_label(widget_and_inputs, digits):
    label = digits.test_labels[2].item()
    assert widget_and_inputs[0].digit_picker.options[2] == (f"#2 (label {label})", 2)


def test_bad_inputs_are_rejected(digits):
    with pytest.raises(ValueError, match=r"^logits must have 2 dimension\(s\), got shape \(10,\)"):
        temperature_widget(digits.test_images[:2], torch.zeros(10))
    with pytest.raises(ValueError, match="differ in length"):
        temperature_widget(digits.test_images[:3], torch.zeros(2, 10))
    with pytest.raises(ValueError, match=r"^initial_temperature must be a number in \[0.0316228, 100\], got 1000"):
        temperature_widget(digits.test_images[:2], torch.zeros(2, 10), initial_temperature=1000)
    with pytest.raises(ValueError, match=r"^logits contains NaN"):
        temperature_widget(digits.test_images[:2], torch.full((2, 10), math.nan))
    with pytest.raises(ValueError, match=r"^images must have 3 or 4 dimension\(s\)"):
        temperature_widget(digits.test_images[0, 0], torch.zeros(8, 10))
    with pytest.raises(ValueError, match=r"^labels must be None or a tensor .*integer entries"):
        temperature_widget(digits.test_images[:2], torch.zeros(2, 10), torch.zeros(2))
    with pytest.raises(ValueError, match=r"^class_names must be None or a list or tuple .* each a str"):
        temperature_widget(digits.test_images[:2], torch.zeros(2, 2), class_names=["0", 1])
