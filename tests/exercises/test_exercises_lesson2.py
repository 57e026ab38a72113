"""Lesson 2's checkers against answers written here (torch.nn.functional's own KL and cross-entropy,
Eq. 2 in closed form, accuracies counted here), each first checked on values worked by hand, never
against the package's distillation module; each typical mistake gets feedback that names it."""

import math

import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.exercises import check_bias_shift_choice, check_distillation_loss, check_soft_gradient
from fedkd_lessons.exercises.lesson2_distillation import _bias_case


def unsolved(*args):
    raise NotImplementedError()


def soft_kl(student, teacher, temperature, reduction="batchmean"):
    return F.kl_div(F.log_softmax(student / temperature, dim=1), F.softmax(teacher / temperature, dim=1),
                    reduction=reduction)


def right_loss(s, t, y, T, a):
    """The loss written with torch.nn.functional's own KL (batchmean), independent of the package."""
    return a * T**2 * soft_kl(s, t, T) + (1 - a) * F.cross_entropy(s, y)


def test_loss_checker_accepts_reference_and_reports_unsolved():
    assert check_distillation_loss(right_loss).passed
    assert check_distillation_loss(unsolved).status == "not solved"


def test_soft_kl_reference_by_hand():
    # Two classes at T = 1: teacher p = (3/4, 1/4), student q = (1/2, 1/2):
    # KL(p || q) = 3/4 log(3/2) + 1/4 log(1/2).
    teacher, student = torch.tensor([[math.log(3), 0.0]]), torch.zeros(1, 2)
    assert float(soft_kl(student, teacher, 1.0)) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_right_loss_by_hand():
    # Teacher p = (3/4, 1/4), student q = (1/2, 1/2), label 0 (CE = ln 2); KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2).
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    student, label = torch.zeros(1, 2), torch.tensor([0])
    # T = 1, alpha = 1/2: (KL + ln 2) / 2 = 0.41198
    assert float(right_loss(student, torch.tensor([[math.log(3), 0.0]]), label, 1.0, 0.5)) == pytest.approx(
        0.5 * kl + 0.5 * math.log(2))
    # T = 2 with teacher logits (2 ln 3, 0): the same p at T = 2, and the soft term is T² KL = 4 KL
    assert float(right_loss(student, torch.tensor([[2 * math.log(3), 0.0]]), label, 2.0, 1.0)) == pytest.approx(4 * kl)
    # two examples, the second with p = q: batchmean halves the first example's KL
    pair = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])
    assert float(right_loss(torch.zeros(2, 2), pair, torch.tensor([0, 1]), 1.0, 1.0)) == pytest.approx(kl / 2)


def test_loss_checker_runs_the_omitted_class_experiment_with_the_learners_loss():
    # The experiment is replaced by hand-made outcomes: the share of test 3s the student gets right.
    seen = []

    def run(share):
        def experiment(loss_fn):
            seen.append(loss_fn)
            return share
        return experiment

    feedback = check_distillation_loss(right_loss, run(0.95))
    assert feedback.passed and "never saw a 3" in feedback.message and seen == [right_loss]
    feedback = check_distillation_loss(right_loss, run(0.0))
    assert not feedback.passed and "only 0 % of the test 3s" in feedback.message


def test_loss_checker_catches_a_loss_that_blocks_gradients():
    # Right values, but computed on detached logits: the experiment's backward pass fails.
    def detached(s, t, y, T, a):
        return right_loss(s.detach(), t, y, T, a)

    def experiment(loss_fn):
        logits = torch.zeros(2, 3, requires_grad=True)
        loss_fn(logits, torch.ones(2, 3), torch.tensor([0, 1]), 20.0, 1.0).backward()
        return 1.0

    feedback = check_distillation_loss(detached, experiment)
    assert not feedback.passed and "gradients flow" in feedback.message


def test_loss_checker_rejects_missing_t_squared():
    feedback = check_distillation_loss(
        lambda s, t, y, T, a: a * soft_kl(s, t, T) + (1 - a) * F.cross_entropy(s, y))
    assert not feedback.passed and "multiply the KL by T²" in feedback.message


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_loss_checker_rejects_mean_over_elements():
    feedback = check_distillation_loss(
        lambda s, t, y, T, a: a * T**2 * soft_kl(s, t, T, "mean") + (1 - a) * F.cross_entropy(s, y))
    assert not feedback.passed and "batchmean" in feedback.message


def test_loss_checker_rejects_reversed_kl():
    def reversed_kl(s, t, y, T, a):
        log_q, log_p = F.log_softmax(s / T, dim=1), F.log_softmax(t / T, dim=1)
        kl = (log_q.exp() * (log_q - log_p)).sum(1).mean()
        return a * T**2 * kl + (1 - a) * F.cross_entropy(s, y)

    feedback = check_distillation_loss(reversed_kl)
    assert not feedback.passed and "teacher's distribution p comes first" in feedback.message


def test_loss_checker_rejects_hard_term_at_temperature_t_and_swapped_weights():
    feedback = check_distillation_loss(
        lambda s, t, y, T, a: a * T**2 * soft_kl(s, t, T) + (1 - a) * F.cross_entropy(s / T, y))
    assert not feedback.passed and "raw logits" in feedback.message
    feedback = check_distillation_loss(lambda s, t, y, T, a: (1 - a) * T**2 * soft_kl(s, t, T) + a * F.cross_entropy(s, y))
    assert not feedback.passed and "not the other way round" in feedback.message


def test_loss_checker_rejects_a_loss_per_example_and_an_unsoftened_student():
    def per_example(s, t, y, T, a):
        return a * T**2 * soft_kl(s, t, T, "none").sum(1) + (1 - a) * F.cross_entropy(s, y, reduction="none")

    def student_at_t_1(s, t, y, T, a):
        kl = F.kl_div(F.log_softmax(s, dim=1), F.softmax(t / T, dim=1), reduction="batchmean")
        return a * T**2 * kl + (1 - a) * F.cross_entropy(s, y)

    feedback = check_distillation_loss(per_example)
    assert not feedback.passed and "average over the examples" in feedback.message
    feedback = check_distillation_loss(student_at_t_1)
    assert not feedback.passed and "T = 4" in feedback.message and "both softened at T" in feedback.message


def test_loss_checker_rejects_naive_softmax_then_log_on_large_logits():
    def naive(s, t, y, T, a):
        q, p = torch.softmax(s / T, dim=1), torch.softmax(t / T, dim=1)
        kl = (p * (p.log() - q.log())).sum(1).mean()
        return a * T**2 * kl + (1 - a) * F.cross_entropy(s, y)

    feedback = check_distillation_loss(naive)
    assert not feedback.passed and "log_softmax" in feedback.message


def closed_form(z, v, T):
    return (torch.softmax(z / T, dim=0) - torch.softmax(v / T, dim=0)) / T


def test_closed_form_gradient_by_hand():
    # z = (0, 0), v = (ln 3, 0) at T = 1: q - p = (1/2 - 3/4, 1/2 - 1/4) = (-1/4, 1/4).
    zeros = torch.zeros(2, dtype=torch.float64)
    assert closed_form(zeros, torch.tensor([math.log(3), 0.0], dtype=torch.float64), 1.0).tolist() == pytest.approx(
        [-0.25, 0.25])
    # v = (2 ln 3, 0) at T = 2: the same q - p, divided by T = 2.
    assert closed_form(zeros, torch.tensor([2 * math.log(3), 0.0], dtype=torch.float64), 2.0).tolist() == pytest.approx(
        [-0.125, 0.125])


def test_gradient_checker_accepts_eq2_and_reports_unsolved():
    assert check_soft_gradient(closed_form).passed
    assert check_soft_gradient(unsolved).status == "not solved"


def test_gradient_checker_rejects_missing_one_over_t_flipped_sign_and_t_squared_version():
    assert "forgot the 1/T" in check_soft_gradient(lambda z, v, T: closed_form(z, v, T) * T).message
    assert "sign is flipped" in check_soft_gradient(lambda z, v, T: -closed_form(z, v, T)).message
    assert "gradient of T²·C" in check_soft_gradient(lambda z, v, T: closed_form(z, v, T) * T**2).message


def test_gradient_checker_rejects_a_summed_gradient_and_a_gradient_without_softening():
    assert "return 10 partial derivatives" in check_soft_gradient(lambda z, v, T: closed_form(z, v, T).sum()).message
    feedback = check_soft_gradient(lambda z, v, T: (torch.softmax(z, dim=0) - torch.softmax(v, dim=0)) / T)
    assert not feedback.passed and "at T = 3" in feedback.message and "q = softmax(z/T)" in feedback.message


def accuracy_after(logits, labels, class_index, shift, sign=1.0):
    shifted = logits.clone()
    shifted[:, class_index] += sign * shift
    return (shifted.argmax(1) == labels).float().mean().item()


def best_overall(logits, labels, class_index, shifts):  # written here, not the package's choose_bias_shift
    return max(sorted(shifts), key=lambda s: (accuracy_after(logits, labels, class_index, s), -s))


def test_the_checkers_bias_case_by_hand():
    # Three 3s trailing the 8 logit by 1.5, 1.8, 3.5; three 8s whose 3 logit trails by 3.0, 2.5, 2.2; a 0, 1, 2
    # with logit 5. Shift s: a 3 is right once s > its margin; an 8 stays right while s < its gap (on a tie
    # argmax takes class 3, the first); the 0, 1, 2 stay right while s < 5. Out of 9:
    # s = 0, 0.5, 1: 0 + 3 + 3 = 6; s = 2: 2 + 3 + 3 = 8 (the best); s = 3: 2 + 0 + 3 = 5; s = 4: 3 + 0 + 3 = 6;
    # s = 6: 3 + 0 + 0 = 3.
    logits, labels = _bias_case()
    shifts = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0]
    assert [round(9 * accuracy_after(logits, labels, 3, s)) for s in shifts] == [6, 6, 6, 8, 5, 6, 3]
    assert best_overall(logits, labels, 3, shifts) == 2.0


def test_bias_checker_accepts_reference_and_reports_unsolved():
    assert check_bias_shift_choice(best_overall).passed
    assert check_bias_shift_choice(unsolved).status == "not solved"


def test_bias_checker_states_the_hand_worked_accuracies_of_a_wrong_shift():
    # shift 0 gets 6 of 9 right, shift 2 gets 8 of 9 (test_the_checkers_bias_case_by_hand)
    feedback = check_bias_shift_choice(lambda logits, labels, class_index, shifts: shifts[0])
    assert not feedback.passed and "shift 0 gives validation accuracy 0.67, but 2 gives 0.89" in feedback.message


def test_bias_checker_rejects_the_position_of_the_best_shift():
    def argmax_position(logits, labels, class_index, shifts):
        accuracies = [accuracy_after(logits, labels, class_index, s) for s in shifts]
        return max(range(len(shifts)), key=lambda k: (accuracies[k], -shifts[k]))

    feedback = check_bias_shift_choice(argmax_position)
    assert not feedback.passed and "the position of the best shift" in feedback.message


def test_bias_checker_rejects_maximising_only_the_omitted_class_recall():
    def recall_only(logits, labels, class_index, shifts):
        mask = labels == class_index
        return max(shifts, key=lambda s: (accuracy_after(logits[mask], labels[mask], class_index, s), -s))

    feedback = check_bias_shift_choice(recall_only)
    assert not feedback.passed and "maximise the accuracy over all classes" in feedback.message


def test_bias_checker_rejects_subtracting_the_shift_and_returning_the_accuracy():
    def subtracting(logits, labels, class_index, shifts):
        return max(shifts, key=lambda s: (accuracy_after(logits, labels, class_index, s, sign=-1.0), -s))

    def returns_accuracy(logits, labels, class_index, shifts):
        return max(accuracy_after(logits, labels, class_index, s) for s in shifts)

    assert "not subtract" in check_bias_shift_choice(subtracting).message
    assert "not an accuracy" in check_bias_shift_choice(returns_accuracy).message


def test_bias_checker_rejects_picking_the_largest_on_ties():
    def largest_on_tie(logits, labels, class_index, shifts):
        return max(shifts, key=lambda s: (accuracy_after(logits, labels, class_index, s), s))

    feedback = check_bias_shift_choice(largest_on_tie)
    assert not feedback.passed and "smallest" in feedback.message


def test_an_experiment_that_is_no_function_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^omitted_class_run must be None or callable"):
        check_distillation_loss(lambda *args: torch.tensor(0.0), 0.9)
