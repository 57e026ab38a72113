"""Reproducibility: one call that fixes every source of randomness the course uses (lesson 1)."""

import os
import random

import numpy as np
import torch

from fedkd_lessons.engine.validation import Integer, checked_arguments


@checked_arguments(seed=Integer(0), num_threads=Integer(1))
def seed_everything(seed: int, num_threads: int = 1) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and fix PyTorch's CPU thread count.

    The thread count is part of the seed: the order of floating-point sums in a matrix product
    depends on how many threads share it, so the same seed gives the same numbers only at the
    same thread count. One thread is also the fastest for the course's small models.

    Returns a ``torch.Generator`` seeded with ``seed``, for code that wants its own stream.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(num_threads)
    return torch.Generator().manual_seed(seed)
