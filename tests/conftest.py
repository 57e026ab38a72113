import os

import pytest
import torch

os.environ["FEDKD_PROGRESS"] = "0"  # no progress bars in test logs
torch.set_num_threads(1)


@pytest.fixture
def two_threads():
    """Two torch threads where the machine has two cores, as lessons 5 and 7 run (their batched CNNs
    are compute-bound and share well); the suite's one thread afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def digits():
    from fedkd_lessons import load_digits_split

    return load_digits_split()


# What `pytest -m "not slow"` leaves out for a quick loop while editing (CI runs everything): the
# notebooks, the claims tests (each reruns a lesson's experiments), the Flower runs, nbgrader's
# autograding and the browser and website tests.
SLOW_FOLDERS = {"claims"}
SLOW_MARKERS = {"browser", "website", "flower_run", "nbgrader"}


def pytest_collection_modifyitems(items):
    for item in items:
        if (item.path.suffix == ".ipynb" or item.path.parent.name in SLOW_FOLDERS
                or any(item.get_closest_marker(name) for name in SLOW_MARKERS)):
            item.add_marker(pytest.mark.slow)
