"""Lesson 7's checkers against answers written here from first principles (loops, exp / sum), each
first checked on values worked by hand, never against the package's after_fedmd functions that the
checkers use; an unsolved stub is "not solved", and each typical mistake gets its own hint."""

import math

import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.exercises import check_entropy_reduction, check_fd_teachers


def unsolved(*args):
    raise NotImplementedError()


# --- DS-FL's entropy-reduction averaging --------------------------------------------------------

def era_by_hand(probabilities, temperature):
    """softmax((1/m) Σ_k p_k / T), sample by sample, in plain Python."""
    m, samples, classes = probabilities.shape
    rows = []
    for s in range(samples):
        mean = [sum(float(probabilities[k, s, c]) for k in range(m)) / m for c in range(classes)]
        exps = [math.exp((value - max(mean)) / temperature) for value in mean]
        rows.append([e / sum(exps) for e in exps])
    return torch.tensor(rows, dtype=probabilities.dtype)


def test_era_by_hand_on_values_worked_by_hand():
    # parties (1, 0) and (1/2, 1/2): mean (3/4, 1/4); at T = 1/2 the logits (3/2, 1/2): e / (e + 1) = 0.7311.
    probabilities = torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]], dtype=torch.float64)
    assert era_by_hand(probabilities, 0.5)[0].tolist() == pytest.approx([math.e / (math.e + 1), 1 / (math.e + 1)])
    # a 7-to-3 vote over 16 classes at T = 0.1: logits 7, 3 and fourteen 0s, so e^7 / (e^7 + e^3 + 14) = 0.97.
    vote = torch.zeros(10, 1, 16, dtype=torch.float64)
    vote[:7, 0, 0], vote[7:, 0, 1] = 1.0, 1.0
    assert era_by_hand(vote, 0.1)[0, 0].item() == pytest.approx(math.exp(7) / (math.exp(7) + math.exp(3) + 14))


def test_entropy_reduction_checker_accepts_an_answer_written_by_hand_and_reports_unsolved():
    feedback = check_entropy_reduction(era_by_hand)
    assert feedback.passed and "sharpens a majority vote" in feedback.message
    assert check_entropy_reduction(unsolved).status == "not solved"


@pytest.mark.parametrize("answer, hint", [
    (lambda p, T: p.mean(dim=0), "plain average"),
    (lambda p, T: F.softmax(p.mean(dim=0), dim=-1), "forgot to divide it by T"),
    (lambda p, T: F.softmax(p / T, dim=-1).mean(dim=0), "average first, then sharpen"),
    (lambda p, T: F.softmax(p.mean(dim=0) * T, dim=-1), "divide by it"),
    (lambda p, T: F.softmax(p.sum(dim=0) / T, dim=-1), "you summed the parties' probabilities"),
    (lambda p, T: F.softmax(p.mean(dim=1) / T, dim=-1), "dimension 0"),
    (lambda p, T: F.softmax(p.mean(dim=0) / 0.1, dim=-1), "Use the temperature you are given"),
    (lambda p, T: p.mean(dim=0).numpy(), "should return a torch.Tensor"),
], ids=["plain average", "no T", "sharpen then average", "times T", "sum", "wrong dimension", "fixed T", "numpy"])
def test_entropy_reduction_checker_names_each_mistake(answer, hint):
    feedback = check_entropy_reduction(answer)
    assert not feedback.passed and hint in feedback.message, feedback.message


# --- FD's teachers ------------------------------------------------------------------------------

def teachers_by_loop(tables, counts):
    """For party k and label y, the mean of tables[j, y] over the other parties j that hold y
    (counts[j, y] > 0); zeros where no other party holds it."""
    m, labels, classes = tables.shape
    teachers = torch.zeros(m, labels, classes, dtype=tables.dtype)
    for k in range(m):
        for y in range(labels):
            others = [tables[j, y] for j in range(m) if j != k and counts[j, y] > 0]
            if others:
                teachers[k, y] = sum(others) / len(others)
    return teachers


def test_teachers_by_loop_on_values_worked_by_hand():
    # three parties, two labels, one class: tables[k, y] and counts[k, y]
    tables = torch.tensor([[[1.0], [10.0]], [[3.0], [20.0]], [[5.0], [30.0]]])
    counts = torch.tensor([[1, 0], [2, 1], [0, 4]])
    # label 0, holders {0, 1}: party 0 <- 3, party 1 <- 1, party 2 (no 0s of its own) <- (1 + 3) / 2 = 2;
    # label 1, holders {1, 2}: party 0 <- (20 + 30) / 2 = 25, party 1 <- 30, party 2 <- 20
    assert teachers_by_loop(tables, counts).squeeze(-1).tolist() == [[3.0, 25.0], [1.0, 30.0], [2.0, 20.0]]


def test_fd_teachers_checker_accepts_an_answer_written_by_hand_and_reports_unsolved():
    feedback = check_fd_teachers(teachers_by_loop)
    assert feedback.passed and "never the party itself" in feedback.message
    assert check_fd_teachers(unsolved).status == "not solved"


def with_self(tables, counts):
    holds = (counts > 0).float().unsqueeze(-1)
    return ((tables * holds).sum(0) / holds.sum(0)).expand_as(tables)


def weighted_by_counts(tables, counts):
    weights = counts.float().unsqueeze(-1)
    return ((tables * weights).sum(0, keepdim=True) - tables * weights) / (weights.sum(0, keepdim=True) - weights)


@pytest.mark.parametrize("answer, hint", [
    (with_self, "leave party k's own mean out"),
    (lambda t, c: (t.sum(0, keepdim=True) - t) / (len(t) - 1), "average only over the holders"),
    (weighted_by_counts, "every holder counts once"),
    (lambda t, c: t.mean(dim=0), "expected (4, 3, 5)"),
    (lambda t, c: t, "off by up to"),
], ids=["with self", "all other parties", "weighted by counts", "one teacher per label", "own table"])
def test_fd_teachers_checker_names_each_mistake(answer, hint):
    feedback = check_fd_teachers(answer)
    assert not feedback.passed and hint in feedback.message, feedback.message
