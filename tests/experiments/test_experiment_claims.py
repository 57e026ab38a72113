"""The claim machinery itself: verdict lines, assertions, bounds in both directions."""

import math

import numpy as np
import pytest
import torch

from fedkd_lessons.experiments.claims import (Claim, assert_claims, at_least, at_most, claim_verdicts,
                                              claims_module, spread_over_seeds)


def test_at_least_holds_at_and_above_the_bound_only():
    assert at_least("x", 0.5, 0.5).holds
    assert at_least("x", 0.6, 0.5).holds
    assert not at_least("x", 0.49, 0.5).holds
    assert at_least("x", 0.6, 0.5).margin == pytest.approx(0.1)


def test_at_most_holds_at_and_below_the_bound_only():
    assert at_most("x", 0.5, 0.5).holds
    assert not at_most("x", 0.51, 0.5).holds
    assert at_most("x", 0.2, 0.5).margin == pytest.approx(0.3)


def test_a_nan_value_never_holds():
    assert not at_least("x", math.nan, 0.0).holds
    assert not at_most("x", math.nan, 0.0).holds


def test_verdicts_of_holding_claims_carry_no_digits():
    text = claim_verdicts([at_least("the student gains", 0.123456, 0.01), at_most("the loss is small", 0.2, 0.5)])
    assert text == "holds: the student gains\nholds: the loss is small"
    assert not any(ch.isdigit() for ch in text)


def test_a_failing_claim_shows_its_measured_value_and_bound():
    text = claim_verdicts([at_least("FedMD beats the control", -1.5, 0.0, unit="points")])
    assert text.startswith("FAILS: FedMD beats the control")
    assert "-1.5 points" in text and ">= 0 points" in text


def test_assert_claims_names_every_failing_claim():
    claims = [at_least("a", 1, 0), at_least("b", -1, 0), at_most("c", 2, 1)]
    with pytest.raises(AssertionError) as error:
        assert_claims(claims)
    assert "- b:" in str(error.value) and "- c:" in str(error.value) and "- a:" not in str(error.value)
    assert_claims(claims[:1])


def test_empty_claim_lists_are_rejected():
    with pytest.raises(ValueError, match=r"^claims must be a list or tuple of at least 1 item\(s\), each a Claim"):
        claim_verdicts([])
    with pytest.raises(ValueError, match=r"^claims must be a list or tuple of at least 1 item\(s\), each a Claim"):
        assert_claims([])


def test_unknown_lessons_are_rejected():
    with pytest.raises(ValueError, match="^lesson must be one of"):
        claims_module("9")
    with pytest.raises(ValueError, match="^lesson must be one of"):
        claims_module(5)  # the command line's lessons are strings


def test_a_claim_takes_any_number_a_measurement_gives_nan_included():
    assert at_least("x", np.float32(0.5), 0).value == 0.5 and at_most("x", torch.tensor(0.25), 1).value == 0.25
    assert not at_least("x", math.nan, 0.0).holds  # a failed measurement is a failing claim, not a bad call
    with pytest.raises(ValueError, match="^value must be a number"):
        at_least("x", "0.5", 0.0)
    with pytest.raises(ValueError, match="^bound must be a finite number"):
        at_most("x", 0.5, math.nan)
    with pytest.raises(ValueError, match="^statement must be a str"):
        Claim(None, 0.5, 0.0)


def test_spreading_over_no_seed_is_rejected():
    with pytest.raises(ValueError, match=r"^seeds must be a list or tuple of at least 1"):
        spread_over_seeds("1", [])


def test_claims_are_frozen():
    claim = Claim("x", 1.0, 0.0)
    with pytest.raises(AttributeError):
        claim.value = 2.0
