"""Lesson 7's checkers: the reference answers pass, an unsolved stub is "not solved", and each
typical mistake gets its own hint."""

import torch
import torch.nn.functional as F

from fedkd_lessons.after_fedmd import entropy_reduction_average, fd_teachers
from fedkd_lessons.exercises import check_entropy_reduction, check_fd_teachers


def unsolved(*args):
    raise NotImplementedError()


def test_entropy_reduction_checker_accepts_a_hand_written_answer_and_reports_unsolved():
    assert check_entropy_reduction(lambda p, T: torch.softmax(p.mean(dim=0) / T, dim=-1)).passed
    assert check_entropy_reduction(entropy_reduction_average).passed
    assert check_entropy_reduction(unsolved).status == "not solved"


def test_entropy_reduction_checker_names_each_mistake():
    cases = [
        (lambda p, T: p.mean(dim=0), "plain average"),
        (lambda p, T: F.softmax(p.mean(dim=0), dim=-1), "forgot to divide it by T"),
        (lambda p, T: F.softmax(p / T, dim=-1).mean(dim=0), "average first, then sharpen"),
        (lambda p, T: F.softmax(p.mean(dim=0) * T, dim=-1), "divide by it"),
        (lambda p, T: F.softmax(p.mean(dim=1) / T, dim=-1), "dimension 0"),
        (lambda p, T: F.softmax(p.mean(dim=0) / 0.1, dim=-1), "Use the temperature you are given"),
        (lambda p, T: p.mean(dim=0).numpy(), "should return a torch.Tensor"),
    ]
    for answer, hint in cases:
        feedback = check_entropy_reduction(answer)
        assert not feedback.passed and hint in feedback.message, feedback.message


def test_fd_teachers_checker_accepts_a_hand_written_answer_and_reports_unsolved():
    def mine(tables, counts):
        holds = (counts > 0).float().unsqueeze(-1)
        total, number = (tables * holds).sum(0), holds.sum(0)
        return (total - tables * holds) / (number - holds).clamp(min=1)

    assert check_fd_teachers(mine).passed
    assert check_fd_teachers(lambda t, c: fd_teachers(t, c)[0]).passed
    assert check_fd_teachers(unsolved).status == "not solved"


def test_fd_teachers_checker_names_each_mistake():
    def with_self(tables, counts):
        holds = (counts > 0).float().unsqueeze(-1)
        return ((tables * holds).sum(0) / holds.sum(0)).expand_as(tables)

    cases = [
        (with_self, "leave party k's own mean out"),
        (lambda t, c: (t.sum(0, keepdim=True) - t) / (len(t) - 1), "average only over the holders"),
        (lambda t, c: t.mean(dim=0), "expected (4, 3, 5)"),
        (lambda t, c: t, "off by up to"),
    ]
    for answer, hint in cases:
        feedback = check_fd_teachers(answer)
        assert not feedback.passed and hint in feedback.message, feedback.message
