import math

import pytest
import torch

from fedkd_lessons.exercises import check_entropy, check_softmax_with_temperature, check_temperature_for_entropy


def unsolved(*args):
    raise NotImplementedError()


def test_softmax_checker_accepts_reference_and_reports_unsolved():
    def stable(z, t):  # written here with torch's own softmax, not the package's
        return torch.softmax((z - z.max(dim=-1, keepdim=True).values) / t, dim=-1)

    assert check_softmax_with_temperature(stable).passed
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
    assert check_entropy(lambda q: -torch.special.xlogy(q, q).sum(-1)).passed


def test_entropy_checker_rejects_naive_log_with_nan_on_one_hot():
    feedback = check_entropy(lambda q: -(q * q.log()).sum(-1))
    assert not feedback.passed and "0 * log 0" in feedback.message


def test_entropy_checker_rejects_log2_and_missing_minus():
    assert "natural log" in check_entropy(lambda q: -torch.special.xlogy(q, q).sum(-1) / math.log(2)).message
    assert not check_entropy(lambda q: torch.special.xlogy(q, q).sum(-1)).passed


def bisection(low=1e-3, high=1e3):
    """A bisection on log T written with torch's own softmax, independent of the package."""
    def search(logits, target):
        lo, hi = low, high
        for _ in range(60):
            middle = math.sqrt(lo * hi)
            probs = torch.softmax(logits / middle, dim=-1)
            lo, hi = (middle, hi) if -torch.special.xlogy(probs, probs).sum() < target else (lo, middle)
        return math.sqrt(lo * hi)
    return search


def test_bisection_checker():
    assert check_temperature_for_entropy(bisection()).passed
    assert not check_temperature_for_entropy(lambda logits, target: 1.0).passed
    assert "positive temperature" in check_temperature_for_entropy(lambda logits, target: -1.0).message


def test_bisection_checker_hand_worked_two_class_case():
    # Two classes, logits (a, 0): q = (3/4, 1/4) exactly when a / T = ln 3, so T = a / ln 3.
    a = 2.0
    target = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert bisection()(torch.tensor([a, 0.0]), target) == pytest.approx(a / math.log(3), rel=1e-6)


def test_bisection_experiment_names_the_digit_that_needs_the_higher_temperature():
    # By hand: the "confident" digit (one logit 12 above nine zeros) has H(T = 1) = 0.0007 nats, far below
    # log(10)/2 = 1.15, so it needs T > 1; the "ambiguous" one (logits 0.1 apart) is almost uniform at
    # T = 1 (H = 2.30), so it needs T < 1.
    confident, ambiguous = torch.zeros(10), torch.zeros(10)
    confident[0], ambiguous[0] = 12.0, 0.1
    feedback = check_temperature_for_entropy(bisection(), lambda: {"confident": confident, "ambiguous": ambiguous})
    assert feedback.passed and "the confident digit needs a higher temperature than the ambiguous digit" in feedback.message


def test_bisection_experiment_catches_a_bracket_too_narrow_for_the_lessons_digits():
    # Searching only 0.1 < T < 10 passes the checker's own logits but cannot soften a digit whose
    # top logit leads by 40 to half the maximal entropy (that takes T of about 12).
    confident = torch.zeros(10)
    confident[0] = 40.0
    assert check_temperature_for_entropy(bisection(0.1, 10.0)).passed
    feedback = check_temperature_for_entropy(bisection(0.1, 10.0), {"confident": confident})
    assert not feedback.passed and "search bracket" in feedback.message
