"""Checkers for lesson 4's exercises: the EWC penalty, one distillation adaptation step, the largest
EWC lambda that plain SGD with momentum survives, and an early-stopped adaptation loop."""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.distillation import distillation_loss
from fedkd_lessons.engine.models import make_mlp
from fedkd_lessons.engine.validation import Callable, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


def _penalty_case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    shapes = {"layer.weight": (3, 4), "layer.bias": (3,)}
    params = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    global_params = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    fisher = {name: torch.rand(shape, generator=generator) for name, shape in shapes.items()}
    return params, global_params, fisher


def _hand_penalty(params, global_params, fisher, ewc_lambda):
    return ewc_lambda / 2 * sum((fisher[n] * (params[n] - global_params[n]) ** 2).sum() for n in params)


@checked_arguments(penalty_fn=Callable())
@checker("Your EWC penalty is a spring on every weight, stiffness lambda * F_i, pulling it back to the global value.")
def check_ewc_penalty(penalty_fn) -> None:
    """Lesson 4: ``penalty_fn(params, global_params, fisher, ewc_lambda) -> scalar tensor`` with
    ``lambda/2 * sum_i F_i (theta_i - theta_fed_i)^2`` over every entry of every tensor (dicts name -> tensor)."""
    one = {"w": torch.tensor([1.0, 3.0])}
    anchor = {"w": torch.tensor([0.0, 1.0])}
    stiffness = {"w": torch.tensor([2.0, 0.5])}
    got = as_tensor_answer(penalty_fn(one, anchor, stiffness, 10.0), "penalty_fn")
    # By hand: 10/2 * (2 * 1^2 + 0.5 * 2^2) = 5 * 4 = 20.
    if got.numel() == 1:
        value = float(got)
        if math.isclose(value, 40.0, rel_tol=1e-5):
            raise Wrong("for F = [2, 0.5], theta - theta_fed = [1, 2], lambda = 10 you gave 40, twice the answer 20: "
                        "the penalty is lambda / 2 times the sum.")
        if math.isclose(value, 25.0, rel_tol=1e-5):
            raise Wrong("you gave 25 = 10/2 * (1 + 4): the Fisher is missing; weigh each squared change by F_i.")
        if math.isclose(value, 15.0, rel_tol=1e-5):
            raise Wrong("you gave 15 = 10/2 * (2 * 1 + 0.5 * 2): square the change (theta_i - theta_fed_i)^2.")
    if got.shape != torch.Size([]) and got.numel() != 1:
        raise Wrong(f"return one number (a scalar tensor), got shape {tuple(got.shape)}: sum over every entry.")
    assert_close_answer(got.reshape(()), torch.tensor(20.0), "one tensor, F = [2, 0.5], change [1, 2], lambda = 10",
                        "10/2 * (2 * 1^2 + 0.5 * 2^2) = 20.")
    zero = as_tensor_answer(penalty_fn(one, anchor, stiffness, 0.0), "penalty_fn")
    assert_close_answer(zero.reshape(()), torch.tensor(0.0), "lambda = 0", "With lambda = 0 there is no penalty.")
    at_home = as_tensor_answer(penalty_fn(anchor, anchor, stiffness, 10.0), "penalty_fn")
    assert_close_answer(at_home.reshape(()), torch.tensor(0.0), "theta equal to theta_fed",
                        "At the global weights the spring is relaxed: the penalty is 0.")
    for seed in (1, 2):
        params, global_params, fisher = _penalty_case(seed)
        got = as_tensor_answer(penalty_fn(params, global_params, fisher, 5000.0), "penalty_fn")
        expected = _hand_penalty(params, global_params, fisher, 5000.0)
        if got.numel() == 1 and math.isclose(float(got), float(_hand_penalty(
                {n: params[n] for n in ["layer.weight"]}, global_params, fisher, 5000.0)), rel_tol=1e-5):
            raise Wrong("only the first tensor counted: sum over EVERY tensor of the state (weights and biases).")
        assert_close_answer(got.reshape(()), expected, "two tensors (a weight and a bias), lambda = 5000",
                            "Sum F * (theta - theta_fed)^2 over every entry of every tensor, then times lambda / 2.")
    params, global_params, fisher = _penalty_case(3)
    params = {name: value.clone().requires_grad_(True) for name, value in params.items()}
    got = as_tensor_answer(penalty_fn(params, global_params, fisher, 2.0), "penalty_fn")
    if not got.requires_grad:
        raise Wrong("the result carries no gradient: keep it a tensor computed from the parameters (no .item(), "
                    "no float(), no torch.no_grad()), or the optimiser cannot feel the spring.")
    got.reshape(()).backward()
    for name, value in params.items():
        assert_close_answer(value.grad, 2.0 * fisher[name] * (value.detach() - global_params[name]),
                            f"the gradient w.r.t. {name!r}", "d/dtheta_i = lambda * F_i * (theta_i - theta_fed_i).")


def _step_case(seed: int):
    with torch.random.fork_rng():  # the learner's notebook keeps its own random stream
        torch.manual_seed(seed)
        teacher = make_mlp(hidden=(6,), num_classes=4, image_size=2)
        student = copy.deepcopy(teacher)
        with torch.no_grad():
            for parameter in student.parameters():
                parameter.add_(0.3 * torch.randn_like(parameter))
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(5, 1, 2, 2, generator=generator)
    labels = torch.randint(0, 4, (5,), generator=generator)
    return student, teacher, images, labels


def _reference_step(student, teacher, images, labels, temperature, alpha, lr):
    with torch.no_grad():
        teacher_logits = teacher(images)
    loss = distillation_loss(student(images), teacher_logits, labels, temperature=temperature, alpha=alpha)
    grads = torch.autograd.grad(loss, list(student.parameters()))
    with torch.no_grad():
        for parameter, grad in zip(student.parameters(), grads):
            parameter -= lr * grad
    return loss.detach().item()


def _loss_hint(got, student_before, student_after, teacher, images, labels, temperature, alpha) -> str:
    """What a wrong loss value most likely is: the loss after the step, or the soft term without T²."""
    with torch.no_grad():
        teacher_logits, logits = teacher(images), student_before(images)
        after = float(distillation_loss(student_after(images), teacher_logits, labels, temperature=temperature,
                                        alpha=alpha))
        soft = float(distillation_loss(logits, teacher_logits, labels, temperature=temperature, alpha=1.0))
        without_t_squared = alpha * soft / temperature**2 + (1 - alpha) * float(F.cross_entropy(logits, labels))
    if math.isclose(got, after, rel_tol=1e-4):
        return "that is the loss after the step; return the one computed before it."
    if alpha > 0 and math.isclose(got, without_t_squared, rel_tol=1e-4):
        return "multiply the soft term by T² (distillation_loss does: Hinton's fix for the 1/T² gradients)."
    return "loss = distillation_loss(student(x), teacher(x), y, T, alpha), computed before the step."


def _check_distill_step_by_hand(step_fn) -> None:
    """A case small enough to work out on paper: a linear student at zero (logits [0, 0], softmax
    [1/2, 1/2]) and a teacher with logits [ln 3, 0] (softmax [3/4, 1/4]) on one image x = 1 of
    class 0, T = 1, alpha = 1/2, lr = 1.

    Loss: 1/2 KL([3/4, 1/4] || [1/2, 1/2]) + 1/2 CE = 1/2 (3/4 ln 3/2 + 1/4 ln 1/2) + 1/2 ln 2 = 0.41198.
    Gradient on the logits: 1/2 ([1/2, 1/2] - [3/4, 1/4]) + 1/2 ([1/2, 1/2] - [1, 0]) = [-3/8, 3/8],
    so with x = 1 the student's weight and bias both become [3/8, -3/8]."""
    student, teacher = nn.Linear(1, 2), nn.Linear(1, 2)
    with torch.no_grad():
        for parameter in (*student.parameters(), teacher.weight):
            parameter.zero_()
        teacher.bias.copy_(torch.tensor([math.log(3.0), 0.0]))
    case = "by hand: student logits [0, 0], teacher logits [ln 3, 0], label 0, T = 1, alpha = 0.5, lr = 1"
    got_loss = step_fn(student, teacher, torch.ones(1, 1), torch.tensor([0]), 1.0, 0.5, 1.0)
    expected_loss = 0.5 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) + 0.5 * math.log(2.0)
    if isinstance(got_loss, torch.Tensor):
        got_loss = float(got_loss.detach())
    if not isinstance(got_loss, (int, float)) or not math.isclose(got_loss, expected_loss, rel_tol=1e-4):
        raise Wrong(f"{case}: the loss before the step is 1/2 (3/4 ln 3/2 + 1/4 ln 1/2) + 1/2 ln 2 = "
                    f"{expected_loss:.5f}, got {got_loss!r}.")
    if not torch.equal(teacher.weight, torch.zeros(2, 1)) or not torch.equal(teacher.bias, torch.tensor([math.log(3.0), 0.0])):
        raise Wrong(f"{case}: the teacher changed. The global model is frozen: compute its logits under torch.no_grad() "
                    "(or detach them) and step only the student's parameters.")
    if torch.allclose(student.bias.detach(), torch.tensor([-0.375, 0.375])):
        raise Wrong(f"{case}: the student moved to [-3/8, 3/8], UP the gradient; a descent step is theta <- theta - lr * grad.")
    for name in ("weight", "bias"):
        assert_close_answer(getattr(student, name).detach().reshape(-1), torch.tensor([0.375, -0.375]),
                            f"{case}, the student's {name}",
                            "The gradient on the logits is alpha T (q_T - p_T) + (1 - alpha)(q - onehot(y)) = "
                            "[-3/8, 3/8]; one step of lr 1 moves weight and bias to [3/8, -3/8].")


@checked_arguments(step_fn=Callable())
@checker("Your step moves the student along the distillation gradient and leaves the teacher frozen.")
def check_distill_step(step_fn) -> None:
    """Lesson 4: ``step_fn(student, teacher, images, labels, temperature, alpha, lr) -> float``: one
    plain gradient step (no momentum) on ``distillation_loss(student(images), teacher(images), labels,
    temperature, alpha)`` that updates the student in place and returns the loss before the step."""
    _check_distill_step_by_hand(step_fn)
    for seed, temperature, alpha, lr in ((0, 6.0, 0.95, 0.5), (1, 2.0, 0.5, 0.1), (2, 4.0, 0.0, 0.2)):
        student, teacher, images, labels = _step_case(seed)
        teacher_before = copy.deepcopy(teacher.state_dict())
        expected_student = copy.deepcopy(student)
        expected_loss = _reference_step(expected_student, teacher, images, labels, temperature, alpha, lr)
        case = f"T = {temperature:g}, alpha = {alpha:g}, lr = {lr:g}"
        got_loss = step_fn(student, teacher, images, labels, temperature, alpha, lr)
        for name, value in teacher.state_dict().items():
            if not torch.equal(value, teacher_before[name]):
                raise Wrong(f"{case}: the teacher's {name!r} changed. The global model is frozen: compute its logits "
                            "under torch.no_grad() (or detach them) and step only the student's parameters.")
        if isinstance(got_loss, torch.Tensor) and got_loss.numel() == 1:
            got_loss = float(got_loss.detach())
        if not isinstance(got_loss, (int, float)):
            raise Wrong(f"{case}: return the loss before the step as a number, expected {expected_loss:.4f}, "
                        f"got {got_loss!r}.")
        if not math.isclose(got_loss, expected_loss, rel_tol=1e-4, abs_tol=1e-6):
            raise Wrong(f"{case}: your loss before the step is {got_loss:.4f}, expected {expected_loss:.4f}: "
                        + _loss_hint(got_loss, _step_case(seed)[0], expected_student, teacher, images, labels,
                                     temperature, alpha))
        start = dict(_step_case(seed)[0].named_parameters())
        for (name, got), expected in zip(student.named_parameters(), expected_student.parameters()):
            moved = got.detach() - start[name].detach()
            wanted = expected.detach() - start[name].detach()
            if torch.allclose(moved, -wanted, atol=1e-6) and wanted.abs().max() > 1e-6:
                raise Wrong(f"{case}: {name!r} moved UP the gradient; a descent step is theta <- theta - lr * grad.")
            if torch.allclose(moved, torch.zeros_like(moved)) and wanted.abs().max() > 1e-6:
                raise Wrong(f"{case}: the student's {name!r} did not change; update it in place "
                            "(with torch.no_grad(): parameter -= lr * parameter.grad).")
            assert_close_answer(got.detach(), expected.detach(), f"{case}, student parameter {name!r}",
                                "One step: loss = distillation_loss(student(x), teacher(x), y, T, alpha); "
                                "theta <- theta - lr * d loss / d theta.")
    student, teacher, images, labels = _step_case(3)
    expected_student = copy.deepcopy(student)
    for _ in range(2):
        _reference_step(expected_student, teacher, images, labels, 6.0, 0.95, 0.5)
        step_fn(student, teacher, images, labels, 6.0, 0.95, 0.5)
    for (name, got), expected in zip(student.named_parameters(), expected_student.parameters()):
        assert_close_answer(got.detach(), expected.detach(), f"two steps in a row, parameter {name!r}",
                            "Clear the old gradients before each backward pass (zero_grad, or torch.autograd.grad): "
                            "PyTorch adds new gradients to the old ones.")
    # alpha = 0 must be a plain cross-entropy step (the distill-equals-finetune limit).
    student, teacher, images, labels = _step_case(4)
    plain = copy.deepcopy(student)
    loss = F.cross_entropy(plain(images), labels)
    grads = torch.autograd.grad(loss, list(plain.parameters()))
    step_fn(student, teacher, images, labels, 6.0, 0.0, 0.3)
    for (name, got), start, grad in zip(student.named_parameters(), plain.parameters(), grads):
        assert_close_answer(got.detach(), start.detach() - 0.3 * grad, f"alpha = 0, parameter {name!r}",
                            "With alpha = 0 the step is a plain cross-entropy (fine-tuning) step.")


@checked_arguments(lambda_fn=Callable())
@checker("Right: past lr * lambda * max F = 2(1 + momentum) the spring throws the weights further each step.")
def check_max_stable_lambda(lambda_fn) -> None:
    """Lesson 4: ``lambda_fn(fisher, lr, momentum) -> float``: the largest ``lambda`` for which SGD with
    momentum ``beta`` stays stable on the EWC penalty, ``2 (1 + beta) / (lr * max_i F_i)``."""
    fisher = {"a": torch.tensor([0.1, 0.4]), "b": torch.tensor([[0.2], [0.05]])}

    def ask(lr, momentum, case):
        value = lambda_fn(fisher, lr, momentum)
        if isinstance(value, torch.Tensor):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Wrong(f"{case}: return one finite number, got {value!r}.")
        return float(value)

    plain = ask(0.01, 0.0, "lr = 0.01, no momentum")
    if math.isclose(plain, 1 / (0.01 * 0.4), rel_tol=1e-6):
        raise Wrong("with no momentum you gave 1 / (lr * max F) = 250; a step multiplies the distance to theta_fed by "
                    "1 - lr * lambda * F, which leaves [-1, 1] at lr * lambda * F = 2: the answer is 500.")
    if math.isclose(plain, 2 / (0.01 * (0.1 + 0.4 + 0.2 + 0.05)), rel_tol=1e-6) or math.isclose(
            plain, 2 / (0.01 * 0.1875), rel_tol=1e-6):
        raise Wrong(f"you gave {plain:.1f}: use the LARGEST Fisher value, the stiffest spring; it is the first to "
                    "break, whatever the others do.")
    if not math.isclose(plain, 500.0, rel_tol=1e-6):
        raise Wrong(f"with lr = 0.01, no momentum and max F = 0.4 the limit is 2 / (0.01 * 0.4) = 500, got {plain:.4g}.")
    heavy = ask(0.01, 0.9, "lr = 0.01, momentum 0.9")
    if math.isclose(heavy, 500.0, rel_tol=1e-6):
        raise Wrong("with momentum 0.9 you gave the plain-SGD limit 500; momentum widens the stable range to "
                    "lr * lambda * F < 2 (1 + beta): the answer is 950.")
    if not math.isclose(heavy, 950.0, rel_tol=1e-6):
        raise Wrong(f"with lr = 0.01, momentum 0.9 and max F = 0.4 the limit is 2 * 1.9 / (0.01 * 0.4) = 950, "
                    f"got {heavy:.4g}.")
    other = ask(0.001, 0.5, "lr = 0.001, momentum 0.5")
    if not math.isclose(other, 2 * 1.5 / (0.001 * 0.4), rel_tol=1e-6):
        raise Wrong(f"with lr = 0.001 and momentum 0.5 the limit is 2 * 1.5 / (0.001 * 0.4) = 7500, got {other:.4g}.")


class _Scripted(nn.Module):
    """A one-weight model whose validation accuracy is read from a script: after ``e`` epochs its weight
    is ``e`` (each epoch adds 1), and its score is ``scores[e]``."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


def _scripted_run(stop_fn, scores, case):
    model = _Scripted()
    calls = {"train": 0, "score": 0}

    def train_one_epoch(m):
        calls["train"] += 1
        with torch.no_grad():
            m.weight += 1.0

    def validation_accuracy(m):
        calls["score"] += 1
        epoch = int(round(float(m.weight.detach())))
        if not 0 <= epoch < len(scores):
            raise Wrong(f"{case}: the model was trained {epoch} epochs, more than max_epochs = {len(scores) - 1}.")
        return scores[epoch]

    best = stop_fn(model, train_one_epoch, validation_accuracy, len(scores) - 1)
    if isinstance(best, torch.Tensor):
        best = int(best)
    if calls["train"] != len(scores) - 1:
        raise Wrong(f"{case}: train_one_epoch was called {calls['train']} times; call it once per epoch, "
                    f"max_epochs = {len(scores) - 1} times.")
    if calls["score"] != len(scores):
        raise Wrong(f"{case}: validation_accuracy was called {calls['score']} times; score the model before any "
                    f"training (epoch 0, the global model itself) and after every epoch: {len(scores)} times.")
    return best, float(model.weight.detach())


def _reference_best_epoch(scores) -> int:
    best = 0
    for epoch, score in enumerate(scores):
        if score > scores[best]:
            best = epoch
    return best


@checked_arguments(stop_fn=Callable())
@checker("Your loop keeps the best epoch on the client's own validation images, the global model (epoch 0) included.")
def check_early_stopping(stop_fn) -> None:
    """Lesson 4: ``stop_fn(model, train_one_epoch, validation_accuracy, max_epochs) -> int``: score the model
    (epoch 0), then ``max_epochs`` times train one epoch and score; keep a copy of the weights of the best
    epoch (the earliest among ties), load them into ``model`` at the end and return that epoch."""
    # By hand: the best score 1.0 first appears after 5 epochs; the model must end with weight 5.
    scores = [0.5, 0.5, 0.75, 0.75, 0.5, 1.0, 1.0, 0.25]
    best, weight = _scripted_run(stop_fn, scores, "validation scores 0.5, 0.5, 0.75, 0.75, 0.5, 1, 1, 0.25")
    if best == 7 or (best == 5 and weight == 7):
        raise Wrong("the model ends with the weights of the LAST epoch (7), whose validation score is 0.25: keep a "
                    "copy of the best weights (copy.deepcopy(model.state_dict()); a bare state_dict() follows the "
                    "live weights as they train) and load it back at the end.")
    if best == 6:
        raise Wrong("epochs 5 and 6 both score 1.0 and you kept 6: among ties keep the earliest, fewer epochs "
                    "from the global model (replace the best only when a score is strictly higher).")
    if best != 5 or weight != 5.0:
        raise Wrong(f"the scores peak at 1.0 after 5 epochs: return 5 and leave the model with those weights; "
                    f"got epoch {best!r} and the weights of epoch {weight:g}.")
    # By hand: nothing beats the starting model, so it is kept.
    best, weight = _scripted_run(stop_fn, [1.0, 0.5, 0.75, 1.0], "validation scores 1, 0.5, 0.75, 1")
    if best != 0 or weight != 0.0:
        raise Wrong(f"with scores 1, 0.5, 0.75, 1 no epoch beats the global model (epoch 0, score 1): return 0 and "
                    f"restore its weights; got epoch {best!r} and the weights of epoch {weight:g}.")
    _check_early_stopping_on_a_real_run(stop_fn)


def _check_early_stopping_on_a_real_run(stop_fn) -> None:
    """The effect on real training: a linear model fine-tuned on 12 noisy-labelled points; the learner's
    loop must pick the same epoch as an independent reference loop, and end with that epoch's weights."""
    generator = torch.Generator().manual_seed(4)
    fit_x, check_x = torch.randn(12, 2, generator=generator), torch.randn(40, 2, generator=generator)
    fit_y, check_y = (fit_x[:, 0] > 0).long(), (check_x[:, 0] > 0).long()
    fit_y[:4] = 1 - fit_y[:4]  # a third of the training labels are wrong: training longer fits the noise

    def fresh():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return nn.Linear(2, 2)

    def train_one_epoch(model):
        model.zero_grad()
        F.cross_entropy(model(fit_x), fit_y).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.5 * parameter.grad

    def validation_accuracy(model):
        with torch.no_grad():
            return float((model(check_x).argmax(1) == check_y).float().mean())

    reference, scores, states = fresh(), [], []
    for epoch in range(31):
        if epoch:
            train_one_epoch(reference)
        scores.append(validation_accuracy(reference))
        states.append(copy.deepcopy(reference.state_dict()))
    expected = _reference_best_epoch(scores)
    model = fresh()
    best = stop_fn(model, train_one_epoch, validation_accuracy, 30)
    if int(best) != expected:
        raise Wrong(f"on a real run (a linear model, 12 noisy labels, 30 epochs) the best validation epoch is "
                    f"{expected} (score {scores[expected]:.3f}); you returned {best!r}.")
    for name, value in model.state_dict().items():
        assert_close_answer(value, states[expected][name], f"the real run, parameter {name!r}",
                            f"Load the weights of epoch {expected} back into the model before returning.")
    if validation_accuracy(model) < scores[-1]:
        raise Wrong("your model scores below the last epoch's on the validation images: it is not the best epoch's.")
