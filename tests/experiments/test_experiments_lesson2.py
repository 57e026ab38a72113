"""Lesson 2's experiment module: the settings' validation, and the maths of its new functions against
independent references (finite differences, torch.nn.functional, numpy, counts by hand)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons import predict_logits, seed_everything
from fedkd_lessons.data.digits import load_digits_split
from fedkd_lessons.experiments.lesson2_distillation import (
    SEED_STRIDE, EnsembleTeacher, LessonData, OmittedClassResult, Settings, class_share_right,
    closed_form_soft_gradient, epochs_for, errors, few_label_students, fresh_mlp, gradient_checks, logit_matching_gaps,
    make_splits, omitted_class_share_with, omitted_class_students, same_set_students, soft_gradient,
    soft_gradient_norms, soft_target_student, split_data, temperature_alpha_sweep, train_teacher, train_together)


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("validation_fraction", 0.0, r"validation_fraction must be a number in \(0, 1\)"),
    ("validation_fraction", 1.5, r"validation_fraction must be a number in \(0, 1\)"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("teacher_hidden", (), r"teacher_hidden must be a list or tuple of at least 1 item\(s\)"),
    ("teacher_hidden", (256, 0), r"teacher_hidden\[1\] must be an integer >= 1"),
    ("teacher_dropout", -0.1, r"teacher_dropout must be a number in \[0, 1\)"),
    ("teacher_dropout", 1.0, r"teacher_dropout must be a number in \[0, 1\)"),
    ("teacher_epochs", 0, "teacher_epochs must be an integer >= 1"),
    ("teacher_lr", float("nan"), "teacher_lr must be a finite number > 0"),
    ("probe_hidden", 0, "probe_hidden must be an integer >= 1"),
    ("probe_batch", 0, "probe_batch must be an integer >= 1"),
    ("probe_temperature", 0.0, "probe_temperature must be a finite number > 0"),
    ("gradient_temperatures", (1, 2), r"gradient_temperatures must be a list or tuple of at least 3 item\(s\)"),
    ("gradient_temperatures", (1, 4, 2), "gradient_temperatures must be increasing"),
    ("matching_temperatures", (1, -4, 16), r"matching_temperatures\[1\] must be a finite number > 0"),
    ("student_seeds", 0, "student_seeds must be an integer >= 1"),
    ("student_sizes", (), r"student_sizes must be a list or tuple of at least 1 item\(s\)"),
    ("student_epochs", 0, "student_epochs must be an integer >= 1"),
    ("temperature", float("inf"), "temperature must be a finite number > 0"),
    ("alpha", 1.1, r"alpha must be a number in \[0, 1\]"),
    ("ensemble_size", 0, "ensemble_size must be an integer >= 1"),
    ("member_hidden", 0, "member_hidden must be an integer >= 1"),
    ("member_epochs", 0, "member_epochs must be an integer >= 1"),
    ("member_lr", -1.0, "member_lr must be a finite number > 0"),
    ("teacher_share", 1.0, r"teacher_share must be a number in \(0, 1\)"),
    ("labelled_counts", (0,), r"labelled_counts\[0\] must be an integer >= 1"),
    ("few_label_hidden", 0, "few_label_hidden must be an integer >= 1"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("sweep_temperatures", (1.0, 0.0), r"sweep_temperatures\[1\] must be a finite number > 0"),
    ("sweep_temperatures", (4.0, 1.0), "sweep_temperatures must be increasing"),
    ("sweep_alphas", (), r"sweep_alphas must be a list or tuple of at least 1 item\(s\)"),
    ("sweep_alphas", (2.0,), r"sweep_alphas\[0\] must be a number in \[0, 1\]"),
    ("sweep_epochs", 0, "sweep_epochs must be an integer >= 1"),
    ("omitted_class", 10, r"omitted_class must be an integer in \[0, 9\]"),
    ("omitted_hidden", 0, "omitted_hidden must be an integer >= 1"),
    ("omitted_temperature", 0.0, "omitted_temperature must be a finite number > 0"),
    ("omitted_epochs", 0, "omitted_epochs must be an integer >= 1"),
    ("shifts", (), r"shifts must be a list or tuple of at least 1 item\(s\)"),
    ("shifts", (0.0, math.inf), r"shifts\[1\] must be a finite number"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match="^" + message):
        Settings(**{field: value})


def test_derived_seeds_never_collide_between_seeds():
    streams = {Settings(seed=s).derived_seed(offset) for s in range(3) for offset in (0, 1, 5, 10, 100, 1000, 1002)}
    assert len(streams) == 3 * 7
    assert Settings(seed=0).derived_seed(100) == 100  # seed 0 keeps the offsets as they are
    with pytest.raises(ValueError, match="offset must be in"):
        Settings().derived_seed(SEED_STRIDE)


def test_epochs_for_gives_at_least_the_steps_asked():
    settings = Settings(steps=300, batch_size=128)
    assert epochs_for(50, settings) == 300  # one batch an epoch
    assert epochs_for(575, settings) == 60  # five batches an epoch: exactly 300 steps
    assert epochs_for(129, settings) == 150  # two batches an epoch
    with pytest.raises(ValueError, match="count must be an integer >= 1"):
        epochs_for(0, settings)


def test_errors_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    labels = torch.tensor([0, 0, 1])  # the second and third are wrong
    assert errors(logits, labels, class_index=0) == (2, 1)
    assert errors(logits, labels, class_index=1) == (2, 1)


def test_split_is_stratified_disjoint_and_moves_with_the_seed():
    digits = load_digits_split()
    a, b = split_data(digits, Settings(seed=0)), split_data(digits, Settings(seed=1))
    assert len(a.labels) + len(a.val_labels) == len(digits.train_labels)
    assert len(a.val_labels) == len(b.val_labels)
    assert np.bincount(a.val_labels.numpy(), minlength=10).min() >= 0.15 * len(a.val_labels) / 10
    together = torch.cat([a.images, a.val_images]).flatten(1)
    assert torch.unique(together, dim=0).shape[0] == torch.unique(digits.train_images.flatten(1), dim=0).shape[0]
    assert not torch.equal(a.val_images, b.val_images)
    assert torch.equal(a.test_images, b.test_images)  # the test set stays fixed


def test_fresh_mlp_initial_weights_are_fixed_by_the_seed():
    one, two, other = fresh_mlp((16,), 7), fresh_mlp((16,), 7), fresh_mlp((16,), 8)
    for p, q, r in zip(one.parameters(), two.parameters(), other.parameters()):
        assert torch.equal(p, q)
    assert not all(torch.equal(p, r) for p, r in zip(one.parameters(), other.parameters()))


def _logits(seed, n=5, c=10, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=generator, dtype=torch.float64) * scale,
            torch.randn(n, c, generator=generator, dtype=torch.float64) * scale)


def _reference_soft_loss(z, v, temperature):
    # T^2 * KL(p || q) averaged over the examples, from torch.nn.functional alone
    return temperature**2 * F.kl_div(F.log_softmax(z / temperature, dim=1), F.softmax(v / temperature, dim=1),
                                     reduction="batchmean")


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0, 20.0])
def test_soft_gradient_matches_finite_differences_and_the_closed_form(temperature):
    z, v = _logits(1)
    grad = soft_gradient(z, v, temperature)
    step = 1e-6
    numeric = torch.zeros_like(z)
    for index in np.ndindex(*z.shape):
        up, down = z.clone(), z.clone()
        up[index] += step
        down[index] -= step
        numeric[index] = (_reference_soft_loss(up, v, temperature) - _reference_soft_loss(down, v, temperature)) / (2 * step)
    assert torch.allclose(grad, numeric, atol=1e-7)
    assert torch.allclose(closed_form_soft_gradient(z, v, temperature), numeric, atol=1e-7)


def test_soft_gradient_norms_with_and_without_t_squared():
    z, v = _logits(2)
    temperatures = [1.0, 2.0, 8.0]
    without, with_t2 = soft_gradient_norms(z, v, temperatures)
    for t, a, b in zip(temperatures, without, with_t2):
        reference = z.clone().requires_grad_(True)
        _reference_soft_loss(reference, v, t).backward()
        assert b == pytest.approx(float(reference.grad.norm()), rel=1e-9)
        assert a == pytest.approx(b / t**2, rel=1e-12)


def test_logit_matching_gaps_against_numpy():
    z, v = (x[0].numpy() for x in _logits(3))
    temperatures = [1.0, 10.0, 1000.0]

    def softmax(x):
        e = np.exp(x - x.max())
        return e / e.sum()

    zc, vc = z - z.mean(), v - v.mean()
    matching = (zc - vc) / len(z)
    expected = [np.linalg.norm(t * (softmax(zc / t) - softmax(vc / t)) - matching) / np.linalg.norm(matching)
                for t in temperatures]
    gaps = logit_matching_gaps(torch.tensor(z), torch.tensor(v), temperatures)
    np.testing.assert_allclose(gaps, expected, rtol=1e-9)
    assert gaps[-1] < 0.01  # Eq. 4: at T far above the logits, the gradient is logit matching
    # uncentred logits give the same gaps (the softmax ignores a shift, and the function centres them)
    np.testing.assert_allclose(logit_matching_gaps(torch.tensor(z + 5), torch.tensor(v - 2), temperatures), expected,
                               rtol=1e-9)


def test_omitted_class_experiment_with_a_loss_recognises_3s_only_through_the_teacher():
    # Exercise 1's experiment: the lesson's distillation loss, written here with torch.nn.functional,
    # teaches a student without 3s most test 3s; the hard-label cross-entropy alone teaches it none.
    seed_everything(0)
    settings = Settings()
    data = make_splits(settings)
    teacher_logits = predict_logits(train_teacher(data, settings, progress=False), data.images)

    def soft_only(student, teacher, targets, temperature, alpha):
        return alpha * temperature**2 * F.kl_div(F.log_softmax(student / temperature, dim=1),
                                                 F.softmax(teacher / temperature, dim=1), reduction="batchmean")

    assert omitted_class_share_with(soft_only, data, teacher_logits, settings) > 0.5
    assert omitted_class_share_with(lambda s, t, y, T, a: F.cross_entropy(s, y), data, teacher_logits, settings) == 0.0


# --- Arguments that must agree: each rejection names the argument at fault ------------------------

def _tiny_data(n=6):
    images, labels = torch.rand(n, 1, 8, 8), torch.arange(n) % 10
    return LessonData(images, labels, images, labels, images, labels)


@pytest.mark.parametrize("call", [
    lambda data, logits: soft_target_student(data, logits, Settings(), 16, 0),
    lambda data, logits: same_set_students(data, logits, Settings(), progress=False),
    lambda data, logits: temperature_alpha_sweep(data, logits, Settings(), progress=False),
    lambda data, logits: omitted_class_students(data, logits, Settings(), progress=False),
    lambda data, logits: omitted_class_share_with(lambda *args: 0, data, logits, Settings()),
], ids=["soft_target_student", "same_set_students", "temperature_alpha_sweep", "omitted_class_students",
        "omitted_class_share_with"])
def test_teacher_logits_not_one_row_per_transfer_digit_are_rejected_by_name(call):
    with pytest.raises(ValueError, match=r"^teacher_logits must give one row per transfer digit of data \(6\), got 5"):
        call(_tiny_data(), torch.zeros(5, 10))


@pytest.mark.parametrize("function", [soft_gradient, closed_form_soft_gradient,
                                      lambda z, v, t: gradient_checks(z, v, Settings())])
def test_teacher_logits_of_another_shape_than_the_students_are_rejected_by_name(function):
    z, v = _logits(0)
    with pytest.raises(ValueError, match=r"^teacher_logits must have the student's shape \(5, 10\)"):
        function(z, v[:, :9], 2.0)


def test_v_of_another_shape_than_z_is_rejected_by_name():
    z, v = _logits(0)
    with pytest.raises(ValueError, match=r"^v must have the shape of z \(10,\)"):
        logit_matching_gaps(z[0], v[0, :9], [1.0, 2.0])


def test_students_sets_and_generators_of_other_lengths_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^sets and generators must give one per student \(2\), got 2 and 1"):
        train_together([fresh_mlp((4,), 0), fresh_mlp((4,), 1)], [(torch.rand(3, 1, 8, 8), torch.arange(3))] * 2,
                       [torch.Generator()], epochs=1, lr=0.1, batch_size=2)


def test_errors_with_labels_of_another_length_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must give one label per row of logits \(3\), got 2"):
        errors(torch.zeros(3, 2), torch.tensor([0, 1]), class_index=0)


def test_errors_on_a_class_the_logits_lack_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^class_index must be a class of logits, in \[0, 1\], got 2"):
        errors(torch.zeros(3, 2), torch.tensor([0, 1, 1]), class_index=2)


def _omitted_result(n=4):
    return OmittedClassResult(10, 2, torch.zeros(n, 10), torch.zeros(n, 10), np.zeros(3), 0.0)


def test_class_share_with_labels_not_one_per_test_digit_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must give one label per test digit of result \(4\), got 3"):
        class_share_right(_omitted_result(), torch.tensor([3, 3, 1]), 3, shifted=False)


def test_class_share_of_a_class_absent_from_the_labels_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must hold a digit of class_index 3 to score, got none"):
        class_share_right(_omitted_result(), torch.tensor([0, 1, 2, 4]), 3, shifted=True)


def test_more_labelled_digits_than_the_pool_holds_are_rejected_by_name():
    pool = np.arange(5)
    teacher = EnsembleTeacher(None, [], np.arange(0), pool, torch.zeros(5, 10), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^settings.labelled_counts must be at most the students' pool of teacher "
                                         r"\(5 digits\), got 200"):
        few_label_students(_tiny_data(), teacher, Settings(), progress=False)
