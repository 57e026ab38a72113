"""Headlines over seeds: a paired difference, its mean and its 95 % interval (lessons 2-7).

One seed is one draw of everything random (data, initial weights, batches). Two methods run on the
same seeds give one *paired* difference per seed; its mean and the Student-t interval around it
say how large the difference is and whether the seeds could have made it up. An interval that
holds zero is "no measurable difference at this scale", whatever the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fedkd_lessons.engine.validation import Constraint, Real, checked_arguments


class PerSeed(Constraint):
    """One finite number per seed, at least two of them (an interval needs two), as a float64 array.
    (Not a ``Tensor``: that would round a list of Python floats to float32.)"""

    description = "one finite number per seed, at least 2 seeds"

    def check(self, value, name: str):
        try:
            values = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} must be {self.description}, got {value!r:.80}") from error
        if values.ndim != 1:
            raise ValueError(f"{name} must be 1-D, one number per seed, got shape {values.shape}")
        if len(values) < 2:
            raise ValueError(f"{name} must hold at least 2 seeds for an interval, got {len(values)}")
        if not np.isfinite(values).all():
            raise ValueError(f"{name} must be finite, got {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
        return values

    def bad_examples(self) -> list:
        return ["one", [0.5], [[0.5, 0.6]], [0.5, float("nan")]]


@dataclass(frozen=True)
class PairedInterval:
    """``differences`` (one per seed), their ``mean`` and the interval ``[low, high]``."""

    differences: np.ndarray
    mean: float
    low: float
    high: float
    confidence: float

    @property
    def verdict(self) -> str:
        """``"above zero"``, ``"below zero"`` or ``"no measurable difference"`` (the interval holds 0)."""
        if self.low > 0:
            return "above zero"
        if self.high < 0:
            return "below zero"
        return "no measurable difference"

    def points(self) -> str:
        """The mean and interval in points (100 x a difference of accuracies), e.g. ``+3.1 [+1.2, +5.0]``."""
        return f"{100 * self.mean:+.1f} [{100 * self.low:+.1f}, {100 * self.high:+.1f}]"


@checked_arguments(better=PerSeed(), worse=PerSeed(), confidence=Real(0, 1, closed="neither"))
def paired_interval(better, worse, confidence: float = 0.95) -> PairedInterval:
    """The mean of ``better - worse`` over seeds and its Student-t interval,
    ``mean +- t_{(1 + c)/2, n - 1} * s / sqrt(n)`` with ``s`` the standard deviation (``n - 1``
    in the denominator) of the ``n`` paired differences.

    Args:
        better, worse: ``(n,)`` one number per seed each (e.g. mean accuracies), paired by seed.
        confidence: the interval's coverage ``c`` in (0, 1).
    """
    if len(better) != len(worse):
        raise ValueError(f"worse must pair with better, one number per seed: better has {len(better)}, worse "
                         f"{len(worse)}")
    differences = better - worse
    mean = float(differences.mean())
    half = float(stats.t.ppf((1 + confidence) / 2, len(differences) - 1) * differences.std(ddof=1)
                 / math.sqrt(len(differences)))
    return PairedInterval(differences, mean, mean - half, mean + half, confidence)
