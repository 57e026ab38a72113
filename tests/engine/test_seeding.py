import random

import numpy as np
import pytest
import torch

from fedkd_lessons import make_mlp, seed_everything


def draw():
    return random.random(), np.random.rand(), torch.rand(1).item(), make_mlp((8,))[1].weight.sum().item()


def test_same_seed_same_numbers_and_thread_count():
    seed_everything(3)
    first = draw()
    seed_everything(3)
    assert draw() == first
    assert torch.get_num_threads() == 1
    seed_everything(4)
    assert draw() != first


def test_returned_generator_is_seeded():
    a = torch.rand(3, generator=seed_everything(5))
    b = torch.rand(3, generator=seed_everything(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        seed_everything(bad)


def test_bad_thread_count_is_rejected():
    with pytest.raises(ValueError, match="num_threads must be an integer >= 1"):
        seed_everything(0, num_threads=0)
