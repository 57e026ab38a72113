"""Checkers for lesson 6's exercises: the server's consensus over the parties that replied, when
to close a round that is missing replies, and a median consensus that one loud party cannot move."""

import itertools

import numpy as np
import torch

from fedkd_lessons.flower.app.protocol import RoundPolicy
from fedkd_lessons.engine.validation import Callable, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


@checked_arguments(aggregate_fn=Callable())
@checker("Your server averages only the parties that replied, so a silent party neither counts nor drags the mean to zero.")
def check_aggregate_replies(aggregate_fn) -> None:
    """Lesson 6: ``aggregate_fn({party_id: logits (S, C) or None}) -> (S, C)``, the mean over the
    parties whose logits arrived (``None``: the party did not reply this round)."""
    generator = torch.Generator().manual_seed(6)
    a, b, c = (torch.randn(5, 16, generator=generator) * 3 for _ in range(3))
    got = as_tensor_answer(aggregate_fn({0: a, 1: b, 2: c}), "aggregate_fn(three replies)")
    if torch.allclose(got.sum(dim=-1), torch.ones(5), atol=1e-4):
        raise Wrong("your rows sum to 1: the server averages the raw logits, without a softmax.")
    if got.shape == (5, 16) and torch.allclose(got, a + b + c, atol=1e-4):
        raise Wrong("you summed the logits; divide by the number of parties that replied (the mean).")
    assert_close_answer(got, (a + b + c) / 3, "three parties that all replied", "Average the logits over the parties.")
    got = as_tensor_answer(aggregate_fn({0: a, 1: None, 2: c}), "aggregate_fn(one silent party)")
    if got.shape == (5, 16) and torch.allclose(got, (a + c) / 3, atol=1e-5):
        raise Wrong("with party 1 silent you divided by 3: divide by the number of parties that replied (2).")
    assert_close_answer(got, (a + c) / 2, "party 1 silent", "Leave out the parties whose value is None.")
    got = as_tensor_answer(aggregate_fn({2: c, 0: a}), "aggregate_fn(replies in another order)")
    assert_close_answer(got, (a + c) / 2, "replies listed in another order", "The mean does not depend on the order.")
    got = as_tensor_answer(aggregate_fn({0: None, 1: b, 2: None}), "aggregate_fn(a single reply)")
    assert_close_answer(got, b, "a single reply", "With one reply the consensus is that party's logits.")


@checked_arguments(close_fn=Callable())
@checker("Your server waits for stragglers, but not for ever, and gives up when too few parties answer.")
def check_close_round(close_fn) -> None:
    """Lesson 6: ``close_fn(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace)``
    returns ``"close"``, ``"wait"`` or ``"fail"``, as :class:`RoundPolicy.decide` does."""
    settings = [(2, 60.0, 5.0), (3, 30.0, 10.0), (1, 10.0, 2.0)]
    for (min_replies, timeout, grace), addressed, replied, elapsed in itertools.product(
            settings, (3, 4), (0, 1, 2, 3, 4), (0.5, 4.0, 9.0, 30.0, 61.0)):
        if replied > addressed:
            continue
        since_minimum = None if replied < min_replies else elapsed / 2  # the minimum came half-way
        expected = RoundPolicy(min_replies, timeout, grace).decide(addressed, replied, elapsed, since_minimum)
        got = close_fn(addressed, replied, elapsed, since_minimum, min_replies, timeout, grace)
        if got == expected:
            continue
        case = (f"with {replied} of {addressed} replies after {elapsed:g} s ({'-' if since_minimum is None else f'{since_minimum:g} s'} "
                f"since the minimum), min_replies={min_replies}, timeout={timeout:g} s, grace={grace:g} s")
        if got not in ("close", "wait", "fail"):
            raise Wrong(f"{case} you returned {got!r}; return one of 'close', 'wait', 'fail'.")
        if expected == "wait" and got == "close" and replied >= min_replies:
            raise Wrong(f"{case} you close at once: give a straggler `grace` seconds once the minimum is reached.")
        if expected == "fail":
            raise Wrong(f"{case} you return {got!r}, but the time is up with too few replies: the round fails.")
        if expected == "close" and replied == addressed:
            raise Wrong(f"{case} you return {got!r}: everybody replied, so close the round.")
        if expected == "close" and got == "wait" and since_minimum is not None and since_minimum >= grace:
            raise Wrong(f"{case} you return 'wait', but the grace period after the minimum is over: close the round "
                        "with the replies that came.")
        raise Wrong(f"{case} you return {got!r}, expected {expected!r}.")


@checked_arguments(median_fn=Callable())
@checker("Your median ignores one loud party and, with an even number of parties, takes the mean of the two middle values.")
def check_median_consensus(median_fn) -> None:
    """Lesson 6: ``median_fn(logits (m, S, C)) -> (S, C)``, the coordinate-wise median over the
    ``m`` parties (for even ``m`` the mean of the two middle values, as ``numpy.median``)."""
    generator = torch.Generator().manual_seed(7)
    odd = torch.randn(5, 4, 16, generator=generator)
    got = as_tensor_answer(median_fn(odd.clone()), "median_fn(five parties)")
    if got.shape == (4, 16) and torch.allclose(got, odd.mean(dim=0), atol=1e-5):
        raise Wrong("that is the mean: sort each coordinate's values over the parties and take the middle one.")
    assert_close_answer(got, torch.from_numpy(np.median(odd.numpy(), axis=0)), "five parties",
                        "Take the median over the parties (dimension 0), coordinate by coordinate.")
    even = torch.randn(4, 3, 16, generator=generator)
    got = as_tensor_answer(median_fn(even.clone()), "median_fn(four parties)")
    if got.shape == (3, 16) and torch.allclose(got, even.median(dim=0).values, atol=1e-6):
        raise Wrong("with four parties you returned the lower of the two middle values (torch.median does): "
                    "average the 2nd and 3rd smallest instead.")
    assert_close_answer(got, torch.from_numpy(np.median(even.numpy(), axis=0)), "four parties",
                        "With an even number of parties, average the two middle values.")
    loud = odd.clone()
    loud[0] = -1000 * loud[0]
    got = as_tensor_answer(median_fn(loud), "median_fn(one loud party)")
    assert_close_answer(got, torch.from_numpy(np.median(loud.numpy(), axis=0)), "one party sending -1000 x its logits",
                        "Sort over the parties, not over the classes.")
