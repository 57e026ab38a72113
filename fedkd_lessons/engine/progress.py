"""Progress bars on long work, which tests and quiet runs switch off with ``FEDKD_PROGRESS=0``."""

import os

from tqdm.auto import tqdm


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` if given, else on unless the environment sets ``FEDKD_PROGRESS=0`` (the tests do)."""
    if progress is None:
        return os.environ.get("FEDKD_PROGRESS", "1") != "0"
    return bool(progress)


def progress_bar(iterable, progress: bool | None = None, description: str = "", total: int | None = None):
    """``iterable`` wrapped in a ``tqdm.auto`` bar (a widget in Jupyter, text in a terminal)."""
    return tqdm(iterable, desc=description, total=total, disable=not progress_enabled(progress), leave=False)
