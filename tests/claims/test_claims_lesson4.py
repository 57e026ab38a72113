"""Lesson 4's claims at the notebook's settings on another seed than the notebook's (which nbval checks
through the notebook's own claims cell)."""

import dataclasses

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson4_adaptation import Settings, claims, run_claims_experiment


def test_the_claims_hold_on_another_seed():
    settings = dataclasses.replace(Settings(), seed=Settings().seed + 1)
    assert_claims(claims(run_claims_experiment(settings)))
