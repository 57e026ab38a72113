"""Lesson 6's checkers against answers written here and checked first on values worked by hand (a
mean over the replies, the round policy as the lesson states it, a median by sorting in plain
Python), never against the package's RoundPolicy or numpy's median that the checkers use; each
typical mistake gets feedback that names it, a stub is "not solved"."""

import torch

from fedkd_lessons.exercises import check_aggregate_replies, check_close_round
from fedkd_lessons.exercises.lesson6_flower import check_median_consensus


def stub(*args):
    raise NotImplementedError()


# --- the consensus over the replies -------------------------------------------------------------

def mean_of_replies(replies):
    """The mean over the parties whose logits arrived, one by one."""
    arrived = [logits for logits in replies.values() if logits is not None]
    total = torch.zeros_like(arrived[0])
    for logits in arrived:
        total = total + logits
    return total / len(arrived)


def test_mean_of_replies_by_hand():
    # replies (2, 4) and (6, 0), party 1 silent: (4, 2), not (8/3, 4/3).
    replies = {0: torch.tensor([[2.0, 4.0]]), 1: None, 2: torch.tensor([[6.0, 0.0]])}
    assert mean_of_replies(replies).tolist() == [[4.0, 2.0]]


def test_aggregate_answer_written_here_passes_and_a_stub_is_not_solved():
    feedback = check_aggregate_replies(mean_of_replies)
    assert feedback.passed and "averages only the parties that replied" in feedback.message
    assert check_aggregate_replies(stub).status == "not solved"


def test_aggregate_dividing_by_all_addressed_parties_fails():
    def divide_by_all(replies):
        present = [logits for logits in replies.values() if logits is not None]
        return torch.stack(present).sum(dim=0) / len(replies)

    feedback = check_aggregate_replies(divide_by_all)
    assert feedback.status == "wrong" and "divide by the number of parties that replied (2)" in feedback.message


def test_aggregate_silent_party_counted_as_zero_fails():
    def silent_as_zero(replies):
        shape = next(z for z in replies.values() if z is not None).shape
        return torch.stack([torch.zeros(shape) if z is None else z for z in replies.values()]).mean(dim=0)

    feedback = check_aggregate_replies(silent_as_zero)
    assert feedback.status == "wrong" and "divide by the number of parties that replied (2)" in feedback.message


def test_aggregate_sum_instead_of_mean_fails():
    feedback = check_aggregate_replies(lambda replies: torch.stack([z for z in replies.values() if z is not None]).sum(0))
    assert feedback.status == "wrong" and "you summed the logits" in feedback.message


def test_aggregate_of_probabilities_fails():
    def softmax_mean(replies):
        return torch.stack([z.softmax(dim=-1) for z in replies.values() if z is not None]).mean(dim=0)

    feedback = check_aggregate_replies(softmax_mean)
    assert feedback.status == "wrong" and "without a softmax" in feedback.message


def test_aggregate_crashing_on_a_silent_party_fails():
    feedback = check_aggregate_replies(lambda replies: torch.stack(list(replies.values())).mean(dim=0))
    assert feedback.status == "wrong" and "raised TypeError" in feedback.message


def test_aggregate_that_keeps_only_the_first_reply_fails():
    feedback = check_aggregate_replies(lambda replies: next(z for z in replies.values() if z is not None))
    assert feedback.status == "wrong" and "three parties that all replied" in feedback.message


# --- when to close a round ----------------------------------------------------------------------

def close_as_the_lesson_says(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
    """Close when everybody replied, or `grace` seconds after the minimum came; at the timeout close
    with the minimum or fail without it; else wait."""
    if replied >= addressed:
        return "close"
    if replied >= min_replies and since_minimum is not None and since_minimum >= grace:
        return "close"
    if elapsed >= timeout:
        return "close" if replied >= min_replies else "fail"
    return "wait"


def test_close_as_the_lesson_says_on_cases_worked_by_hand():
    # (addressed, replied, elapsed, since_minimum, min_replies, timeout, grace) -> decision
    cases = {
        (3, 3, 0.5, 0.25, 2, 60.0, 5.0): "close",  # everybody replied
        (4, 2, 9.0, 4.5, 2, 60.0, 5.0): "wait",  # the minimum came 4.5 s ago, grace is 5 s
        (4, 2, 30.0, 15.0, 2, 60.0, 5.0): "close",  # the grace is over
        (4, 1, 30.0, None, 2, 60.0, 5.0): "wait",  # below the minimum, before the timeout
        (4, 1, 61.0, None, 2, 60.0, 5.0): "fail",  # below the minimum at the timeout
        (4, 3, 30.0, 15.0, 3, 30.0, 20.0): "close",  # the minimum at the timeout, grace not over
        (3, 0, 0.5, None, 1, 10.0, 2.0): "wait",
    }
    assert {case: close_as_the_lesson_says(*case) for case in cases} == cases


def test_close_round_answer_written_here_passes_and_a_stub_is_not_solved():
    feedback = check_close_round(close_as_the_lesson_says)
    assert feedback.passed and "waits for stragglers" in feedback.message
    assert check_close_round(stub).status == "not solved"


def test_close_round_without_grace_fails():
    def no_grace(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        return "close" if replied >= min_replies or replied == addressed else ("fail" if elapsed >= timeout else "wait")

    feedback = check_close_round(no_grace)
    assert feedback.status == "wrong" and "give a straggler `grace` seconds" in feedback.message


def test_close_round_that_waits_out_the_grace_period_fails():
    def until_timeout(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        return close_as_the_lesson_says(addressed, replied, elapsed, None, min_replies, timeout, grace)

    feedback = check_close_round(until_timeout)
    assert feedback.status == "wrong" and "the grace period after the minimum is over" in feedback.message


def test_close_round_that_never_fails_fails():
    def never_fail(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        decision = close_as_the_lesson_says(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace)
        return "close" if decision == "fail" else decision

    feedback = check_close_round(never_fail)
    assert feedback.status == "wrong" and "the round fails" in feedback.message


def test_close_round_that_waits_when_everybody_replied_fails():
    def waits_for_grace(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        return close_as_the_lesson_says(addressed + 1, replied, elapsed, since_minimum, min_replies, timeout, grace)

    feedback = check_close_round(waits_for_grace)
    assert feedback.status == "wrong" and "everybody replied, so close the round" in feedback.message


def test_close_round_returning_something_else_fails():
    feedback = check_close_round(lambda *args: close_as_the_lesson_says(*args) == "close")
    assert feedback.status == "wrong" and "return one of 'close', 'wait', 'fail'" in feedback.message


# --- the median consensus -----------------------------------------------------------------------

def median_by_sorting(logits):
    """Each coordinate's values over the parties sorted in plain Python: the middle one, or the mean
    of the two middle ones for an even number of parties."""
    m, samples, classes = logits.shape
    result = torch.empty(samples, classes, dtype=logits.dtype)
    for s in range(samples):
        for c in range(classes):
            values = sorted(float(logits[k, s, c]) for k in range(m))
            result[s, c] = (values[(m - 1) // 2] + values[m // 2]) / 2
    return result


def test_median_by_sorting_by_hand():
    # three parties (1, 5, 3) -> 3; four parties (1, 4, 2, 10) -> (2 + 4) / 2 = 3, not the lower middle 2.
    assert median_by_sorting(torch.tensor([1.0, 5.0, 3.0]).view(3, 1, 1)).item() == 3.0
    assert median_by_sorting(torch.tensor([1.0, 4.0, 2.0, 10.0]).view(4, 1, 1)).item() == 3.0


def test_median_answer_written_here_passes_and_a_stub_is_not_solved():
    feedback = check_median_consensus(median_by_sorting)
    assert feedback.passed and "ignores one loud party" in feedback.message
    assert check_median_consensus(stub).status == "not solved"


def test_median_that_is_the_mean_fails():
    feedback = check_median_consensus(lambda logits: logits.mean(dim=0))
    assert feedback.status == "wrong" and "that is the mean" in feedback.message


def test_median_with_torchs_lower_middle_fails():
    feedback = check_median_consensus(lambda logits: logits.median(dim=0).values)
    assert feedback.status == "wrong" and "lower of the two middle values" in feedback.message


def test_median_with_the_upper_middle_fails():
    feedback = check_median_consensus(lambda logits: logits.sort(dim=0).values[len(logits) // 2])
    assert feedback.status == "wrong" and "four parties" in feedback.message and "average the two middle values" in feedback.message


def test_median_over_the_classes_fails():
    feedback = check_median_consensus(lambda logits: logits.quantile(0.5, dim=-1))
    assert feedback.status == "wrong" and "five parties: the result has shape (5, 4), expected (4, 16)" in feedback.message
    assert "(dimension 0)" in feedback.message
