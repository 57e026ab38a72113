"""Lesson 5's claims at the notebook's settings on the five seeds after the notebook's (which nbval
checks through the notebook's own claims cell)."""

import dataclasses

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson5_fedmd import Settings, claims, run_claims_experiment


def test_the_claims_hold_on_five_other_seeds(two_threads):
    settings = dataclasses.replace(Settings(), seed=Settings().seed + Settings().seeds)
    assert_claims(claims(run_claims_experiment(settings)))
