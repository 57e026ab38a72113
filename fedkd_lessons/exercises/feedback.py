"""What every checker shares: the Feedback it returns and the way it reports a mistake.

Convention (every lesson): the learner writes a function between nbgrader's
``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers; the next cell calls a checker from this
module with that function. A checker runs the function on several inputs, edge cases included,
against the package's reference, and returns a :class:`Feedback` that prints as one sentence:
what is right, or exactly what is wrong and a hint. A stub that still raises
``NotImplementedError`` gets "not solved yet", never a traceback. Each checker declares its
arguments (``@checked_arguments(softmax_fn=Callable())`` above ``@checker``): an answer that is no
function (what calling it returned, a tensor or a number, or ``None``) is refused at once with a
``ValueError`` that names the argument, before anything runs.

Grading: under ``nbgrader autograde`` (or ``validate``), which sets the ``NBGRADER_EXECUTION``
environment variable for the kernel, a check that does not pass raises :class:`NotPassed` with the
same sentence, so the check cell ends in an error and nbgrader gives it zero points (it gives a
test cell its points when it runs without error). A learner running the notebook never sees that
traceback, and "Run all" goes on past an unsolved exercise.
"""

import functools
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Feedback:
    """The outcome of a check: ``status`` is ``"correct"``, ``"wrong"`` or ``"not solved"``."""

    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "correct"

    def __repr__(self) -> str:
        return self.message


class Wrong(Exception):
    """Raised inside a check to report what is wrong (the message is shown to the learner)."""


class NotPassed(AssertionError):
    """Raised by a checker under nbgrader's grading run when the answer does not pass (zero points)."""


def grading() -> bool:
    """True inside ``nbgrader autograde`` or ``nbgrader validate`` (nbgrader sets ``NBGRADER_EXECUTION``)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def graded(feedback: Feedback) -> Feedback:
    """``feedback`` itself, or :class:`NotPassed` raised when nbgrader is grading and it did not pass."""
    if grading() and not feedback.passed:
        raise NotPassed(feedback.message)
    return feedback


def checker(success: str):
    """Turn ``check(answer)``, which raises :class:`Wrong` on a mistake, into a Feedback-returning checker.
    A check may return a sentence (what the learner's code measured, for an experiment); it is
    appended to ``success``."""

    def decorate(check):
        @functools.wraps(check)
        def run(answer, *args, **kwargs) -> Feedback:
            return graded(outcome(answer, *args, **kwargs))

        def outcome(answer, *args, **kwargs) -> Feedback:
            try:
                extra = check(answer, *args, **kwargs)
            except NotImplementedError:
                return Feedback("not solved", "⏳ Not solved yet: replace `raise NotImplementedError` with your answer, then run this cell again.")
            except Wrong as wrong:
                return Feedback("wrong", f"❌ Not yet: {wrong}")
            except Exception as error:  # the learner's code failed: say how, without a traceback
                return Feedback("wrong", f"❌ Not yet: your function raised {type(error).__name__}: {error}")
            return Feedback("correct", f"✅ Correct! {success}" + (f" {extra}" if extra else ""))

        return run

    return decorate


def as_tensor_answer(value, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Wrong(f"{what} should return a torch.Tensor, got {type(value).__name__}.")
    return value


def assert_close_answer(got: torch.Tensor, expected: torch.Tensor, case: str, hint: str) -> None:
    if got.shape != expected.shape:
        raise Wrong(f"{case}: the result has shape {tuple(got.shape)}, expected {tuple(expected.shape)}. {hint}")
    if not torch.isfinite(got).all():
        raise Wrong(f"{case}: the result contains NaN or inf. {hint}")
    if not torch.allclose(got.double(), expected.double(), atol=1e-5, rtol=1e-4):
        worst = float((got.double() - expected.double()).abs().max())
        raise Wrong(f"{case}: off by up to {worst:.3g} from the right values. {hint}")
