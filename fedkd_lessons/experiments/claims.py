"""What a lesson's prose claims, as checkable statements about measured numbers.

Trained numbers differ in their last digits from one CPU to the next, so a notebook's stored
digits cannot be a test. What must hold on every machine is the *claim*: "hard pseudo-labels
recover most of the soft-target gain", "FedMD ends above the same-epochs control". A
:class:`Claim` pairs such a sentence with the number behind it and the bound it must clear;
the bound is set from the spread of that number measured over many seeds (each lesson module
records the spread beside the bound), so a claim that holds here holds on a learner's laptop.

The notebook prints :func:`claim_verdicts` in an output-compared cell: one line per claim, with
no digits in it while the claim holds, so every machine prints it alike. The claims tests call
:func:`assert_claims` on other seeds. ``python -m fedkd_lessons.experiments.claims LESSON
--seeds 0 1 2 ...`` measures the spread that the bounds are set from.
"""

from __future__ import annotations

import argparse
import importlib
import math
from dataclasses import dataclass, replace

from fedkd_lessons.engine.validation import (Constraint, Each, Instance, Integer, OneOf, Real, check_fields,
                                             checked_arguments)

LESSON_MODULES = {
    "1": "lesson1_temperature",
    "2": "lesson2_distillation",
    "3": "lesson3_federated",
    "4": "lesson4_adaptation",
    "5": "lesson5_fedmd",
    "6": "lesson6_flower",
    "7": "lesson7_after_fedmd",
}


class Measured(Constraint):
    """A measured number as ``float`` converts it (a Python or numpy number, a one-element tensor).
    NaN and infinity are allowed: a claim whose value is not finite fails, it is not a bad call."""

    description = "a number (NaN allowed)"

    def check(self, value, name: str):
        return float(super().check(value, name))

    def accepts(self, value) -> bool:
        if isinstance(value, (str, bytes)):
            return False
        try:
            float(value)
        except (TypeError, ValueError):
            return False
        return True

    def bad_examples(self) -> list:
        return ["0.5", None, [1.0, 2.0]]


STATEMENT, MEASURED, BOUND, UNIT = Instance(str), Measured(), Real(), Instance(str)
LESSON = OneOf(*LESSON_MODULES)


@dataclass(frozen=True)
class Claim:
    """One sentence of a lesson's prose and the measured number that supports it.

    ``holds`` when ``value >= bound`` (or ``value <= bound`` for ``at_most``). ``unit`` is how
    the value is printed when the claim fails, e.g. ``"points"``.
    """

    statement: str
    value: float
    bound: float
    at_most: bool = False
    unit: str = ""

    def __post_init__(self):
        check_fields(self, statement=STATEMENT, value=MEASURED, bound=BOUND, at_most=Instance(bool), unit=UNIT)

    @property
    def holds(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    @property
    def margin(self) -> float:
        """How far the value is on the safe side of the bound (negative: the claim fails)."""
        return self.bound - self.value if self.at_most else self.value - self.bound

    def evidence(self) -> str:
        relation = "<=" if self.at_most else ">="
        unit = f" {self.unit}" if self.unit else ""
        return f"measured {self.value:.4g}{unit}, needs {relation} {self.bound:.4g}{unit}"


CLAIMS = Each(Instance(Claim))


@checked_arguments(statement=STATEMENT, value=MEASURED, bound=BOUND, unit=UNIT)
def at_least(statement: str, value: float, bound: float, unit: str = "") -> Claim:
    """The claim that ``value`` is at least ``bound``."""
    return Claim(statement, value, bound, at_most=False, unit=unit)


@checked_arguments(statement=STATEMENT, value=MEASURED, bound=BOUND, unit=UNIT)
def at_most(statement: str, value: float, bound: float, unit: str = "") -> Claim:
    """The claim that ``value`` is at most ``bound``."""
    return Claim(statement, value, bound, at_most=True, unit=unit)


@checked_arguments(claims=CLAIMS)
def claim_verdicts(claims: list[Claim]) -> str:
    """One line per claim: ``holds: ...`` with no digits, or ``FAILS: ... (measured ...)``.

    While every claim holds, the text is the same on every machine, so a notebook can print it
    in an output-compared cell.
    """
    lines = []
    for claim in claims:
        if claim.holds:
            lines.append(f"holds: {claim.statement}")
        else:
            lines.append(f"FAILS: {claim.statement} ({claim.evidence()})")
    return "\n".join(lines)


@checked_arguments(claims=CLAIMS)
def assert_claims(claims: list[Claim]) -> None:
    """Raise ``AssertionError`` naming every claim that fails, with its measured value."""
    failed = [claim for claim in claims if not claim.holds]
    if failed:
        raise AssertionError(
            "claims that fail:\n" + "\n".join(f"- {c.statement}: {c.evidence()}" for c in failed)
        )


@checked_arguments(lesson=LESSON)
def claims_module(lesson: str):
    """The experiments module of ``lesson`` ("1" ... "7")."""
    return importlib.import_module(f"fedkd_lessons.experiments.{LESSON_MODULES[lesson]}")


@checked_arguments(lesson=LESSON, seeds=Each(Integer(0)))
def spread_over_seeds(lesson: str, seeds: list[int]) -> dict[str, list[float]]:
    """Run ``lesson``'s claims experiment at its notebook settings once per seed and return,
    per claim, the measured values; print each claim's range and its bound."""
    module = claims_module(lesson)
    values: dict[str, list[float]] = {}
    bounds: dict[str, Claim] = {}
    for seed in seeds:
        settings = replace(module.Settings(), seed=seed)
        for claim in module.claims(module.run_claims_experiment(settings)):
            values.setdefault(claim.statement, []).append(claim.value)
            bounds[claim.statement] = claim
            print(f"seed {seed}: {'ok  ' if claim.holds else 'FAIL'} {claim.statement}: {claim.evidence()}",
                  flush=True)
    print()
    for statement, measured in values.items():
        claim = bounds[statement]
        relation = "<=" if claim.at_most else ">="
        print(f"{statement}\n    over seeds {seeds[0]}-{seeds[-1]}: min {min(measured):.4g}, "
              f"max {max(measured):.4g}; bound {relation} {claim.bound:.4g}")
    return values


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lesson", choices=sorted(LESSON_MODULES))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    spread_over_seeds(args.lesson, args.seeds)


if __name__ == "__main__":
    main()
