"""Checkers for lesson 1's exercises: the softened softmax, entropy, and the T for a target entropy."""

import math
from collections.abc import Callable as CallableType, Mapping

import torch

from fedkd_lessons.temperature import entropy, softmax_with_temperature
from fedkd_lessons.engine.validation import Callable, Instance, Optional, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


@checked_arguments(softmax_fn=Callable())
@checker("Your softened softmax is right at every temperature tried and stable on logits of 1e4.")
def check_softmax_with_temperature(softmax_fn) -> None:
    """Lesson 1: ``softmax_fn(logits (N, C), temperature) -> (N, C)`` softened along the last dim."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 10, generator=generator) * 3
    probs = as_tensor_answer(softmax_fn(logits, 1.0), "softmax_fn(logits, 1.0)")
    if probs.shape != logits.shape:
        raise Wrong(f"for logits of shape (5, 10) the result has shape {tuple(probs.shape)}; keep one probability per class.")
    sums = probs.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5):
        raise Wrong(f"rows should sum to 1 but sum to {sums[0]:.4f}, ...; normalise over the last dimension (dim=-1).")
    assert_close_answer(probs, torch.softmax(logits, dim=-1), "at T = 1", "At T = 1 it must equal the ordinary softmax.")
    for temperature in (0.5, 4.0):
        got = as_tensor_answer(softmax_fn(logits, temperature), f"softmax_fn(logits, {temperature})")
        assert_close_answer(got, torch.softmax(logits / temperature, dim=-1), f"at T = {temperature}",
                      "Divide the logits by T before the exponential.")
    large = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4 - 1, 0.0]])
    got = as_tensor_answer(softmax_fn(large, 1.0), "softmax_fn(large_logits, 1.0)")
    assert_close_answer(got, torch.softmax(large, dim=-1), "on logits of size 1e4",
                  "exp(1e4) overflows: subtract each row's maximum before exponentiating (the log-sum-exp trick).")


@checked_arguments(entropy_fn=Callable())
@checker("Your entropy matches -Σ q log q, including 0 for one-hot rows (0 log 0 = 0).")
def check_entropy(entropy_fn) -> None:
    """Lesson 1: ``entropy_fn(probs (N, C)) -> (N,)`` in nats."""
    uniform = torch.full((1, 10), 0.1)
    got = as_tensor_answer(entropy_fn(uniform), "entropy_fn(uniform)")
    if got.shape != (1,):
        raise Wrong(f"for probs of shape (1, 10) the result has shape {tuple(got.shape)}, expected (1,): sum over the classes.")
    if not math.isclose(float(got[0]), math.log(10), rel_tol=1e-4):
        hints = {math.log2(10): " Use the natural log (nats), not log2.",
                 -math.log(10): " Entropy is MINUS the sum of q log q (each log q is negative)."}
        hint = next((h for value, h in hints.items() if math.isclose(float(got[0]), value, rel_tol=1e-4)), "")
        raise Wrong(f"the uniform distribution over 10 classes should have entropy log 10 = 2.3026, got {float(got[0]):.4f}.{hint}")
    one_hot = torch.eye(4)
    got = as_tensor_answer(entropy_fn(one_hot), "entropy_fn(one_hot)")
    if not torch.isfinite(got).all():
        raise Wrong("a one-hot row gives NaN: 0 * log 0 must count as 0 (try torch.special.xlogy(q, q)).")
    assert_close_answer(got, torch.zeros(4), "on one-hot rows", "A certain prediction has entropy 0.")
    probs = torch.softmax(torch.randn(6, 10, generator=torch.Generator().manual_seed(2)), dim=-1)
    assert_close_answer(as_tensor_answer(entropy_fn(probs), "entropy_fn(probs)"), entropy(probs), "on random distributions",
                  "H(q) = -Σ_i q_i log q_i over the last dimension.")


def _reference_temperature_for_entropy(logits, target, low=1e-3, high=1e3, steps=60):
    for _ in range(steps):
        middle = math.sqrt(low * high)
        if float(entropy(softmax_with_temperature(logits, middle))) < target:
            low = middle
        else:
            high = middle
    return math.sqrt(low * high)


def _temperature_answer(search_fn, logits, target, case: str) -> float:
    found = search_fn(logits.clone(), target)
    if isinstance(found, torch.Tensor) and found.numel() == 1:
        found = found.item()
    if not isinstance(found, (int, float)) or not math.isfinite(found) or found <= 0:
        raise Wrong(f"{case}: for target {target:.3f} nats you returned {found!r}; return one positive temperature.")
    return float(found)


@checked_arguments(search_fn=Callable(), lesson_digits=Optional(Instance((Mapping, CallableType))))
@checker("Your bisection finds the temperature that reaches the target entropy.")
def check_temperature_for_entropy(search_fn, lesson_digits=None):
    """Lesson 1: ``search_fn(logits (C,), target_entropy) -> T`` such that H(softmax(z/T)) = target.

    ``lesson_digits`` (name -> ``(C,)`` logits, e.g. the lesson's confident and ambiguous digits, or
    a function returning them, called only once the answer passes the checker's own cases): the
    experiment. On each, the learner's T must reach half the maximal entropy, ``log(C) / 2``; the
    feedback then says which digit needed the higher temperature."""
    logits = torch.tensor([6.0, 2.5, 1.0, 0.0, -1.0, -2.0, -2.0, -3.0, -4.0, -5.0])
    for fraction in (0.25, 0.5, 0.9):
        target = fraction * math.log(10)
        found = _temperature_answer(search_fn, logits, target, "on the checker's logits")
        reached = float(entropy(softmax_with_temperature(logits, found)))
        if abs(reached - target) > 1e-3:
            expected = _reference_temperature_for_entropy(logits, target)
            raise Wrong(
                f"for target {target:.3f} nats your T = {found:.4g} gives H = {reached:.3f}; the right T is about "
                f"{expected:.4g}. Entropy rises with T: raise T when H is too small, lower it when too large."
            )
    if lesson_digits is None:
        return None
    if callable(lesson_digits):
        lesson_digits = lesson_digits()
    found = {}
    for name, digit in lesson_digits.items():
        digit = torch.as_tensor(digit, dtype=torch.float32)
        target = math.log(digit.numel()) / 2
        found[name] = _temperature_answer(search_fn, digit, target, f"on the {name} digit")
        reached = float(entropy(softmax_with_temperature(digit, found[name])))
        if abs(reached - target) > 1e-3:
            raise Wrong(f"on the lesson's {name} digit your T = {found[name]:.4g} gives H = {reached:.3f} nats, not "
                        f"log(C)/2 = {target:.3f}. Is your search bracket wide enough (1e-3 to 1e3)?")
    ranked = sorted(found, key=found.get, reverse=True)
    if len(ranked) == 1:
        return f"On the lesson's {ranked[0]} digit it reaches half the maximal entropy, log(C)/2."
    order = (f"the {ranked[0]} digit needs a higher temperature than the {ranked[1]} digit" if len(ranked) == 2 else
             f"the {ranked[0]} digit needs the highest temperature, the {ranked[-1]} digit the lowest")
    return f"On the lesson's digits it reaches half the maximal entropy, log(C)/2, and {order}."
