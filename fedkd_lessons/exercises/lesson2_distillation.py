"""Checkers for lesson 2's exercises: the distillation loss (and the omitted-class student it
trains), its gradient, the omitted-class bias shift."""

import math

import torch
import torch.nn.functional as F

from fedkd_lessons.distillation import choose_bias_shift, distillation_loss
from fedkd_lessons.engine.validation import Callable, Optional, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, checker


def _scalar(value, what: str) -> float:
    value = as_tensor_answer(value, what)
    if value.numel() != 1:
        raise Wrong(f"{what} should return one number (a 0-d tensor), got shape {tuple(value.shape)}: "
                    "average over the examples.")
    return float(value)


def _soft_term(student, teacher, temperature, reverse=False):
    """alpha = 1 soft term written out independently: T^2 * mean_n KL(p_n || q_n) (or KL(q || p))."""
    p = torch.softmax(teacher / temperature, dim=1)
    q = torch.softmax(student / temperature, dim=1)
    first, second = (q, p) if reverse else (p, q)
    return temperature**2 * (first * (first.log() - second.log())).sum(dim=1).mean()


@checked_arguments(loss_fn=Callable(), omitted_class_run=Optional(Callable()))
@checker("Your loss matches alpha·T²·KL(teacher‖student) per example, averaged over the batch, plus (1−alpha)·CE, "
         "and it stays finite on logits of 1e4.")
def check_distillation_loss(loss_fn, omitted_class_run=None):
    """Lesson 2: ``loss_fn(student_logits (N, C), teacher_logits (N, C), targets (N,), temperature, alpha) -> scalar``.

    ``omitted_class_run`` (``loss_fn -> share``), the experiment: section 6's student trained with
    the learner's loss on a transfer set without 3s, returning the share of test 3s it then gets
    right (:func:`fedkd_lessons.experiments.lesson2_distillation.omitted_class_share_with`). The
    distilled students of the lesson get most of them; the check asks for more than half."""
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(6, 10, generator=generator) * 2
    teacher = torch.randn(6, 10, generator=generator) * 3
    targets = torch.randint(0, 10, (6,), generator=generator)

    got = _scalar(loss_fn(student, teacher, targets, 4.0, 0.0), "loss_fn(..., alpha=0)")
    if not math.isclose(got, float(F.cross_entropy(student, targets)), rel_tol=1e-4, abs_tol=1e-6):
        hint = ("that is the soft term alone: alpha weights the soft term and (1 − alpha) the cross-entropy, "
                "not the other way round." if math.isclose(got, float(_soft_term(student, teacher, 4.0)), rel_tol=1e-4)
                else "The hard term uses the raw logits, not logits / T.")
        raise Wrong(f"with alpha = 0 the loss should be the plain cross-entropy at T = 1, "
                    f"{float(F.cross_entropy(student, targets)):.4f}, got {got:.4f}. {hint}")

    for temperature in (1.0, 4.0):
        got = _scalar(loss_fn(student, teacher, targets, temperature, 1.0), f"loss_fn(..., T={temperature:g}, alpha=1)")
        expected = float(_soft_term(student, teacher, temperature))
        if math.isclose(got, expected, rel_tol=1e-4):
            continue
        hints = {
            expected / temperature**2: "multiply the KL by T² (Hinton's fix for the 1/T² shrinking gradients).",
            expected / 10: "average the KL over the examples only (reduction='batchmean'), not over all N·C elements.",
            expected / 10 / temperature**2: "use reduction='batchmean' instead of the mean over all elements, and multiply by T².",
            float(_soft_term(student, teacher, temperature, reverse=True)):
                "the teacher's distribution p comes first: KL(p‖q) = Σ p (log p − log q).",
        }
        hint = next((h for value, h in hints.items() if math.isclose(got, value, rel_tol=1e-4)),
                    "soft term = T² · mean over examples of Σ_i p_i (log p_i − log q_i), both softened at T.")
        raise Wrong(f"with alpha = 1 and T = {temperature:g} the loss should be {expected:.4f}, got {got:.4f}: {hint}")

    got = _scalar(loss_fn(student, teacher, targets, 2.5, 0.7), "loss_fn(..., T=2.5, alpha=0.7)")
    expected = float(distillation_loss(student, teacher, targets, 2.5, 0.7))
    if not math.isclose(got, expected, rel_tol=1e-4):
        raise Wrong(f"with T = 2.5 and alpha = 0.7 the loss should be {expected:.4f}, got {got:.4f}: "
                    "weight the soft term by alpha and the hard term by (1 − alpha).")

    same = _scalar(loss_fn(teacher, teacher, targets, 3.0, 1.0), "loss_fn(teacher, teacher, ...)")
    if abs(same) > 1e-5:
        raise Wrong(f"a student equal to its teacher should have a zero soft term, got {same:.3g}.")

    large_student = torch.tensor([[1e4, 0.0, -1e4], [0.0, 1e4, 5.0]])
    large_teacher = torch.tensor([[1e4, 1e4 - 2, 0.0], [3.0, 1e4, 0.0]])
    large_targets = torch.tensor([0, 1])
    got = _scalar(loss_fn(large_student, large_teacher, large_targets, 2.0, 0.9), "loss_fn(large logits, ...)")
    expected = float(distillation_loss(large_student, large_teacher, large_targets, 2.0, 0.9))
    if not math.isfinite(got) or not math.isclose(got, expected, rel_tol=1e-3, abs_tol=1e-4):
        raise Wrong(f"on logits of size 1e4 the loss should be {expected:.4f}, got {got}: softmax then log "
                    "underflows to log 0; use F.log_softmax (the log-sum-exp trick).")
    if omitted_class_run is None:
        return None
    try:
        share = float(omitted_class_run(loss_fn))
    except RuntimeError as error:
        raise Wrong(f"training a student with your loss failed ({error}). Compute it with torch operations on "
                    "student_logits so that gradients flow: no .item(), .detach(), float() or numpy inside.") from error
    if share <= 0.5:
        raise Wrong(f"your loss has the right values, but a student trained with it on digits without a single 3 gets "
                    f"only {100 * share:.0f} % of the test 3s right after the bias shift; the lesson's distilled student "
                    "gets most of them. Does the soft term really use the teacher's logits, with gradients "
                    "flowing into student_logits?")
    return ("Trained with it, a student that never saw a 3 gets more than half of the test 3s right after the bias "
            "shift chosen on validation: section 6's effect, produced by your loss.")


@checked_arguments(gradient_fn=Callable())
@checker("Your gradient is Hinton's Eq. 2, (q − p)/T, and matches autograd.")
def check_soft_gradient(gradient_fn) -> None:
    """Lesson 2: ``gradient_fn(student_logits (C,), teacher_logits (C,), temperature) -> (C,)``, the
    gradient of the soft cross-entropy ``C = -sum_i p_i log q_i`` (no T^2 factor) w.r.t. ``z``."""
    generator = torch.Generator().manual_seed(4)
    for temperature in (1.0, 3.0, 10.0):
        student = torch.randn(10, generator=generator, dtype=torch.float64) * 2
        teacher = torch.randn(10, generator=generator, dtype=torch.float64) * 3
        z = student.clone().requires_grad_(True)
        p = torch.softmax(teacher / temperature, dim=0)
        (-(p * torch.log_softmax(z / temperature, dim=0)).sum()).backward()
        expected = z.grad
        got = as_tensor_answer(gradient_fn(student.clone(), teacher.clone(), temperature), "gradient_fn(...)").double()
        if got.shape != expected.shape:
            raise Wrong(f"for 10 classes return 10 partial derivatives, got shape {tuple(got.shape)}.")
        if torch.allclose(got, expected, atol=1e-6, rtol=1e-5):
            continue
        hint = "dC/dz_i = (q_i − p_i) / T with q = softmax(z/T), p = softmax(v/T)."
        if torch.allclose(got, -expected, atol=1e-6, rtol=1e-5):
            hint = "the sign is flipped: it is student minus teacher, (q − p)/T."
        elif temperature != 1 and torch.allclose(got, expected * temperature, atol=1e-6, rtol=1e-5):
            hint = "you forgot the 1/T from the chain rule through z/T."
        elif temperature != 1 and torch.allclose(got, expected * temperature**2, atol=1e-6, rtol=1e-5):
            hint = "that is the gradient of T²·C; Eq. 2 is for C alone, (q − p)/T."
        raise Wrong(f"at T = {temperature:g} your gradient is off by up to "
                    f"{float((got - expected).abs().max()):.3g}: {hint}")


def _bias_case():
    """Validation logits where raising class 3 by 2 fixes two of three 3s without stealing any 8
    (best overall = 2.0), while 4 is needed to get every 3 right and then turns the 8s into 3s."""
    logits, labels = [], []
    for margin in (1.5, 1.8, 3.5):  # 3s that look like 8s: the 3 logit trails by `margin`
        row = torch.zeros(10)
        row[8], row[3] = 4.0, 4.0 - margin
        logits.append(row); labels.append(3)
    for margin in (3.0, 2.5, 2.2):  # 8s whose 3 logit trails by `margin`
        row = torch.zeros(10)
        row[8], row[3] = 3.0, 3.0 - margin
        logits.append(row); labels.append(8)
    for digit in (0, 1, 2):
        row = torch.zeros(10)
        row[digit] = 5.0
        logits.append(row); labels.append(digit)
    return torch.stack(logits), torch.tensor(labels)


def _reject_an_index(got, shifts, expected) -> None:
    """An integer answer that is the position of the right shift in ``shifts`` (``argmax``'s result)."""
    if isinstance(got, int) and got != expected and 0 <= got < len(shifts) and shifts[got] == expected:
        raise Wrong(f"you returned {got}, the position of the best shift in `shifts`; return the shift itself, "
                    f"shifts[{got}] = {expected:g}.")


@checked_arguments(choose_fn=Callable())
@checker("You pick the bias shift with the best overall validation accuracy, the smallest one on a tie.")
def check_bias_shift_choice(choose_fn) -> None:
    """Lesson 2: ``choose_fn(logits (N, C), labels (N,), class_index, shifts) -> best shift (float)``."""
    logits, labels = _bias_case()
    shifts = [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0]  # the best, 2.0, is not at position 2: an index is told apart
    expected, accuracies = choose_bias_shift(logits, labels, 3, shifts)
    got = choose_fn(logits.clone(), labels.clone(), 3, list(shifts))
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)):
        raise Wrong(f"return one shift (a number from `shifts`), got {type(got).__name__}.")
    _reject_an_index(got, shifts, expected)
    if got not in shifts:
        raise Wrong(f"return one of the candidate shifts, not an accuracy or an index; got {got!r}.")
    if got != expected:
        position = shifts.index(got)
        is_three = labels == 3
        recalls = [(logits[is_three, 3] + shift > logits[is_three].amax(dim=1)).float().mean().item() for shift in shifts]
        if recalls[position] == max(recalls) and recalls[position] > recalls[shifts.index(expected)]:
            raise Wrong(f"you chose {got:g}, which gets the most 3s right but turns other digits into 3s (overall "
                        f"accuracy {float(accuracies[position]):.2f}, against {float(accuracies.max()):.2f} at "
                        f"{expected:g}): maximise the accuracy over all classes.")
        raise Wrong(f"shift {got:g} gives validation accuracy {float(accuracies[position]):.2f}, but {expected:g} gives "
                    f"{float(accuracies.max()):.2f}. Add the shift to the class's logit (not subtract it) and keep the best.")
    tie_logits = torch.eye(10)[:4] * 5
    tie_labels = torch.arange(4)
    got = choose_fn(tie_logits, tie_labels, 3, [2.0, 0.0, 1.0])
    if isinstance(got, torch.Tensor):
        got = got.item()
    _reject_an_index(got, [2.0, 0.0, 1.0], 0.0)
    if got != 0.0:
        raise Wrong(f"when several shifts tie (here every shift up to 2 keeps all four digits right), return the "
                    f"smallest, 0; got {got!r}.")
