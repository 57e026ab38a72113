import copy

import numpy as np
import pytest
import torch

from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.exercises import check_distill_step, check_ewc_penalty, check_max_stable_lambda


def unsolved(*args):
    raise NotImplementedError()


# --- the EWC penalty ------------------------------------------------------------------------------

def reference_penalty(params, global_params, fisher, ewc_lambda):
    return ewc_lambda / 2 * sum((fisher[n] * (params[n] - global_params[n]) ** 2).sum() for n in params)


def test_ewc_penalty_checker_accepts_reference_and_reports_unsolved():
    assert check_ewc_penalty(reference_penalty).passed
    assert check_ewc_penalty(unsolved).status == "not solved"


def test_ewc_penalty_checker_rejects_a_missing_half():
    feedback = check_ewc_penalty(lambda p, g, f, lam: 2 * reference_penalty(p, g, f, lam))
    assert not feedback.passed and "lambda / 2" in feedback.message


def test_ewc_penalty_checker_rejects_a_missing_fisher():
    feedback = check_ewc_penalty(lambda p, g, f, lam: reference_penalty(p, g, {n: torch.ones_like(v) for n, v in f.items()}, lam))
    assert not feedback.passed and "Fisher is missing" in feedback.message


def test_ewc_penalty_checker_rejects_an_unsquared_change():
    feedback = check_ewc_penalty(lambda p, g, f, lam: lam / 2 * sum((f[n] * (p[n] - g[n]).abs()).sum() for n in p))
    assert not feedback.passed and "square" in feedback.message


def test_ewc_penalty_checker_rejects_a_detached_float():
    feedback = check_ewc_penalty(lambda p, g, f, lam: torch.tensor(reference_penalty(p, g, f, lam).detach().item()))
    assert not feedback.passed and "no gradient" in feedback.message


def test_ewc_penalty_checker_rejects_only_the_first_tensor():
    first = lambda p, g, f, lam: lam / 2 * (f[next(iter(p))] * (p[next(iter(p))] - g[next(iter(p))]) ** 2).sum()
    feedback = check_ewc_penalty(first)
    assert not feedback.passed and "EVERY tensor" in feedback.message


# --- one distillation adaptation step ------------------------------------------------------------

def reference_step(student, teacher, images, labels, temperature, alpha, lr, t_squared=True):
    """One step written out here: alpha T^2 KL(softmax(v / T) || softmax(z / T)) + (1 - alpha) CE(z, y)
    (``t_squared=False``: the T^2 forgotten)."""
    with torch.no_grad():
        teacher_logits = teacher(images)
    logits = student(images)
    soft = torch.softmax(teacher_logits / temperature, dim=1)
    kl = (soft * (torch.log(soft) - torch.log_softmax(logits / temperature, dim=1))).sum(dim=1).mean()
    loss = alpha * (temperature ** 2 if t_squared else 1.0) * kl
    if labels is not None:
        loss = loss + (1 - alpha) * -torch.log_softmax(logits, dim=1)[torch.arange(len(labels)), labels].mean()
    student.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in student.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


def test_distill_step_checker_accepts_reference_and_reports_unsolved():
    assert check_distill_step(reference_step).passed
    assert check_distill_step(unsolved).status == "not solved"


def test_the_hand_worked_distill_step_matches_the_package_loss():
    # the checker's case on paper (exercises/lesson4_adaptation.py): loss 0.41198 for logits [0, 0] and [ln 3, 0]
    loss = distillation_loss(torch.zeros(1, 2), torch.tensor([[np.log(3.0), 0.0]]), torch.tensor([0]), temperature=1.0,
                             alpha=0.5)
    assert float(loss) == pytest.approx(0.5 * (0.75 * np.log(1.5) + 0.25 * np.log(0.5)) + 0.5 * np.log(2.0))


def test_distill_step_checker_rejects_a_step_without_the_temperature_squared():
    def no_t_squared(student, teacher, images, labels, temperature, alpha, lr):
        return reference_step(student, teacher, images, labels, temperature, alpha, lr, t_squared=False)
    feedback = check_distill_step(no_t_squared)
    assert not feedback.passed and "T = 6" in feedback.message and "multiply the soft term by T²" in feedback.message


def test_distill_step_checker_rejects_returning_the_loss_after_the_step_or_a_tensor_with_a_gradient():
    def loss_after(student, teacher, images, labels, temperature, alpha, lr):
        reference_step(student, teacher, images, labels, temperature, alpha, lr)
        probe = copy.deepcopy(student)
        return reference_step(probe, teacher, images, labels, temperature, alpha, 0.0)

    feedback = check_distill_step(loss_after)
    assert not feedback.passed and "0.41198" in feedback.message
    # the hand-worked case tells it apart only by value; the seeded cases name it
    def loss_after_from_the_second_case(student, teacher, images, labels, temperature, alpha, lr):
        if temperature == 1.0:
            return reference_step(student, teacher, images, labels, temperature, alpha, lr)
        return loss_after(student, teacher, images, labels, temperature, alpha, lr)

    feedback = check_distill_step(loss_after_from_the_second_case)
    assert not feedback.passed and "that is the loss after the step" in feedback.message


def test_distill_step_checker_rejects_gradient_ascent():
    def ascent(student, teacher, images, labels, temperature, alpha, lr):
        return reference_step(student, teacher, images, labels, temperature, alpha, -lr)
    feedback = check_distill_step(ascent)
    assert not feedback.passed and "UP the gradient" in feedback.message


def test_distill_step_checker_rejects_a_teacher_that_trains_too():
    def both(student, teacher, images, labels, temperature, alpha, lr):
        loss = distillation_loss(student(images), teacher(images), labels, temperature=temperature, alpha=alpha)
        params = list(student.parameters()) + list(teacher.parameters())
        for p in params:
            p.grad = None
        # a learner who forgets the teacher is frozen: its output is treated as trainable, and it steps too
        loss = loss + 0.0 * sum(p.sum() for p in teacher.parameters()) + (teacher(images) ** 2).mean()
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        return loss.item()
    feedback = check_distill_step(both)
    assert not feedback.passed and "teacher" in feedback.message


def test_distill_step_checker_rejects_accumulated_gradients():
    def no_zero_grad(student, teacher, images, labels, temperature, alpha, lr):
        with torch.no_grad():
            teacher_logits = teacher(images)
        loss = distillation_loss(student(images), teacher_logits, labels, temperature=temperature, alpha=alpha)
        loss.backward()
        with torch.no_grad():
            for parameter in student.parameters():
                parameter -= lr * parameter.grad
        return loss.item()
    feedback = check_distill_step(no_zero_grad)
    assert not feedback.passed and "old gradients" in feedback.message


def test_distill_step_checker_rejects_a_step_that_ignores_the_labels():
    def soft_only(student, teacher, images, labels, temperature, alpha, lr):
        return reference_step(student, teacher, images, None, temperature, 1.0, lr)
    feedback = check_distill_step(soft_only)
    assert not feedback.passed and "1/2 (3/4 ln 3/2 + 1/4 ln 1/2) + 1/2 ln 2 = 0.41198" in feedback.message


# --- the largest stable lambda --------------------------------------------------------------------

def reference_lambda(fisher, lr, momentum):
    return 2 * (1 + momentum) / (lr * max(float(v.max()) for v in fisher.values()))


def test_max_stable_lambda_checker_accepts_reference_and_reports_unsolved():
    assert check_max_stable_lambda(reference_lambda).passed
    assert check_max_stable_lambda(unsolved).status == "not solved"


def test_max_stable_lambda_checker_rejects_forgotten_momentum():
    feedback = check_max_stable_lambda(lambda f, lr, m: reference_lambda(f, lr, 0.0))
    assert not feedback.passed and "momentum" in feedback.message


def test_max_stable_lambda_checker_rejects_the_mean_fisher():
    def mean_fisher(fisher, lr, momentum):
        values = torch.cat([v.flatten() for v in fisher.values()])
        return 2 * (1 + momentum) / (lr * float(values.mean()))
    feedback = check_max_stable_lambda(mean_fisher)
    assert not feedback.passed and "LARGEST" in feedback.message


def test_max_stable_lambda_checker_rejects_a_limit_of_one():
    feedback = check_max_stable_lambda(lambda f, lr, m: reference_lambda(f, lr, m) / 2)
    assert not feedback.passed and "500" in feedback.message


# --- the early-stopped adaptation loop ---------------------------------------------------------------

from fedkd_lessons.exercises.lesson4_adaptation import check_early_stopping  # noqa: E402


def early_stopping(model, train_one_epoch, validation_accuracy, max_epochs, *, strict=True, copy_state=True,
                   restore=True, first_epoch=0):
    """A correct loop by default; each keyword switches on one mistake a learner makes."""
    snapshot = (lambda: copy.deepcopy(model.state_dict())) if copy_state else model.state_dict
    best_epoch, best_state = 0, snapshot()
    best_score = validation_accuracy(model) if first_epoch == 0 else -1.0
    for epoch in range(1, max_epochs + 1):
        train_one_epoch(model)
        score = validation_accuracy(model)
        if score > best_score or (not strict and score == best_score):
            best_score, best_epoch, best_state = score, epoch, snapshot()
    if restore:
        model.load_state_dict(best_state)
    return best_epoch


def test_early_stopping_checker_accepts_the_reference_and_reports_unsolved():
    assert check_early_stopping(early_stopping).passed
    assert check_early_stopping(unsolved).status == "not solved"


def test_early_stopping_checker_names_each_mistake():
    cases = {
        "among ties keep the earliest": lambda *a: early_stopping(*a, strict=False),
        "a bare state_dict() follows the live weights": lambda *a: early_stopping(*a, copy_state=False),
        "LAST epoch": lambda *a: early_stopping(*a, restore=False),
        "score the model before any training": lambda *a: early_stopping(*a, first_epoch=1),
    }
    for hint, solution in cases.items():
        feedback = check_early_stopping(solution)
        assert not feedback.passed and hint in feedback.message, (hint, feedback.message)


def test_early_stopping_checker_rejects_a_loop_that_always_returns_the_global_model():
    def never_trains(model, train_one_epoch, validation_accuracy, max_epochs):
        validation_accuracy(model)
        for _ in range(max_epochs):
            train_one_epoch(model)
            validation_accuracy(model)
        return 0

    feedback = check_early_stopping(never_trains)
    assert not feedback.passed and "the scores peak at 1.0 after 5 epochs: return 5" in feedback.message
