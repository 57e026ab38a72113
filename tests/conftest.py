import os

import pytest
import torch

os.environ["FEDKD_PROGRESS"] = "0"  # no progress bars in test logs
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from fedkd_lessons import load_digits_split

    return load_digits_split()
