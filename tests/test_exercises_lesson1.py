import math

import torch

from fedkd_lessons import entropy, softmax_with_temperature
from fedkd_lessons.exercises import check_entropy, check_softmax_with_temperature, check_temperature_for_entropy


def unsolved(*args):
    raise NotImplementedError()


def test_softmax_checker_accepts_reference_and_reports_unsolved():
    assert check_softmax_with_temperature(softmax_with_temperature).passed
    feedback = check_softmax_with_temperature(unsolved)
    assert feedback.status == "not solved" and "Not solved yet" in repr(feedback)


def test_softmax_checker_rejects_naive_overflowing_formula():
    feedback = check_softmax_with_temperature(lambda z, t: torch.exp(z / t) / torch.exp(z / t).sum(-1, keepdim=True))
    assert not feedback.passed and "log-sum-exp" in feedback.message


def test_softmax_checker_rejects_forgotten_temperature():
    feedback = check_softmax_with_temperature(lambda z, t: torch.softmax(z, dim=-1))
    assert not feedback.passed and "T = 0.5" in feedback.message


def test_softmax_checker_rejects_wrong_dimension():
    feedback = check_softmax_with_temperature(lambda z, t: torch.softmax(z / t, dim=0))
    assert not feedback.passed and "sum to 1" in feedback.message


def test_entropy_checker_accepts_reference():
    assert check_entropy(entropy).passed


def test_entropy_checker_rejects_naive_log_with_nan_on_one_hot():
    feedback = check_entropy(lambda q: -(q * q.log()).sum(-1))
    assert not feedback.passed and "0 * log 0" in feedback.message


def test_entropy_checker_rejects_log2_and_missing_minus():
    assert "natural log" in check_entropy(lambda q: -torch.special.xlogy(q, q).sum(-1) / math.log(2)).message
    assert not check_entropy(lambda q: torch.special.xlogy(q, q).sum(-1)).passed


def test_bisection_checker():
    def reference(logits, target):
        low, high = 1e-3, 1e3
        for _ in range(60):
            middle = math.sqrt(low * high)
            low, high = (middle, high) if entropy(softmax_with_temperature(logits, middle)) < target else (low, middle)
        return middle

    assert check_temperature_for_entropy(reference).passed
    assert not check_temperature_for_entropy(lambda logits, target: 1.0).passed
    assert "positive temperature" in check_temperature_for_entropy(lambda logits, target: -1.0).message


def test_a_crashing_answer_gets_a_sentence_not_a_traceback():
    feedback = check_entropy(lambda q: q.nonexistent())
    assert feedback.status == "wrong" and "AttributeError" in feedback.message
