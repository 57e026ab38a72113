"""Lesson 5's claims at the notebook's settings on the five seeds after the notebook's (which nbval
checks through the notebook's own claims cell)."""

import dataclasses
import os

import torch

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson5_fedmd import Settings, claims, run_claims_experiment


def test_the_claims_hold_on_five_other_seeds():
    settings = dataclasses.replace(Settings(), seed=Settings().seed + Settings().seeds)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # as the notebook runs: its batched CNNs are compute-bound
    try:
        assert_claims(claims(run_claims_experiment(settings)))
    finally:
        torch.set_num_threads(threads)
