"""Local adaptation of a federated model: every method Yu et al. (2020) compare, one client at a time
(lesson 4).

The federated (global) model serves the *average* client. Local adaptation turns it into a model for
one client, using only that client's own training data. Every ``adapt_*`` function here takes the
global model and one client's local training set and returns a NEW adapted model; the global model
is never changed (it is copied, and its copy is what trains).

The methods (Yu et al. 2020, abstract; their settings from the authors' code, github.com/ebagdasa/
federated_adaptation, ``utils/utils.py`` and ``utils/adapt_*.yaml``):

- ``local``: a model of the same architecture trained from scratch on the local data alone;
- ``finetune``: plain cross-entropy, starting from the global weights;
- ``freeze_base``: the same, but only the last layer trains;
- ``ewc``: cross-entropy plus the elastic weight consolidation penalty that keeps the weights that
  mattered for the global task near their global values;
- ``distill``: the frozen global model is the teacher, the student starts from it (lesson 2's loss).
"""

import copy
import functools
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.batched import ModelStack, StackedData, train_stack
from fedkd_lessons.data.partition import Federation, make_federation
from fedkd_lessons.data.digits import ImageSplit, stratified_indices
from fedkd_lessons.distillation import distillation_loss, teacher_logits_for, train_student
from fedkd_lessons.fedavg import FedAvgHistory, FedAvgSettings, run_fedavg
from fedkd_lessons.engine.models import accuracy, last_linear_layer, make_mlp
from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.training import train
from fedkd_lessons.engine.validation import (FRACTION, POSITIVE, Callable, Each, Instance, Integer, OneOf, Optional,
                                             Real, Tensor, check_fields, checked_arguments)

METHODS = ("local", "finetune", "freeze_base", "ewc", "distill")

EWC_LAMBDA = 5000.0  # Yu et al.'s code (utils/adapt_*.yaml)
DISTILL_TEMPERATURE = 6.0  # Yu et al.'s code (criterion_kd in utils/utils.py)
DISTILL_ALPHA = 0.95  # Yu et al.'s code (criterion_kd in utils/utils.py)

# The declared forms of the arguments the functions share. A client's data may be empty here: the
# functions then say so in their own words (_check_client_data), with what to do instead.
MODEL = Instance(nn.Module)
IMAGES = Tensor(min_rows=0)
LABELS = Tensor(ndim=1, min_rows=0, dtype="integer")
EWC_LAMBDA_RANGE = Real(0)
FISHER = Optional(Instance(dict))
SEED = Integer(0)
CLIENT_SETS = Each(Instance((tuple, list)))
METHOD = OneOf(*METHODS)


@dataclass(frozen=True)
class Training:
    """One client's SGD with momentum: ``epochs`` passes over its data in shuffled batches."""

    epochs: int
    lr: float
    batch_size: int = 32  # Yu et al.'s code (utils/adapt_*.yaml)
    momentum: float = 0.9  # Yu et al.'s code (utils/adapt_*.yaml)

    def __post_init__(self):
        # momentum 1 is excluded: the steps would never fade
        check_fields(self, epochs=Integer(0), lr=POSITIVE, batch_size=Integer(1), momentum=Real(0, 1, closed="left"))


# The adaptation optimiser of Yu et al.'s code is SGD with momentum 0.9 and batch 32 (utils/adapt_*.yaml); their
# 200 epochs at lr 0.001 on CIFAR become 20 epochs at lr 0.01 on our clients of ~100 digits.
ADAPTATION = Training(epochs=20, lr=0.01)
# A model trained from scratch needs more steps than one that starts from the global weights; these
# settings fit every client's training set (training accuracy 1.0), so the local baseline is not starved.
LOCAL = Training(epochs=100, lr=0.05)


@dataclass(frozen=True)
class AdaptationSettings:
    """How every method adapts: ``training`` for the methods that start from the global model,
    ``local_training`` for the local-only baseline; ``ewc_lambda`` is used by ``"ewc"`` only,
    ``temperature`` and ``alpha`` (the distillation weight) by ``"distill"`` only. The seed is
    no setting: the functions take ``seed: int`` beside it."""

    training: Training = ADAPTATION
    local_training: Training = LOCAL
    ewc_lambda: float = EWC_LAMBDA
    temperature: float = DISTILL_TEMPERATURE
    alpha: float = DISTILL_ALPHA

    def __post_init__(self):
        check_fields(self, training=Instance(Training), local_training=Instance(Training), ewc_lambda=EWC_LAMBDA_RANGE,
                     temperature=POSITIVE, alpha=FRACTION)

    def training_for(self, method: str) -> Training:
        """The training of ``method``: ``local_training`` for ``"local"``, ``training`` for the others."""
        return self.local_training if check_method(method) == "local" else self.training

    def with_epochs(self, method: str, epochs: int) -> "AdaptationSettings":
        """The same settings with ``method``'s training for ``epochs`` epochs."""
        if check_method(method) == "local":
            return replace(self, local_training=replace(self.local_training, epochs=epochs))
        return replace(self, training=replace(self.training, epochs=epochs))


# --- Argument checks ---------------------------------------------------------------------------


@checked_arguments(method=METHOD)
def check_method(method) -> str:
    """``method`` if it names one of :data:`METHODS`, else a ``ValueError`` listing them."""
    return method


def _check_client_data(images, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """One client's data is not empty and has one label per image (the forms are declared)."""
    images, labels = torch.as_tensor(images), torch.as_tensor(labels)
    if len(labels) == 0 or len(images) == 0:
        raise ValueError(
            f"this client has no local training data ({len(images)} images, {len(labels)} labels): "
            "local adaptation needs at least one labelled example; use the global model as it is"
        )
    if len(images) != len(labels):
        raise ValueError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    return images, labels


def _copy_of(global_model: nn.Module) -> nn.Module:
    model = copy.deepcopy(global_model)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _reinitialised(global_model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``global_model``'s architecture with fresh weights drawn under ``seed``."""
    model = _copy_of(global_model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model


def _sgd(model, images, labels, training: Training, *, seed, progress, description, **extra):
    """The one training call every method shares: SGD with momentum, batches shuffled by ``seed``."""
    train(model, images, labels, epochs=training.epochs, lr=training.lr, batch_size=training.batch_size,
          optimizer="sgd", momentum=training.momentum, generator=torch.Generator().manual_seed(seed),
          progress=progress, description=description, **extra)
    return model


# --- The methods -------------------------------------------------------------------------------


@checked_arguments(global_model=MODEL, images=IMAGES, labels=LABELS, training=Instance(Training), seed=SEED)
def adapt_local(global_model: nn.Module, images, labels, training: Training = LOCAL, *, seed: int = 0,
                progress: bool | None = False) -> nn.Module:
    """The local-only baseline (Yu et al. 2020): the global model's architecture, re-initialised under
    ``seed`` and trained with cross-entropy on the client's data alone. The global *weights* are not
    used; only the architecture is. Images ``(n, ...)``, labels ``(n,)``."""
    images, labels = _check_client_data(images, labels)
    return _sgd(_reinitialised(global_model, seed), images, labels, training, seed=seed,
                progress=progress, description="local from scratch")


@checked_arguments(global_model=MODEL, images=IMAGES, labels=LABELS, training=Instance(Training), seed=SEED)
def adapt_finetune(global_model: nn.Module, images, labels, training: Training = ADAPTATION, *, seed: int = 0,
                   progress: bool | None = False) -> nn.Module:
    r"""Fine-tuning (Yu et al. 2020): start from the global weights :math:`\theta_{fed}` and minimise the
    plain cross-entropy on the client's data, :math:`L = \frac1n \sum_n -\log \mathrm{softmax}(f_\theta(x_n))_{y_n}`,
    with SGD at ``training`` (momentum, ``epochs`` passes in batches shuffled by ``seed``)."""
    images, labels = _check_client_data(images, labels)
    return _sgd(_copy_of(global_model), images, labels, training, seed=seed, progress=progress,
                description="fine-tuning")


@checked_arguments(global_model=MODEL, images=IMAGES, labels=LABELS, training=Instance(Training), seed=SEED)
def adapt_freeze_base(global_model: nn.Module, images, labels, training: Training = ADAPTATION, *, seed: int = 0,
                      progress: bool | None = False) -> nn.Module:
    """Freeze-base (Yu et al. 2020, on images): fine-tuning in which only the last ``nn.Linear`` (the
    classifier head) trains; every other weight keeps its global value bit for bit. The features stay the federation's;
    the client re-weighs them for its own classes. Same arguments as :func:`adapt_finetune`."""
    images, labels = _check_client_data(images, labels)
    model = _copy_of(global_model)
    head = last_linear_layer(model)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in head.parameters():
        parameter.requires_grad_(True)
    _sgd(model, images, labels, training, seed=seed, progress=progress, description="freeze-base")
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


@checked_arguments(model=MODEL, images=IMAGES, labels=LABELS, batch_size=Integer(1))
def fisher_diagonal(model: nn.Module, images, labels, batch_size: int = 1) -> dict[str, torch.Tensor]:
    r"""The diagonal of the empirical Fisher information of ``model`` on labelled data (Kirkpatrick et
    al. 2017; ``fisher_matrix_diag`` in Yu et al.'s code).

    .. math::
        F_i = \frac{1}{N} \sum_{b} |b| \, \Big(\frac{\partial L_b}{\partial \theta_i}\Big)^2,
        \qquad L_b = \frac{1}{|b|} \sum_{n \in b} -\log p_\theta(y_n \mid x_n),

    over consecutive batches ``b`` of ``batch_size``. With ``batch_size = 1`` this is the textbook
    empirical Fisher, the mean of the squared per-example gradients; Yu et al.'s code
    (``fisher_matrix_diag``) squares mini-batch gradients, which averages noise away and gives
    smaller values. Large :math:`F_i` marks a weight the model's predictions depend on.

    Args:
        model: the (global) model, left unchanged; evaluated in eval mode.
        images: ``(N, ...)`` auxiliary public data, kept out of every test set.
        labels: ``(N,)`` their labels.

    Returns:
        ``{name: tensor}`` with one non-negative tensor per named parameter, of the parameter's shape.
    """
    images, labels = _check_client_data(images, labels)
    model = _copy_of(model)
    model.eval()
    fisher = {name: torch.zeros_like(parameter) for name, parameter in model.named_parameters()}
    for start in range(0, len(images), batch_size):
        batch_images, batch_labels = images[start : start + batch_size], labels[start : start + batch_size]
        model.zero_grad()
        F.cross_entropy(model(batch_images), batch_labels).backward()
        for name, parameter in model.named_parameters():
            fisher[name] += parameter.grad.detach() ** 2 * len(batch_labels)
    return {name: value / len(images) for name, value in fisher.items()}


def _check_fisher(fisher, model: nn.Module) -> dict[str, torch.Tensor]:
    if not isinstance(fisher, dict):
        raise ValueError(f"fisher must be a dict {{parameter name: tensor}} (see fisher_diagonal), got {type(fisher).__name__}")
    parameters = dict(model.named_parameters())
    if set(fisher) != set(parameters):
        raise ValueError(f"fisher must have one entry per named parameter of the model {sorted(parameters)}, "
                         f"got {sorted(fisher)}")
    for name, value in fisher.items():
        value = torch.as_tensor(value)
        if value.shape != parameters[name].shape:
            raise ValueError(f"fisher[{name!r}] has shape {tuple(value.shape)} but the parameter has "
                             f"{tuple(parameters[name].shape)}")
        if not torch.isfinite(value).all() or (value < 0).any():
            raise ValueError(f"fisher[{name!r}] must be finite and >= 0 (squared gradients)")
    return fisher


def ewc_penalty(model, global_parameters: dict[str, torch.Tensor], fisher: dict[str, torch.Tensor],
                ewc_lambda: float) -> torch.Tensor:
    r"""The elastic weight consolidation penalty (Kirkpatrick et al. 2017, Eq. 3; ``criterion_ewc`` in
    Yu et al.'s code):

    .. math::
        \Omega(\theta) = \frac{\lambda}{2} \sum_i F_i \, (\theta_i - \theta_{fed,i})^2 .

    A spring on every weight, pulling it back to its global value with a stiffness :math:`\lambda F_i`:
    weights the global model relies on (large :math:`F_i`) barely move, the others are free.

    Args:
        model: the model being adapted (gradients flow into its parameters), or the stacked
            parameters ``{name: (K, ...)}`` of ``K`` models trained at once (:mod:`fedkd_lessons.engine.batched`).
        global_parameters: ``{name: tensor}`` the global weights :math:`\theta_{fed}` (constants).
        fisher: ``{name: tensor}`` from :func:`fisher_diagonal`, same names and shapes.
        ewc_lambda: :math:`\lambda \geq 0` (the paper's code: 5000).

    Returns:
        A scalar tensor for a model; ``(K,)``, one penalty per model, for stacked parameters.
    """
    ewc_lambda = EWC_LAMBDA_RANGE.check(ewc_lambda, "ewc_lambda")  # inline: this runs on every mini-batch
    if isinstance(model, nn.Module):
        return ewc_penalty({name: p.unsqueeze(0) for name, p in model.named_parameters()}, global_parameters,
                           fisher, ewc_lambda)[0]
    total = 0.0
    for name, parameters in model.items():
        total = total + (fisher[name] * (parameters - global_parameters[name].detach()) ** 2).flatten(1).sum(dim=1)
    return ewc_lambda / 2 * total


@checked_arguments(fisher=Instance(dict), ewc_lambda=EWC_LAMBDA_RANGE, lr=POSITIVE)
def ewc_stability_ratio(fisher: dict[str, torch.Tensor], ewc_lambda: float, lr: float) -> float:
    r"""``lr * lambda * max_i F_i``: plain SGD on the penalty alone is stable only while this is
    below 2, and SGD with momentum :math:`\beta` while it is below :math:`2(1 + \beta)`.

    Near its minimum the penalty is a quadratic with curvature :math:`\lambda F_i` along weight
    :math:`i`; a gradient step multiplies that weight's distance to :math:`\theta_{fed,i}` by
    :math:`1 - \mathrm{lr}\,\lambda F_i`, which grows in size once :math:`\mathrm{lr}\,\lambda F_i > 2`:
    the weight oscillates with growing amplitude and the loss explodes."""
    return lr * ewc_lambda * max(float(value.max()) for value in fisher.values())


@checked_arguments(global_model=MODEL, images=IMAGES, labels=LABELS, fisher=Instance(dict), training=Instance(Training),
                   ewc_lambda=EWC_LAMBDA_RANGE, seed=SEED)
def adapt_ewc(global_model: nn.Module, images, labels, fisher: dict[str, torch.Tensor],
              training: Training = ADAPTATION, *, ewc_lambda: float = EWC_LAMBDA, seed: int = 0,
              progress: bool | None = False) -> nn.Module:
    r"""Multi-task learning with EWC (Yu et al. 2020; Kirkpatrick et al. 2017, Eq. 3): fine-tuning whose every batch loss gets
    :func:`ewc_penalty`,

    .. math:: L = \mathrm{CE} + \frac{\lambda}{2} \sum_i F_i (\theta_i - \theta_{fed,i})^2 ,

    with ``fisher`` the diagonal Fisher of the global model on auxiliary public data
    (:func:`fisher_diagonal`). ``ewc_lambda = 0`` is exactly :func:`adapt_finetune`. With large
    :math:`\lambda` plain SGD diverges once :func:`ewc_stability_ratio` passes 2 (or
    :math:`2(1+\beta)` with momentum): the weights then oscillate with growing amplitude, end huge or
    NaN, and the adapted model's accuracy collapses. Lesson 4 shows this rather than hiding it."""
    images, labels = _check_client_data(images, labels)
    fisher = _check_fisher(fisher, global_model)
    model = _copy_of(global_model)
    global_parameters = {name: parameter.detach().clone() for name, parameter in global_model.named_parameters()}
    penalty = functools.partial(ewc_penalty, global_parameters=global_parameters, fisher=fisher, ewc_lambda=ewc_lambda)
    return _sgd(model, images, labels, training, seed=seed, progress=progress,
                description=f"EWC (lambda={ewc_lambda:g})", penalty=penalty)


@checked_arguments(global_model=MODEL, images=IMAGES, labels=LABELS, training=Instance(Training), temperature=POSITIVE,
                   alpha=FRACTION, seed=SEED)
def adapt_distill(global_model: nn.Module, images, labels, training: Training = ADAPTATION, *,
                  temperature: float = DISTILL_TEMPERATURE, alpha: float = DISTILL_ALPHA, seed: int = 0,
                  progress: bool | None = False) -> nn.Module:
    r"""Local adaptation by knowledge distillation (Yu et al. 2020; ``criterion_kd`` in their code): the frozen global model is the teacher,
    the student starts from the global weights, and each batch minimises lesson 2's
    :func:`fedkd_lessons.distillation.distillation_loss`,

    .. math:: L = \alpha T^2 \,\mathrm{KL}\big(\mathrm{softmax}(v/T) \,\|\, \mathrm{softmax}(z/T)\big)
              + (1 - \alpha)\, \mathrm{CE}(z, y),

    ``v`` the teacher's and ``z`` the student's logits (defaults ``T = 6``, ``alpha = 0.95`` as the
    paper's code). The soft term pulls the student back towards what the federation knew about every
    class; the hard term moves it towards the client's own labels. ``alpha = 0`` is exactly
    :func:`adapt_finetune`. The paper's code averages its KL over the ``C`` classes too
    (``nn.KLDivLoss()``), a soft weight ``C`` times smaller than the true KL used here (lesson 2);
    :func:`code_equivalent_alpha` gives the ``alpha`` that restores their balance (0.655 for 0.95)."""
    images, labels = _check_client_data(images, labels)
    model = _copy_of(global_model)
    teacher = copy.deepcopy(global_model).eval()
    train_student(model, images, teacher, labels, epochs=training.epochs, temperature=temperature, alpha=alpha,
                  lr=training.lr, batch_size=training.batch_size, optimizer="sgd", momentum=training.momentum,
                  generator=torch.Generator().manual_seed(seed), progress=progress)
    return model


@checked_arguments(method=METHOD, global_model=MODEL, settings=Instance(AdaptationSettings), fisher=FISHER, seed=SEED)
def adapt(method: str, global_model: nn.Module, images, labels, settings: AdaptationSettings = AdaptationSettings(), *,
          fisher: dict | None = None, seed: int = 0, progress: bool | None = False) -> nn.Module:
    """Adapt ``global_model`` to one client with ``method``, one of :data:`METHODS`; return the new model.

    ``settings`` (:class:`AdaptationSettings`) gives the method's training and its own constants;
    ``fisher`` (the global model's diagonal Fisher, :func:`fisher_diagonal`) is for ``"ewc"`` only.
    Raises ``ValueError`` for an unknown method (listing the valid ones), a client with no training
    data, ``"ewc"`` without a Fisher, or a Fisher given to another method.
    """
    _check_fisher_use(method, fisher)
    training, options = settings.training_for(method), dict(seed=seed, progress=progress)
    if method == "local":
        return adapt_local(global_model, images, labels, training, **options)
    if method == "finetune":
        return adapt_finetune(global_model, images, labels, training, **options)
    if method == "freeze_base":
        return adapt_freeze_base(global_model, images, labels, training, **options)
    if method == "ewc":
        return adapt_ewc(global_model, images, labels, fisher, training, ewc_lambda=settings.ewc_lambda, **options)
    return adapt_distill(global_model, images, labels, training, temperature=settings.temperature, alpha=settings.alpha,
                         **options)


def _check_fisher_use(method: str, fisher) -> None:
    """``fisher`` goes with ``"ewc"`` and with no other method."""
    check_method(method)
    if method == "ewc" and fisher is None:
        raise ValueError("method 'ewc' needs fisher, the global model's diagonal Fisher (see fisher_diagonal)")
    if method != "ewc" and fisher is not None:
        raise ValueError(f"fisher is for method 'ewc' only; method {method!r} does not use it: leave it None")


def _starting_stack(method: str, global_model: nn.Module, count: int, seed: int) -> ModelStack:
    """The ``count`` models the clients start from: re-initialised under ``seed + k`` for ``"local"``,
    copies of the global model for the others (only the last layer trainable for ``"freeze_base"``)."""
    if method == "local":
        return ModelStack.from_models([_reinitialised(global_model, seed + k) for k in range(count)])
    start = _copy_of(global_model)
    if method == "freeze_base":
        head = last_linear_layer(start)
        for parameter in start.parameters():
            parameter.requires_grad_(parameter is head.weight or parameter is head.bias)
    return ModelStack.repeat(start, count)


@checked_arguments(method=METHOD, global_model=MODEL, client_train=CLIENT_SETS, settings=Instance(AdaptationSettings),
                   fisher=FISHER, seed=SEED, epoch_end=Optional(Callable()))
def adapt_all(method: str, global_model: nn.Module, client_train, settings: AdaptationSettings = AdaptationSettings(),
              *, fisher: dict | None = None, seed: int = 0, epoch_end=None, progress: bool | None = False) -> ModelStack:
    """Adapt ``global_model`` to every client at once with ``method``: the batched twin of :func:`adapt`.

    Client ``k`` (``client_train[k] = (images, labels)``) adapts with seed ``seed + k``: the same
    initialisation (``"local"``) and batch order as ``adapt(method, ..., seed=seed + k)``, so the
    ``K`` adapted models equal ``K`` calls of :func:`adapt` up to float rounding. ``epoch_end`` goes
    to :func:`~fedkd_lessons.engine.batched.train_stack`. Returns the ``K`` adapted models as a
    :class:`~fedkd_lessons.engine.batched.ModelStack`.
    """
    _check_fisher_use(method, fisher)
    sets = [_check_client_data(images, labels) for images, labels in client_train]
    training = settings.training_for(method)
    stack = _starting_stack(method, global_model, len(sets), seed)
    loss_fn, penalty = None, None
    if method == "distill":
        teacher = copy.deepcopy(global_model).eval()
        sets = [(images, teacher_logits_for(teacher, images), labels) for images, labels in sets]
        loss_fn = functools.partial(distillation_loss, temperature=settings.temperature, alpha=settings.alpha,
                                    reduction="none")
    if method == "ewc":
        global_parameters = {name: p.detach().clone() for name, p in global_model.named_parameters()}
        penalty = functools.partial(ewc_penalty, global_parameters=global_parameters,
                                    fisher=_check_fisher(fisher, global_model), ewc_lambda=settings.ewc_lambda)
    train_stack(stack, StackedData.from_sets(sets), epochs=training.epochs, lr=training.lr,
                batch_size=training.batch_size, optimizer="sgd", momentum=training.momentum, loss_fn=loss_fn,
                penalty=penalty, generators=[torch.Generator().manual_seed(seed + k) for k in range(len(sets))],
                model_names=[f"client {k} ({method})" for k in range(len(sets))], epoch_end=epoch_end,
                progress=progress, description=method)
    return stack


@checked_arguments(images=IMAGES, labels=LABELS, share=FRACTION, seed=SEED)
def split_for_validation(images, labels, share: float, seed: int = 0) -> tuple[tuple, tuple]:
    """One client's training data split at random into ``(fit, validation)`` pairs, the validation
    part ``max(1, round(share * n))`` examples: the only data a client has to choose its epochs on."""
    images, labels = _check_client_data(images, labels)
    held = max(1, round(share * len(labels)))
    if held >= len(labels):
        raise ValueError(f"a client with {len(labels)} training examples cannot hold out {held} for validation "
                         "and still train on any")
    order = torch.as_tensor(np.random.default_rng(seed).permutation(len(labels)), dtype=torch.long)
    fit, validation = order[held:], order[:held]
    return (images[fit], labels[fit]), (images[validation], labels[validation])


@dataclass
class EarlyStopped:
    """Models adapted with early stopping: the stack (each client's best-validation weights), the
    number of epochs each client kept (0 = the global model itself) and its validation set size."""

    models: ModelStack
    epochs: np.ndarray
    validation_sizes: np.ndarray


@checked_arguments(method=METHOD, global_model=MODEL, client_train=CLIENT_SETS, settings=Instance(AdaptationSettings),
                   validation_share=FRACTION, fisher=FISHER, seed=SEED)
def adapt_all_early_stopped(method: str, global_model: nn.Module, client_train,
                            settings: AdaptationSettings = AdaptationSettings(), *, validation_share: float = 0.2,
                            fisher: dict | None = None, seed: int = 0) -> EarlyStopped:
    """:func:`adapt_all` with the number of epochs chosen per client on its own data: each client
    holds out ``validation_share`` of its training set (:func:`split_for_validation`, seed
    ``seed + k``), adapts on the rest for up to ``settings``' epochs of ``method``, and keeps the
    weights of the epoch (0 included: the starting model) with the best validation accuracy, the
    fewest epochs among ties. A client with few images pays twice: fewer to train on, and a
    validation score that moves in steps of a whole image."""
    if method == "local":
        raise ValueError("early stopping is for the methods that start from the global model, not 'local'")
    splits = [split_for_validation(images, labels, validation_share, seed + k)
              for k, (images, labels) in enumerate(client_train)]
    validation = [held for _, held in splits]
    start = ModelStack.repeat(global_model, len(splits))
    best_score, best_epoch = start.accuracy_per_model(validation), np.zeros(len(splits), dtype=int)
    best = {name: value.clone() for name, value in start.parameters.items()}

    def keep_improved(epoch: int, stack: ModelStack) -> None:
        score = stack.accuracy_per_model(validation)
        improved = torch.as_tensor(score > best_score)
        best_score[improved.numpy()], best_epoch[improved.numpy()] = score[improved.numpy()], epoch
        for name, value in stack.parameters.items():
            best[name][improved] = value[improved]

    stack = adapt_all(method, global_model, [fit for fit, _ in splits], settings, fisher=fisher, seed=seed,
                      epoch_end=keep_improved)
    stack.parameters = best
    return EarlyStopped(stack, best_epoch, np.array([len(labels) for _, labels in validation]))


@checked_arguments(alpha=FRACTION, temperature=POSITIVE, num_classes=Integer(2))
def code_equivalent_alpha(alpha: float = DISTILL_ALPHA, temperature: float = DISTILL_TEMPERATURE,
                          num_classes: int = 10) -> tuple[float, float]:
    r"""The ``alpha`` of :func:`~fedkd_lessons.distillation.distillation_loss` that balances soft and
    hard terms as Yu et al.'s code does, and the factor by which their loss is smaller.

    Their code (``criterion_kd`` in ``utils/utils.py``) takes ``nn.KLDivLoss()`` with its default mean over all
    ``N * C`` entries, i.e. the true KL divided by ``C``:

    .. math::
        L_{code} = \frac{\alpha}{C} T^2 \mathrm{KL} + (1 - \alpha)\,\mathrm{CE}
                 = s \,\big[\alpha' T^2 \mathrm{KL} + (1 - \alpha')\,\mathrm{CE}\big],
        \quad s = \frac{\alpha}{C} + 1 - \alpha, \quad \alpha' = \frac{\alpha / C}{s}.

    With ``alpha = 0.95`` and ``C = 10``: ``alpha' = 0.655`` and ``s = 0.145``. ``temperature``
    does not enter (it multiplies both forms alike); it is checked and kept for symmetry of the call.

    Returns:
        ``(alpha_prime, scale)``.
    """
    scale = alpha / num_classes + 1 - alpha
    return alpha / num_classes / scale, scale


# --- The experiment ----------------------------------------------------------------------------


@checked_arguments(client_sets=Each(Instance((tuple, list)), min_length=0), size=Integer(1), seed=SEED)
def subsample_clients(client_sets, size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each client's ``(images, labels)`` cut to at most ``size`` examples chosen at random (all of
    them if it has fewer): the same clients with less local data, for the overfitting study."""
    rng = np.random.default_rng(seed)
    cut = []
    for images, labels in client_sets:
        keep = torch.as_tensor(np.sort(rng.permutation(len(labels))[:size]), dtype=torch.long)
        cut.append((images[keep], labels[keep]))
    return cut


@checked_arguments(global_model=MODEL, client_train=CLIENT_SETS, client_test=CLIENT_SETS,
                   settings=Instance(AdaptationSettings), methods=Each(METHOD, min_length=0), fisher=FISHER, seed=SEED,
                   description=Instance(str))
def evaluate_methods(global_model: nn.Module, client_train, client_test,
                     settings: AdaptationSettings = AdaptationSettings(), *, methods=METHODS, fisher: dict | None = None,
                     seed: int = 0, progress: bool | None = None, description: str = "adapting clients") -> dict[str, np.ndarray]:
    """Adapt ``global_model`` to every client with every method of ``methods`` (:func:`adapt_all`,
    at ``settings``) and score each adapted model on that client's own local test set.

    ``client_train``, ``client_test``: ``K`` pairs ``(images, labels)`` each. ``fisher`` reaches
    ``"ewc"`` only. Client ``k`` adapts with seed ``seed + k`` (the same for every method, so
    methods see the same batch order).

    Returns:
        ``{"global": (K,), method: (K,) ...}`` accuracies in [0, 1].
    """
    for method in methods:
        _check_fisher_use(method, fisher if method == "ewc" else None)
    if len(client_train) != len(client_test):
        raise ValueError(f"client_train and client_test must list the same clients, got {len(client_train)} "
                         f"and {len(client_test)}")
    scores = {"global": np.array([accuracy(global_model, *test) for test in client_test])}
    for method in progress_bar(methods, progress, description):
        adapted = adapt_all(method, global_model, client_train, settings, fisher=fisher if method == "ewc" else None,
                            seed=seed)
        scores[method] = adapted.accuracy_per_model(client_test)
    return scores


@checked_arguments(method=METHOD, global_model=MODEL, client_train=CLIENT_SETS, client_test=CLIENT_SETS,
                   epochs_grid=Each(Integer(0)), settings=Instance(AdaptationSettings), fisher=FISHER, seed=SEED)
def adaptation_curve(method: str, global_model: nn.Module, client_train, client_test, epochs_grid,
                     settings: AdaptationSettings = AdaptationSettings(), *, fisher: dict | None = None, seed: int = 0,
                     progress: bool | None = None) -> np.ndarray:
    """``(len(epochs_grid), K)`` local test accuracies of ``method`` after each number of adaptation
    epochs in ``epochs_grid`` (each point a fresh adaptation from the global model, so the point at
    ``E`` epochs is exactly what :func:`adapt` returns after ``E`` epochs)."""
    return np.array([evaluate_methods(global_model, client_train, client_test, settings.with_epochs(method, epochs),
                                      methods=(method,), fisher=fisher, seed=seed, progress=False)[method]
                     for epochs in progress_bar(epochs_grid, progress, f"{method}: epochs")])


@checked_arguments(federation=Instance(Federation), clients=Each(Integer(0), min_length=0))
def mirror_clients(federation: Federation, clients) -> Federation:
    """The same federation with every image (local train and local test) of each client in ``clients``
    flipped left to right: clients whose scanner mirrors the page. Their labels are unchanged, so the
    same label now goes with a different picture, and a model fitted to the other clients serves them
    worse. ``clients`` are indices in ``range(len(federation.train))``, each at most once."""
    count = len(federation.train)
    if any(k >= count for k in clients) or len(set(clients)) != len(clients):
        raise ValueError(f"clients must be distinct indices in range({count}), got {list(clients)!r}")

    def flipped(sets):
        return [(images.flip(-1), labels) if k in clients else (images, labels) for k, (images, labels) in enumerate(sets)]

    return Federation(flipped(federation.train), flipped(federation.test), federation.train_indices,
                      federation.test_indices)


@dataclass(frozen=True)
class ExperimentSettings:
    """Yu et al.'s experiment at the digits' scale (:func:`run_adaptation_experiment`): the
    federation (lesson 3's Dirichlet partition: ``num_clients`` clients, the Dirichlet
    ``concentration`` over classes, each client's local train/test split; the defaults leave the
    median client about 40 local test images), the share of the held-out digits kept as auxiliary
    public data for the EWC Fisher, the global MLP's hidden units, FedAvg and the adaptation."""

    num_clients: int = 10
    concentration: float = 0.5
    min_samples: int = 40
    test_share: float = 0.3
    min_test: int = 20
    public_fraction: float = 0.5
    hidden_units: int = 32
    fedavg: FedAvgSettings = FedAvgSettings()
    adaptation: AdaptationSettings = AdaptationSettings()

    def __post_init__(self):
        check_fields(self, num_clients=Integer(2), concentration=POSITIVE, min_samples=Integer(1),
                     test_share=Real(0, 1, closed="neither"), min_test=Integer(1),
                     public_fraction=Real(0, 1, closed="neither"), hidden_units=Integer(1),
                     fedavg=Instance(FedAvgSettings), adaptation=Instance(AdaptationSettings))

    def model(self) -> nn.Module:
        """The global model before training: an MLP with one hidden layer of ``hidden_units``."""
        return make_mlp(hidden=(self.hidden_units,))


@dataclass
class AdaptationExperiment:
    """What :func:`run_adaptation_experiment` built and measured."""

    federation: Federation
    """The clients' local train and local test sets."""
    public: tuple
    """``(images, labels)`` of the auxiliary public data the Fisher is computed on (in no test set)."""
    central_test: tuple
    """``(images, labels)`` of the central test set (the rest of the held-out digits)."""
    global_model: nn.Module
    history: FedAvgHistory
    fisher: dict
    accuracies: dict
    """``{"global": (K,), method: (K,)}``: accuracy on each client's own local test set."""
    settings: ExperimentSettings
    mirrored_clients: tuple[int, ...]
    seed: int

    @property
    def train_sizes(self) -> np.ndarray:
        return np.array([len(labels) for _, labels in self.federation.train])

    @property
    def test_sizes(self) -> np.ndarray:
        return np.array([len(labels) for _, labels in self.federation.test])

    def gains(self, baseline: str = "global") -> dict[str, np.ndarray]:
        """``{method: (K,)}`` accuracy minus the ``baseline``'s, per client (every other entry)."""
        reference = self.accuracies[baseline]
        return {name: values - reference for name, values in self.accuracies.items() if name != baseline}

    def fraction_improved(self, baseline: str = "global") -> dict[str, float]:
        """``{method: share of clients whose accuracy is strictly above the baseline's}``."""
        return {name: float((gain > 0).mean()) for name, gain in self.gains(baseline).items()}

    def fraction_hurt(self, baseline: str = "global") -> dict[str, float]:
        """``{method: share of clients whose accuracy is strictly below the baseline's}``."""
        return {name: float((gain < 0).mean()) for name, gain in self.gains(baseline).items()}


@checked_arguments(split=Instance(ImageSplit), settings=Instance(ExperimentSettings), methods=Each(METHOD, min_length=0),
                   mirrored_clients=Each(Integer(0), min_length=0), seed=SEED)
def run_adaptation_experiment(split: ImageSplit, settings: ExperimentSettings = ExperimentSettings(), *,
                              methods=METHODS, mirrored_clients=(), seed: int = 0,
                              progress: bool | None = None) -> AdaptationExperiment:
    """Yu et al.'s experiment at the digits' scale: partition, federate, adapt every client with every
    method of ``methods``, and score each on the client's own local test data.

    1. The training digits are split among the clients (:func:`fedkd_lessons.data.partition.make_federation`
       at ``settings``); the clients listed in ``mirrored_clients`` see every image of theirs
       flipped left to right (:func:`mirror_clients`).
    2. The held-out digits are split (stratified, ``public_fraction``) into auxiliary public data for
       the EWC Fisher (as the paper's code takes 10 % of the CIFAR-10 test set) and a central test set.
       The public data are in no client's test set.
    3. The global model is trained by :func:`fedkd_lessons.fedavg.run_fedavg` at ``settings.fedavg``.
    4. The Fisher of the global model on the public data, then :func:`evaluate_methods` at
       ``settings.adaptation``.

    ``seed`` fixes the partition, the public split, the federated training and the adaptation.
    """
    federation = make_federation(split.train_images, split.train_labels, settings.num_clients, settings.concentration,
                                 seed=seed, min_samples=settings.min_samples, test_share=settings.test_share,
                                 min_test=settings.min_test)
    federation = mirror_clients(federation, mirrored_clients)
    central, public = stratified_indices(split.test_labels.numpy(), settings.public_fraction, seed)
    public_set = (split.test_images[public], split.test_labels[public])
    central_set = (split.test_images[central], split.test_labels[central])
    fedavg = run_fedavg(settings.model, federation.train, settings.fedavg, seed=seed, client_test=federation.test,
                        test_set=central_set, progress=progress, description=f"FedAvg ({settings.fedavg.aggregator})")
    fisher = fisher_diagonal(fedavg.model, *public_set)
    accuracies = evaluate_methods(fedavg.model, federation.train, federation.test, settings.adaptation, methods=methods,
                                  fisher=fisher, seed=seed, progress=progress)
    return AdaptationExperiment(federation, public_set, central_set, fedavg.model, fedavg.history, fisher, accuracies,
                                settings, tuple(int(k) for k in mirrored_clients), seed)
