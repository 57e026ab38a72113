"""What the tests that start Flower runs share (the Flower tests, lesson 6's claims): which of the processes a
run started still run."""

import psutil


def still_running(pids) -> list[int]:
    """The PIDs among ``pids`` that still run (zombies count as gone)."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running
