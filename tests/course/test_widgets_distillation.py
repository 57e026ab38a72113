import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.course.widgets import DISTILLATION_TEMPERATURE_RANGE, distillation_widget


@pytest.fixture(scope="module")
def widget_and_inputs(digits):
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(5, 10, generator=generator, dtype=torch.float64) * 6
    student = torch.randn(5, 10, generator=generator, dtype=torch.float64) * 2
    labels = digits.test_labels[:5]
    return distillation_widget(digits.test_images[:5], teacher, student, labels), teacher, student, labels


def shown(widget, name):
    return float(re.search(name + r" = <b>([-0-9.]+)</b>", widget.readout.value).group(1))


def test_sliders_cover_the_useful_ranges():
    low, high = DISTILLATION_TEMPERATURE_RANGE
    assert low <= 1 and high >= 20


def test_bars_and_loss_terms_follow_both_sliders(widget_and_inputs):
    widget, teacher, student, labels = widget_and_inputs
    previous_png = None
    grid = [(0, t, a) for t in np.geomspace(*DISTILLATION_TEMPERATURE_RANGE, 5) for a in (0.0, 0.5, 1.0)]
    for index, temperature, alpha in grid + [(4, 2.0, 0.95), (4, 20.0, 0.95)]:
        widget.digit_picker.value = index
        widget.temperature_slider.value = float(temperature)
        widget.alpha_slider.value = alpha
        t, a = widget.temperature_slider.value, widget.alpha_slider.value
        p = F.softmax(teacher[index] / t, dim=0)
        q = F.softmax(student[index] / t, dim=0)
        torch.testing.assert_close(torch.tensor([b.get_height() for b in widget.teacher_bars], dtype=torch.float64), p)
        torch.testing.assert_close(torch.tensor([b.get_height() for b in widget.student_bars], dtype=torch.float64), q)
        kl = F.kl_div(F.log_softmax(student[index:index + 1] / t, dim=1), p[None], reduction="batchmean")
        soft = a * t**2 * float(kl)
        hard = (1 - a) * float(F.cross_entropy(student[index:index + 1], labels[index:index + 1]))
        assert shown(widget, "KL") == pytest.approx(soft, abs=6e-5)
        assert shown(widget, "CE") == pytest.approx(hard, abs=6e-5)
        assert shown(widget, "total") == pytest.approx(soft + hard, abs=1.2e-4)
        np.testing.assert_allclose([b.get_height() for b in widget.term_bars], [soft, hard], rtol=1e-6, atol=1e-9)
        assert widget.image.value != previous_png
        previous_png = widget.image.value


def test_alpha_ends_switch_a_term_off(widget_and_inputs):
    widget = widget_and_inputs[0]
    widget.alpha_slider.value = 1.0
    assert shown(widget, "CE") == 0
    widget.alpha_slider.value = 0.0
    assert shown(widget, "KL") == 0


def test_picker_names_the_label(widget_and_inputs, digits):
    assert widget_and_inputs[0].digit_picker.options[3] == (f"#3 (label {int(digits.test_labels[3])})", 3)


def test_bad_inputs_are_rejected(digits):
    images, labels = digits.test_images[:3], digits.test_labels[:3]
    with pytest.raises(ValueError, match=r"must both have shape \(N, C\)"):
        distillation_widget(images, torch.zeros(3, 10), torch.zeros(3, 9), labels)
    with pytest.raises(ValueError, match="differ in length"):
        distillation_widget(images, torch.zeros(2, 10), torch.zeros(2, 10), labels[:2])
    with pytest.raises(ValueError, match=r"^initial_temperature must be a number in \[0.5, 50\], got 0.1"):
        distillation_widget(images, torch.zeros(3, 10), torch.zeros(3, 10), labels, initial_temperature=0.1)
    with pytest.raises(ValueError, match=r"^initial_alpha must be a number in \[0, 1\], got 1.2"):
        distillation_widget(images, torch.zeros(3, 10), torch.zeros(3, 10), labels, initial_alpha=1.2)
    with pytest.raises(ValueError, match=r"^student_logits must have 2 dimension\(s\)"):
        distillation_widget(images, torch.zeros(3, 10), torch.zeros(3, 10, 1), labels)
    with pytest.raises(ValueError, match=r"^labels must hold integers"):
        distillation_widget(images, torch.zeros(3, 10), torch.zeros(3, 10), labels.float())
    assert math.isfinite(DISTILLATION_TEMPERATURE_RANGE[1])
