"""Checkers for lesson 7's exercises: DS-FL's entropy-reduction averaging and FD's teachers."""

import math

import torch
import torch.nn.functional as F

from fedkd_lessons.after_fedmd import entropy_reduction_average, fd_teachers, mean_entropy
from fedkd_lessons.engine.validation import Callable, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


def _majority(num_parties=10, leaning=7, num_classes=16):
    """(m, 1, C): ``leaning`` parties sure of class 0, the rest of class 1."""
    classes = [0] * leaning + [1] * (num_parties - leaning)
    probabilities = torch.full((num_parties, 1, num_classes), 1e-6 / (num_classes - 1))
    for k, c in enumerate(classes):
        probabilities[k, 0, c] = 1 - 1e-6
    return probabilities


@checked_arguments(era_fn=Callable())
@checker("Your entropy-reduction average divides the parties' mean probabilities by T before the softmax, "
         "and it sharpens a majority vote as DS-FL intends.")
def check_entropy_reduction(era_fn) -> None:
    """Lesson 7: ``era_fn(probabilities (m, S, C), temperature) -> (S, C)``, ``softmax(mean_k p_k / T)``."""
    generator = torch.Generator().manual_seed(7)
    probabilities = F.softmax(torch.randn(5, 4, 16, generator=generator) * 2, dim=-1)
    got = as_tensor_answer(era_fn(probabilities, 0.1), "era_fn(probabilities, 0.1)")
    if got.shape != (4, 16):
        raise Wrong(f"for probabilities of shape (5 parties, 4 samples, 16 classes) you returned shape "
                    f"{tuple(got.shape)}, expected (4, 16): average over the parties, dimension 0.")
    expected = entropy_reduction_average(probabilities, 0.1)
    plain = probabilities.mean(dim=0)
    if torch.allclose(got, plain, atol=1e-5):
        raise Wrong("you returned the plain average; DS-FL then applies softmax(average / T).")
    if torch.allclose(got, F.softmax(plain, dim=-1), atol=1e-5):
        raise Wrong("you applied the softmax to the average but forgot to divide it by T first.")
    if torch.allclose(got, F.softmax(probabilities / 0.1, dim=-1).mean(dim=0), atol=1e-5):
        raise Wrong("you sharpened each party's probabilities and then averaged; average first, then sharpen.")
    if torch.allclose(got, F.softmax(plain * 0.1, dim=-1), atol=1e-5):
        raise Wrong("you multiplied by T; divide by it (a small T sharpens).")
    if torch.allclose(got, F.softmax(probabilities.sum(dim=0) / 0.1, dim=-1), atol=1e-5):
        raise Wrong("you summed the parties' probabilities; average them (divide by the number of parties m).")
    assert_close_answer(got, expected, "five parties at T = 0.1", "The target is softmax((1/m) Σ_k p_k / T).")
    assert_close_answer(as_tensor_answer(era_fn(probabilities, 2.0), "era_fn(probabilities, 2.0)"),
                        entropy_reduction_average(probabilities, 2.0), "T = 2", "Use the temperature you are given.")
    majority = _majority()
    sharpened = as_tensor_answer(era_fn(majority, 0.1), "era_fn(a 7-to-3 vote, 0.1)")
    if not mean_entropy(sharpened) < mean_entropy(majority.mean(dim=0)):
        raise Wrong("on a 7-to-3 vote your target is not sharper than the plain average.")
    top = float(sharpened[0, 0])
    if not math.isclose(top, math.exp(7) / (math.exp(7) + math.exp(3) + 14), rel_tol=1e-3):
        raise Wrong(f"on a 7-to-3 vote over 16 classes the top class should get about 0.97, you give {top:.3f}.")


@checked_arguments(teachers_fn=Callable())
@checker("Your teachers average, for each label, the other parties that hold it, never the party itself.")
def check_fd_teachers(teachers_fn) -> None:
    """Lesson 7: ``teachers_fn(tables (m, L, C), counts (m, L)) -> (m, L, C)``: for party ``k`` and label
    ``y`` the mean of ``tables[j, y]`` over the other parties ``j`` with ``counts[j, y] > 0``."""
    generator = torch.Generator().manual_seed(17)
    tables = torch.randn(4, 3, 5, generator=generator) * 3
    counts = torch.tensor([[2, 1, 0], [3, 0, 4], [1, 2, 2], [5, 5, 1]])
    got = as_tensor_answer(teachers_fn(tables, counts), "teachers_fn(tables, counts)")
    if got.shape != (4, 3, 5):
        raise Wrong(f"for 4 parties, 3 labels and 5 classes you returned shape {tuple(got.shape)}, expected (4, 3, 5).")
    expected, _ = fd_teachers(tables, counts)
    with_self = (tables * (counts > 0).unsqueeze(-1)).sum(0) / (counts > 0).sum(0).unsqueeze(-1)
    if torch.allclose(got, with_self.expand_as(got), atol=1e-5):
        raise Wrong("every party gets the same teacher: leave party k's own mean out of its teacher.")
    everyone_else = (tables.sum(0, keepdim=True) - tables) / 3
    if torch.allclose(got, everyone_else, atol=1e-5):
        raise Wrong("you average over all other parties, also those that hold none of the label "
                    "(count 0, their row is meaningless); average only over the holders.")
    weights = counts.to(tables.dtype).unsqueeze(-1)  # every (k, y) of this case has another holder: no 0 / 0
    by_count = ((tables * weights).sum(0, keepdim=True) - tables * weights) / (weights.sum(0, keepdim=True) - weights)
    if torch.allclose(got, by_count, atol=1e-5):
        raise Wrong("you weighted the other holders by their counts; every holder counts once (equal weight per party).")
    assert_close_answer(got, expected, "four parties, some without a label",
                        "For party k and label y: the mean of tables[j, y] over j != k with counts[j, y] > 0.")
