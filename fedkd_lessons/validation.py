"""Argument checks shared by the whole package: fail at once, name the argument and the range."""

import math
from numbers import Real

import torch


def check_positive_finite(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise ``ValueError``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_fraction(value, name: str) -> float:
    """Return ``value`` as a float if it lies in [0, 1], else raise ``ValueError``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_int_at_least(value, name: str, minimum: int) -> int:
    """Return ``value`` if it is an integer >= ``minimum``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def as_logits(logits, name: str = "logits", dim: int = -1) -> torch.Tensor:
    """Return ``logits`` as a floating tensor after checking it has a class dimension ``dim``
    and no NaN or +inf (``-inf`` is allowed: it masks a class out)."""
    tensor = torch.as_tensor(logits)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if tensor.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the classes), got a scalar")
    if not -tensor.ndim <= dim < tensor.ndim:
        raise ValueError(
            f"dim must be in [{-tensor.ndim}, {tensor.ndim - 1}] for {name} of shape "
            f"{tuple(tensor.shape)}, got {dim}"
        )
    if torch.isnan(tensor).any():
        raise ValueError(f"{name} contains NaN at {int(torch.isnan(tensor).sum())} place(s)")
    if torch.isposinf(tensor).any():
        raise ValueError(f"{name} contains +inf; logits must be finite (or -inf to mask a class)")
    return tensor
