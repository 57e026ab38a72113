import math

import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.exercises import check_bias_shift_choice, check_distillation_loss, check_soft_gradient


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
    assert "raw logits" in check_distillation_loss(
        lambda s, t, y, T, a: a * T**2 * soft_kl(s, t, T) + (1 - a) * F.cross_entropy(s / T, y)).message
    assert not check_distillation_loss(
        lambda s, t, y, T, a: (1 - a) * T**2 * soft_kl(s, t, T) + a * F.cross_entropy(s, y)).passed


def test_loss_checker_rejects_naive_softmax_then_log_on_large_logits():
    def naive(s, t, y, T, a):
        q, p = torch.softmax(s / T, dim=1), torch.softmax(t / T, dim=1)
        kl = (p * (p.log() - q.log())).sum(1).mean()
        return a * T**2 * kl + (1 - a) * F.cross_entropy(s, y)

    feedback = check_distillation_loss(naive)
    assert not feedback.passed and "log_softmax" in feedback.message


def closed_form(z, v, T):
    return (torch.softmax(z / T, dim=0) - torch.softmax(v / T, dim=0)) / T


def test_gradient_checker_accepts_eq2_and_reports_unsolved():
    assert check_soft_gradient(closed_form).passed
    assert check_soft_gradient(unsolved).status == "not solved"


def test_gradient_checker_rejects_missing_one_over_t_flipped_sign_and_t_squared_version():
    assert "forgot the 1/T" in check_soft_gradient(lambda z, v, T: closed_form(z, v, T) * T).message
    assert "sign is flipped" in check_soft_gradient(lambda z, v, T: -closed_form(z, v, T)).message
    assert "gradient of T²·C" in check_soft_gradient(lambda z, v, T: closed_form(z, v, T) * T**2).message


def accuracy_after(logits, labels, class_index, shift, sign=1.0):
    shifted = logits.clone()
    shifted[:, class_index] += sign * shift
    return (shifted.argmax(1) == labels).float().mean().item()


def test_bias_checker_accepts_reference_and_reports_unsolved():
    def best_overall(logits, labels, class_index, shifts):  # written here, not the package's choose_bias_shift
        return max(sorted(shifts), key=lambda s: (accuracy_after(logits, labels, class_index, s), -s))

    assert check_bias_shift_choice(best_overall).passed
    assert check_bias_shift_choice(unsolved).status == "not solved"


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
