"""Lesson 6's checkers: the reference answers pass, plausible mistakes get a specific hint, stubs are "not solved"."""

import numpy as np
import torch

from fedkd_lessons.exercises import check_aggregate_replies, check_close_round
from fedkd_lessons.exercises.lesson6_flower import check_median_consensus


def reference_aggregate(replies):
    present = [logits for logits in replies.values() if logits is not None]
    return torch.stack(present).mean(dim=0)


def reference_close(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
    if replied >= addressed:
        return "close"
    if replied >= min_replies and since_minimum is not None and since_minimum >= grace:
        return "close"
    if elapsed >= timeout:
        return "close" if replied >= min_replies else "fail"
    return "wait"


def stub(*args):
    raise NotImplementedError()


def test_aggregate_reference_passes():
    assert check_aggregate_replies(reference_aggregate).passed


def test_aggregate_dividing_by_all_addressed_parties_fails():
    def divide_by_all(replies):
        present = [logits for logits in replies.values() if logits is not None]
        return torch.stack(present).sum(dim=0) / len(replies)

    feedback = check_aggregate_replies(divide_by_all)
    assert feedback.status == "wrong" and "divide by the number of parties that replied" in feedback.message


def test_aggregate_of_probabilities_fails():
    def softmax_mean(replies):
        return torch.stack([z.softmax(dim=-1) for z in replies.values() if z is not None]).mean(dim=0)

    feedback = check_aggregate_replies(softmax_mean)
    assert feedback.status == "wrong" and "without a softmax" in feedback.message


def test_aggregate_crashing_on_a_silent_party_fails():
    feedback = check_aggregate_replies(lambda replies: torch.stack(list(replies.values())).mean(dim=0))
    assert feedback.status == "wrong" and "raised TypeError" in feedback.message


def test_aggregate_stub_is_not_solved():
    assert check_aggregate_replies(stub).status == "not solved"


def test_close_round_reference_passes():
    assert check_close_round(reference_close).passed


def test_close_round_without_grace_fails():
    def no_grace(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        return "close" if replied >= min_replies or replied == addressed else ("fail" if elapsed >= timeout else "wait")

    feedback = check_close_round(no_grace)
    assert feedback.status == "wrong" and "grace" in feedback.message


def test_close_round_that_never_fails_fails():
    def never_fail(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace):
        decision = reference_close(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace)
        return "close" if decision == "fail" else decision

    feedback = check_close_round(never_fail)
    assert feedback.status == "wrong" and "the round fails" in feedback.message


def test_close_round_stub_is_not_solved():
    assert check_close_round(stub).status == "not solved"


def reference_median(logits):
    return torch.from_numpy(np.median(logits.numpy(), axis=0))


def test_median_reference_passes():
    assert check_median_consensus(reference_median).passed


def test_median_that_is_the_mean_fails():
    feedback = check_median_consensus(lambda logits: logits.mean(dim=0))
    assert feedback.status == "wrong" and "that is the mean" in feedback.message


def test_median_with_torchs_lower_middle_fails():
    feedback = check_median_consensus(lambda logits: logits.median(dim=0).values)
    assert feedback.status == "wrong" and "lower of the two middle values" in feedback.message


def test_median_over_the_classes_fails():
    feedback = check_median_consensus(lambda logits: logits.median(dim=-1, keepdim=True).values.expand_as(logits[0]))
    assert feedback.status == "wrong"


def test_median_stub_is_not_solved():
    assert check_median_consensus(stub).status == "not solved"
