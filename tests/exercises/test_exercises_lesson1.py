"""Lesson 1's checkers against answers written here from first principles (exp / sum and -Σ q ln q
in plain Python, checked first on values worked by hand), never against the package's temperature
module; each typical mistake gets feedback that names it."""

import math

import pytest
import torch

from fedkd_lessons.exercises import check_entropy, check_softmax_with_temperature, check_temperature_for_entropy


def unsolved(*args):
    raise NotImplementedError()


def softmax_by_hand(logits, temperature):
    """exp((z_i - max z) / T) / Σ_j exp((z_j - max z) / T), row by row in plain Python."""
    rows = []
    for row in logits.tolist():
        top = max(row)
        exps = [math.exp((z - top) / temperature) for z in row]
        rows.append([e / sum(exps) for e in exps])
    return torch.tensor(rows, dtype=logits.dtype)


def entropy_by_hand(probs):
    """-Σ_i q_i ln q_i per row in plain Python, with 0 ln 0 = 0."""
    return torch.tensor([-sum(q * math.log(q) for q in row if q > 0) for row in probs.tolist()], dtype=probs.dtype)


def test_the_answers_written_here_on_values_worked_by_hand():
    # logits (ln 3, 0): e^{ln 3} / (3 + 1) = 3/4 at T = 1; at T = 2 the logits are (ln 3 / 2, 0): √3 / (√3 + 1).
    logits = torch.tensor([[math.log(3), 0.0]], dtype=torch.float64)
    assert softmax_by_hand(logits, 1.0)[0].tolist() == pytest.approx([0.75, 0.25])
    assert softmax_by_hand(logits, 2.0)[0, 0].item() == pytest.approx(math.sqrt(3) / (math.sqrt(3) + 1))
    # 1e4 apart: e^{-2e4} underflows to 0, so (1, 0, 0) and not NaN.
    assert softmax_by_hand(torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float64), 1.0).tolist() == [[1.0, 0.0, 0.0]]
    # uniform over 4: ln 4; (1/2, 1/2, 0): ln 2 (0 ln 0 = 0); one-hot: 0.
    probs = torch.tensor([[0.25] * 4, [0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert entropy_by_hand(probs).tolist() == pytest.approx([math.log(4), math.log(2), 0.0])


def test_softmax_checker_accepts_an_answer_written_by_hand_and_reports_unsolved():
    feedback = check_softmax_with_temperature(softmax_by_hand)
    assert feedback.passed and "stable on logits of 1e4" in feedback.message
    feedback = check_softmax_with_temperature(unsolved)
    assert feedback.status == "not solved" and "Not solved yet" in repr(feedback)


def test_softmax_checker_rejects_naive_overflowing_formula():
    feedback = check_softmax_with_temperature(lambda z, t: torch.exp(z / t) / torch.exp(z / t).sum(-1, keepdim=True))
    assert not feedback.passed and "log-sum-exp" in feedback.message


def test_softmax_checker_rejects_forgotten_temperature():
    feedback = check_softmax_with_temperature(lambda z, t: softmax_by_hand(z, 1.0))
    assert not feedback.passed and "T = 0.5" in feedback.message and "Divide the logits by T" in feedback.message


def test_softmax_checker_rejects_multiplying_by_the_temperature():
    feedback = check_softmax_with_temperature(lambda z, t: softmax_by_hand(z * t * t, t))  # exp(z T) / Σ exp(z T)
    assert not feedback.passed and "T = 0.5" in feedback.message and "Divide the logits by T" in feedback.message


def test_softmax_checker_rejects_wrong_dimension_wrong_shape_and_a_non_tensor():
    feedback = check_softmax_with_temperature(lambda z, t: torch.softmax(z / t, dim=0))
    assert not feedback.passed and "normalise over the last dimension" in feedback.message
    feedback = check_softmax_with_temperature(lambda z, t: softmax_by_hand(z, t).max(dim=-1).values)
    assert not feedback.passed and "keep one probability per class" in feedback.message
    feedback = check_softmax_with_temperature(lambda z, t: softmax_by_hand(z, t).numpy())
    assert not feedback.passed and "should return a torch.Tensor" in feedback.message


def test_entropy_checker_accepts_answers_written_by_hand():
    assert check_entropy(entropy_by_hand).passed
    # a small epsilon in the log is a right answer too: on a one-hot row it gives -1e-6, not a wrong sign
    assert check_entropy(lambda q: -(q * torch.log(q + 1e-6)).sum(-1)).passed
    assert check_entropy(unsolved).status == "not solved"


def test_entropy_checker_rejects_naive_log_with_nan_on_one_hot():
    feedback = check_entropy(lambda q: -(q * q.log()).sum(-1))
    assert not feedback.passed and "0 * log 0" in feedback.message


def test_entropy_checker_names_log2_the_missing_minus_and_a_sum_over_the_wrong_dimension():
    feedback = check_entropy(lambda q: entropy_by_hand(q) / math.log(2))
    assert not feedback.passed and "natural log" in feedback.message
    feedback = check_entropy(lambda q: -entropy_by_hand(q))
    assert not feedback.passed and "MINUS the sum" in feedback.message
    feedback = check_entropy(lambda q: -torch.special.xlogy(q, q).sum(0))
    assert not feedback.passed and "sum over the classes" in feedback.message


def test_entropy_checker_rejects_a_mean_over_the_classes():
    feedback = check_entropy(lambda q: -torch.special.xlogy(q, q).mean(-1))
    assert not feedback.passed and "log 10 = 2.3026, got 0.2303" in feedback.message


def bisection(low=1e-3, high=1e3, towards_higher_entropy=True):
    """A bisection on log T with the softmax and entropy written here; ``towards_higher_entropy=False``
    moves the bracket the wrong way (a typical mistake)."""
    def search(logits, target):
        lo, hi = low, high
        for _ in range(60):
            middle = math.sqrt(lo * hi)
            too_low = float(entropy_by_hand(softmax_by_hand(logits.double().unsqueeze(0), middle))[0]) < target
            lo, hi = (middle, hi) if too_low == towards_higher_entropy else (lo, middle)
        return math.sqrt(lo * hi)
    return search


def test_bisection_written_here_on_a_two_class_case_worked_by_hand():
    # Two classes, logits (a, 0): q = (3/4, 1/4) exactly when a / T = ln 3, so T = a / ln 3.
    a = 2.0
    target = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert bisection()(torch.tensor([a, 0.0]), target) == pytest.approx(a / math.log(3), rel=1e-6)


def test_bisection_checker_accepts_the_bisection_and_reports_unsolved():
    feedback = check_temperature_for_entropy(bisection())
    assert feedback.passed and "finds the temperature" in feedback.message
    assert check_temperature_for_entropy(unsolved).status == "not solved"


def test_bisection_checker_names_a_search_that_moves_the_wrong_way_and_a_fixed_temperature():
    feedback = check_temperature_for_entropy(bisection(towards_higher_entropy=False))
    assert not feedback.passed and "Entropy rises with T" in feedback.message
    feedback = check_temperature_for_entropy(lambda logits, target: 1.0)
    assert not feedback.passed and "your T = 1 gives" in feedback.message and "Entropy rises with T" in feedback.message


def test_bisection_checker_rejects_a_temperature_that_is_not_one_positive_number():
    for answer in (lambda logits, target: -1.0, lambda logits, target: None, lambda logits, target: [1.0, 2.0]):
        feedback = check_temperature_for_entropy(answer)
        assert not feedback.passed and "return one positive temperature" in feedback.message


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


def test_digits_that_are_neither_a_mapping_nor_a_function_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^lesson_digits must be None or a Mapping or a Callable"):
        check_temperature_for_entropy(lambda logits, target: 1.0, [1.0, 2.0])
