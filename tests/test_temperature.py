import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.temperature import (entropy, log_softmax_with_temperature, resemblance_table, softmax_with_temperature,
                                       strongest_lookalikes)

LOGITS = torch.randn(7, 10, generator=torch.Generator().manual_seed(0)) * 4


def test_equals_torch_softmax_at_t1():
    torch.testing.assert_close(softmax_with_temperature(LOGITS, 1.0), torch.softmax(LOGITS, dim=-1))


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0, 20.0, 1000.0])
def test_equals_softmax_of_scaled_logits(temperature):
    torch.testing.assert_close(softmax_with_temperature(LOGITS, temperature), F.softmax(LOGITS / temperature, dim=-1))


def test_log_softmax_matches_torch_and_does_not_underflow():
    torch.testing.assert_close(log_softmax_with_temperature(LOGITS, 3.0), F.log_softmax(LOGITS / 3.0, dim=-1))
    extreme = torch.tensor([0.0, -1e4])
    assert torch.isfinite(log_softmax_with_temperature(extreme, 1.0)).all()
    assert log_softmax_with_temperature(extreme, 1.0)[1].item() == pytest.approx(-1e4)


def test_other_dimension():
    torch.testing.assert_close(softmax_with_temperature(LOGITS, 2.0, dim=0), torch.softmax(LOGITS / 2.0, dim=0))


def test_low_temperature_limit_is_one_hot_argmax():
    probs = softmax_with_temperature(LOGITS, 1e-4)
    torch.testing.assert_close(probs, F.one_hot(LOGITS.argmax(dim=-1), 10).float())


def test_high_temperature_limit_is_uniform():
    probs = softmax_with_temperature(LOGITS, 1e6)
    torch.testing.assert_close(probs, torch.full_like(probs, 0.1), atol=1e-5, rtol=0)


def test_entropy_of_uniform_is_log_c_and_of_one_hot_is_zero():
    assert entropy(torch.full((10,), 0.1)).item() == pytest.approx(math.log(10), rel=1e-6)
    torch.testing.assert_close(entropy(torch.eye(5)), torch.zeros(5))


def test_entropy_matches_closed_form_reference():
    probs = torch.softmax(LOGITS, dim=-1).double()
    expected = -(probs.numpy() * np.log(probs.numpy())).sum(axis=-1)
    np.testing.assert_allclose(entropy(probs).numpy(), expected, rtol=1e-10)


def test_entropy_rises_with_temperature():
    values = [entropy(softmax_with_temperature(LOGITS[0], t)).item() for t in np.geomspace(0.05, 100, 30)]
    assert all(b >= a - 1e-6 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("scale", [1e4, 1e6, 1e30])
def test_no_nan_on_huge_logits(scale):
    logits = torch.tensor([[1.0, 0.5, -1.0]]) * scale
    probs = softmax_with_temperature(logits, 1.0)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs, torch.tensor([[1.0, 0.0, 0.0]]))


def test_tiny_temperature_does_not_overflow():
    probs = softmax_with_temperature(torch.tensor([1e4, 1e4 - 1, 0.0]), 1e-30)
    torch.testing.assert_close(probs, torch.tensor([1.0, 0.0, 0.0]))


def test_invariant_to_adding_a_constant():
    for temperature in (0.3, 1.0, 7.0):
        torch.testing.assert_close(
            softmax_with_temperature(LOGITS + 123.0, temperature), softmax_with_temperature(LOGITS, temperature)
        )


def test_accepts_numpy_and_integer_logits():
    torch.testing.assert_close(
        softmax_with_temperature(np.array([2, 1, 0]), 1.0), torch.softmax(torch.tensor([2.0, 1.0, 0.0]), dim=-1)
    )


def test_masked_class_gets_zero():
    probs = softmax_with_temperature(torch.tensor([1.0, -math.inf, 0.0]), 2.0)
    assert probs[1].item() == 0.0 and probs.sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, -math.inf, "2", None, True])
def test_bad_temperature_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        softmax_with_temperature(LOGITS, bad)


def test_nan_logits_are_rejected():
    with pytest.raises(ValueError, match="logits contains NaN"):
        softmax_with_temperature(torch.tensor([1.0, math.nan]), 1.0)


def test_positive_infinite_logits_are_rejected():
    with pytest.raises(ValueError, match=r"logits contains \+inf"):
        softmax_with_temperature(torch.tensor([1.0, math.inf]), 1.0)


def test_all_masked_row_is_rejected():
    with pytest.raises(ValueError, match="every class is -inf"):
        softmax_with_temperature(torch.tensor([-math.inf, -math.inf]), 1.0)


def test_scalar_logits_and_wrong_dim_are_rejected():
    with pytest.raises(ValueError, match="at least one dimension"):
        softmax_with_temperature(torch.tensor(3.0), 1.0)
    with pytest.raises(ValueError, match=r"dim must be in \[-2, 1\]"):
        softmax_with_temperature(LOGITS, 1.0, dim=2)


def test_entropy_rejects_logits_and_unnormalised_rows():
    with pytest.raises(ValueError, match="probs must be finite and >= 0"):
        entropy(torch.tensor([2.0, -1.0]))
    with pytest.raises(ValueError, match="probs must sum to 1"):
        entropy(torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="probs contains NaN"):
        entropy(torch.tensor([0.5, math.nan]))


def test_resemblance_table_by_hand():
    # Class 0: two digits; at T = 1 their probabilities are softmax([0, ln 2, ln 1]) = (1/4, 2/4, 1/4)
    # and softmax([0, 0, ln 2]) = (1/4, 1/4, 2/4): the mean is (1/4, 3/8, 3/8). Class 2: one digit, (1/6, 2/6, 3/6).
    logits = torch.tensor([[0.0, math.log(2), 0.0], [0.0, 0.0, math.log(2)], [0.0, math.log(2), math.log(3)]])
    table = resemblance_table(logits, torch.tensor([0, 0, 2]), 1.0)
    assert torch.isnan(table.diagonal()).all() and torch.isnan(table[1]).all()  # class 1 has no digit
    assert table[0, 1:].tolist() == pytest.approx([3 / 8, 3 / 8])
    assert table[2, :2].tolist() == pytest.approx([1 / 6, 2 / 6])
    assert strongest_lookalikes(table) == [(0, 1, pytest.approx(3 / 8)), (2, 1, pytest.approx(1 / 3))]


def test_resemblance_table_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="labels"):
        resemblance_table(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), 1.0)
