"""Lesson 1's experiment module rejects what its arguments cannot be, naming the argument: the
checks between arguments, one test each (the declared ones are fed their bad values by
tests/engine/test_validation.py)."""

import pytest
import torch

from fedkd_lessons.experiments.lesson1_temperature import similarity_margins

LOGITS = torch.tensor([[5.0, 1.0, 2.0], [5.0, 0.0, 1.0], [0.0, 4.0, 1.0]])
LABELS = torch.tensor([0, 0, 1])


def test_labels_of_another_length_than_the_logits_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must give one label per row of logits \(3\), got 2"):
        similarity_margins(LOGITS, LABELS[:2], 1.0, pairs=((0, 2),))


def test_a_pair_beyond_the_logits_classes_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^pairs must be \(class, another class\) pairs of classes in \[0, 2\], "
                                         r"got \(0, 3\)"):
        similarity_margins(LOGITS, LABELS, 1.0, pairs=((0, 3),))


def test_a_pair_of_one_class_with_itself_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^pairs must be \(class, another class\) pairs"):
        similarity_margins(LOGITS, LABELS, 1.0, pairs=((1, 1),))


def test_a_class_absent_from_the_labels_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must hold a digit of class 2 \(pairs averages over them\)"):
        similarity_margins(LOGITS, LABELS, 1.0, pairs=((2, 0),))


def test_two_classes_leave_no_other_wrong_class_and_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^logits must have 3 or more classes"):
        similarity_margins(LOGITS[:, :2], LABELS, 1.0, pairs=((0, 1),))
