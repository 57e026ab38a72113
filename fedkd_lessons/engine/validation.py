"""Argument checks for every public entry point: declared beside the signature, checked before
any work is done, each failure a ``ValueError`` that names the argument and what it must be.

A function declares what each argument must be (as scikit-learn's ``validate_params`` does)::

    @checked_arguments(epochs=Integer(0), lr=Real(0, closed="neither"), optimizer=OneOf("adam", "sgd"))
    def train(model, images, targets, *, epochs, lr=1e-3, optimizer="adam"): ...

and a settings dataclass declares its fields the same way (:func:`check_fields` in
``__post_init__``). The constraints know their own violations (:meth:`Constraint.bad_examples`),
so the tests can reject every declared argument of every checked function without writing each
case by hand.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable as CallableType
from dataclasses import dataclass
from numbers import Integral, Real as RealNumber

import torch

CHECKED: list[CallableType] = []  # every function decorated with checked_arguments, for the tests


class Constraint:
    """What one argument must be. ``check`` returns the value (possibly converted) or raises."""

    description = "a valid value"

    def check(self, value, name: str):
        if not self.accepts(value):
            raise ValueError(f"{name} must be {self.description}, got {_shown(value)}")
        return value

    def accepts(self, value) -> bool:
        """Whether ``check`` passes (a constraint overrides this or ``check``, or both)."""
        try:
            self.check(value, "value")
        except ValueError:
            return False
        return True

    def bad_examples(self) -> list:
        """Values this constraint rejects (the tests feed them to every checked argument)."""
        return []


def _shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _scalar(value):
    """A one-element tensor or numpy scalar as a Python number; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
        return value.item()
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


@dataclass(frozen=True)
class Integer(Constraint):
    """An integer (not a bool) in ``[low, high]``; ``None`` leaves that side open."""

    low: int | None = None
    high: int | None = None

    @property
    def description(self) -> str:
        if self.high is None:
            return "an integer" if self.low is None else f"an integer >= {self.low}"
        return f"an integer <= {self.high}" if self.low is None else f"an integer in [{self.low}, {self.high}]"

    def check(self, value, name: str):
        return int(super().check(_scalar(value), name))

    def accepts(self, value) -> bool:
        value = _scalar(value)
        return (isinstance(value, Integral) and not isinstance(value, bool)
                and (self.low is None or value >= self.low) and (self.high is None or value <= self.high))

    def bad_examples(self) -> list:
        bad = [True, 2.5, "3", None]
        if self.low is not None:
            bad.append(self.low - 1)
        if self.high is not None:
            bad.append(self.high + 1)
        return bad


@dataclass(frozen=True)
class Real(Constraint):
    """A finite real number (not a bool) between ``low`` and ``high``; ``closed`` says which ends
    belong: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``. ``None`` leaves that side open."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __post_init__(self):
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"closed must be 'both', 'left', 'right' or 'neither', got {self.closed!r}")

    @property
    def description(self) -> str:
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"a finite number {'>=' if self.closed in ('both', 'left') else '>'} {self.low:g}"
        if self.low is None:
            return f"a finite number {'<=' if self.closed in ('both', 'right') else '<'} {self.high:g}"
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        return f"a number in {left}{self.low:g}, {self.high:g}{right}"

    def check(self, value, name: str):
        return float(super().check(_scalar(value), name))

    def accepts(self, value) -> bool:
        value = _scalar(value)
        if isinstance(value, bool) or not isinstance(value, RealNumber) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        return not (self.high is not None
                    and (value > self.high or (value == self.high and self.closed in ("left", "neither"))))

    def bad_examples(self) -> list:
        bad = [float("nan"), float("inf"), True, "1", None]
        if self.low is not None:
            bad.append(self.low - 1.0)
            if self.closed in ("right", "neither"):
                bad.append(self.low)
        if self.high is not None:
            bad.append(self.high + 1.0)
            if self.closed in ("left", "neither"):
                bad.append(self.high)
        return bad


class OneOf(Constraint):
    """One of the given options (compared with ``==``)."""

    def __init__(self, *options):
        if not options:
            raise ValueError("OneOf needs at least one option")
        self.options = options
        self.description = "one of " + ", ".join(repr(o) for o in options)

    def accepts(self, value) -> bool:
        return any(type(value) is type(option) and value == option for option in self.options)

    def bad_examples(self) -> list:
        return ["not an option", 12345]


class Callable(Constraint):
    """Something that can be called."""

    description = "callable"

    def accepts(self, value) -> bool:
        return callable(value)

    def bad_examples(self) -> list:
        # what a learner hands an exercise checker instead of a function: what calling it returned
        # (a tensor, a number), or None (what calling a function without its return gives)
        return [torch.zeros(2, 3), 0.5, None]


@dataclass(frozen=True)
class Instance(Constraint):
    """An instance of ``kind`` (a class or a tuple of classes)."""

    kind: type | tuple

    @property
    def description(self) -> str:
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join(("an " if k.__name__[0] in "AEIOUaeiou" else "a ") + k.__name__ for k in kinds)

    def accepts(self, value) -> bool:
        return isinstance(value, self.kind)

    def bad_examples(self) -> list:
        return [object()]


@dataclass(frozen=True)
class Tensor(Constraint):
    """A tensor (or something ``torch.as_tensor`` takes) with ``ndim`` dimensions (an int, a tuple
    of allowed counts, or ``None``: any), ``min_rows`` rows at least (1: no empty input), floating
    point or integer entries as ``dtype`` says (``"float"``, ``"integer"``, ``None``: either), and no
    NaN or infinity when ``finite``. ``check`` returns it as a tensor."""

    ndim: int | tuple[int, ...] | None = None
    min_rows: int = 1
    dtype: str | None = None
    finite: bool = True

    @property
    def description(self) -> str:
        parts = []
        if self.ndim is not None:
            counts = self.ndim if isinstance(self.ndim, tuple) else (self.ndim,)
            parts.append(f"with {' or '.join(str(c) for c in counts)} dimension(s)")
        if self.min_rows:
            parts.append(f"at least {self.min_rows} row(s)")
        if self.dtype:
            parts.append(f"{self.dtype} entries")
        if self.finite:
            parts.append("no NaN or infinity")
        return "a tensor " + ", ".join(parts) if parts else "a tensor"

    def check(self, value, name: str):
        try:
            tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(f"{name} must be {self.description}, got {_shown(value)}") from error
        counts = self.ndim if isinstance(self.ndim, tuple) else (self.ndim,)
        if self.ndim is not None and tensor.ndim not in counts:
            raise ValueError(f"{name} must have {' or '.join(str(c) for c in counts)} dimension(s), got shape "
                             f"{tuple(tensor.shape)}")
        if self.min_rows and (tensor.ndim == 0 or len(tensor) < self.min_rows):
            raise ValueError(f"{name} must have at least {self.min_rows} row(s), got shape {tuple(tensor.shape)}")
        if self.dtype == "float" and not tensor.is_floating_point():
            raise ValueError(f"{name} must hold floating-point numbers, got dtype {tensor.dtype}")
        if self.dtype == "integer" and (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool):
            raise ValueError(f"{name} must hold integers (class labels), got dtype {tensor.dtype}")
        if self.finite and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(f"{name} contains NaN or infinity at {bad} place(s)")
        return tensor

    def bad_examples(self) -> list:
        bad = ["not a tensor"]
        if self.finite:
            bad.append(torch.full((2,) * (self.ndim if isinstance(self.ndim, int) else 1), float("nan")))
        if self.min_rows:
            bad.append(torch.zeros((0,) + (1,) * ((self.ndim if isinstance(self.ndim, int) else 1) - 1)))
        if isinstance(self.ndim, int):
            bad.append(torch.zeros((2,) * (self.ndim + 1)))
        return bad


class Optional(Constraint):
    """``None`` or what ``inner`` accepts."""

    def __init__(self, inner: Constraint):
        self.inner = inner
        self.description = f"None or {inner.description}"

    def check(self, value, name: str):
        if value is None:
            return None
        if not self.inner.accepts(value):
            raise ValueError(f"{name} must be {self.description}, got {_shown(value)}")
        return self.inner.check(value, name)

    def accepts(self, value) -> bool:
        return value is None or self.inner.accepts(value)

    def bad_examples(self) -> list:
        return [bad for bad in self.inner.bad_examples() if bad is not None]


class Each(Constraint):
    """A non-empty sequence (list or tuple) whose every item ``inner`` accepts."""

    def __init__(self, inner: Constraint, min_length: int = 1):
        self.inner, self.min_length = inner, min_length
        self.description = f"a list or tuple of at least {min_length} item(s), each {inner.description}"

    def check(self, value, name: str):
        if not isinstance(value, (list, tuple)) or len(value) < self.min_length:
            raise ValueError(f"{name} must be {self.description}, got {_shown(value)}")
        return type(value)(self.inner.check(item, f"{name}[{k}]") for k, item in enumerate(value))

    def bad_examples(self) -> list:
        return ["not a list"] + ([[]] if self.min_length else []) + [[bad] for bad in self.inner.bad_examples()[:2]]


def check(value, name: str, constraint: Constraint):
    """``value`` checked (and converted) by ``constraint``; a ``ValueError`` naming ``name`` if not."""
    return constraint.check(value, name)


def check_fields(instance, **constraints: Constraint) -> None:
    """Check a dataclass's fields in ``__post_init__``, converting in place (frozen ones too)."""
    for name, constraint in constraints.items():
        object.__setattr__(instance, name, constraint.check(getattr(instance, name), name))


def checked_arguments(**constraints: Constraint):
    """Decorator: check the named arguments (given or defaulted) before the function runs, and
    pass them on converted (an ``Integer`` as ``int``, a ``Tensor`` as a tensor, ...).

    The wrapped function gains ``check_arguments(**some)``, which checks only the arguments given
    (the tests use it to reject each declared argument's bad values without running the body).
    """

    def decorate(function):
        signature = inspect.signature(function)
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"{function.__qualname__} has no parameter(s) {sorted(unknown)} to check")

        def check_arguments(**arguments):
            for name, constraint in constraints.items():
                if name in arguments:
                    arguments[name] = constraint.check(arguments[name], name)
            return arguments

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            bound.arguments.update(check_arguments(**{k: bound.arguments[k] for k in constraints}))
            return function(*bound.args, **bound.kwargs)

        wrapper.check_arguments = check_arguments
        wrapper.constraints = dict(constraints)
        CHECKED.append(wrapper)
        return wrapper

    return decorate


# The checks most modules call inline (in dataclasses' __post_init__ and helpers), written once
# with the constraints above.

POSITIVE = Real(0, closed="neither")
FRACTION = Real(0, 1)


def check_positive_finite(value, name: str) -> float:
    """``value`` as a float if it is a finite number > 0, else a ``ValueError`` naming ``name``."""
    return POSITIVE.check(value, name)


def check_fraction(value, name: str) -> float:
    """``value`` as a float if it lies in [0, 1], else a ``ValueError`` naming ``name``."""
    return FRACTION.check(value, name)


def check_int_at_least(value, name: str, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum``, else a ``ValueError`` naming ``name``."""
    return Integer(minimum).check(value, name)


def as_logits(logits, name: str = "logits", dim: int = -1) -> torch.Tensor:
    """``logits`` as a floating tensor after checking it has a class dimension ``dim`` and no NaN
    or +inf (``-inf`` is allowed: it masks a class out)."""
    tensor = Tensor(min_rows=0, finite=False).check(logits, name)
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
