"""Lesson 7's claims at the notebook's settings on other seeds than the notebook's (which nbval
checks through the notebook's own claims cell): seeds 5-9 where the notebook runs 0-4."""

import dataclasses

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson7_after_fedmd import Settings, claims, run_claims_experiment


def test_the_claims_hold_on_other_seeds(two_threads):  # as the notebook runs
    settings = dataclasses.replace(Settings(), seed=Settings().seed + Settings().seeds)
    assert_claims(claims(run_claims_experiment(settings)))
