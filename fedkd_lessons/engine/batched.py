"""Many models of one architecture trained at once: the course's batched training engine (lessons 2-5).

FedAvg's clients, lesson 4's adapted models and FedMD's parties are many *small* models. Trained one
after another, each step of each model pays Python's and PyTorch's fixed cost for a tiny matrix
product, and that overhead, not arithmetic, sets the time (``python -m fedkd_lessons.course.bench``).
Here ``K`` models of one architecture keep their weights stacked, ``(K, *shape)`` per parameter,
and every step is one forward and one backward pass over all ``K``:

- a ``Linear`` layer of the ``K`` models is one batched matrix product (``torch.baddbmm``);
- a ``Conv2d`` layer is one grouped convolution with ``K`` groups (model ``k``'s channels are
  group ``k``), so each model still sees only its own images.

Why written out and not ``torch.func.vmap`` over ``functional_call``: measured on the course's
2-core CI machine at one thread, one step of 100 digit MLPs took 4.4 ms written out and 6.2 ms
under ``vmap`` (1,000 MNIST-shaped MLPs: 264 ms and 276 ms), and the written-out layers are the
formulas a learner can read. Only the layers the course's models use are supported
(:data:`SUPPORTED_LAYERS`); any other raises an error naming it.

Each model keeps its own data, batch order, optimizer state and targets: the result equals training
the ``K`` models one by one (:func:`fedkd_lessons.engine.training.train`) with the same batch orders, up
to float rounding, which the tests check for every loss and both optimizers. Models whose data
differ in size are padded and masked: a model with fewer batches simply sits out the steps it has
none for (no gradient, no optimizer step). Dropout draws its masks from torch's global stream in one
call for all ``K`` models, so dropout masks (only those) differ from a one-by-one run.
"""

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedkd_lessons.engine.progress import progress_bar
from fedkd_lessons.engine.validation import (POSITIVE, Callable as CallableArgument, Instance, Integer, OneOf,
                                             Optional, Real, check_int_at_least, check_positive_finite,
                                             checked_arguments)

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Dropout)
OPTIMIZERS = ("adam", "sgd")


def _describe(module: nn.Module) -> str:
    return repr(module).replace("\n", " ")


def _signature(layer: nn.Module) -> tuple[str, str]:
    """A layer's type and settings: what its ``repr`` says of a leaf layer, without building the
    ``repr`` (grouping and stacking compare these for every model at every step)."""
    return type(layer).__name__, layer.extra_repr()


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise ``ValueError`` naming the first difference unless every model in ``models`` is an
    ``nn.Sequential`` of :data:`SUPPORTED_LAYERS` with the same layers, parameter names and shapes."""
    if len(models) == 0:
        raise ValueError("models is empty: stack at least one model")
    reference = models[0]
    for k, model in enumerate(models):
        if not isinstance(model, nn.Sequential):
            raise ValueError(f"models[{k}] must be an nn.Sequential (the course's make_mlp / make_cnn), "
                             f"got {type(model).__name__}")
        if len(model) != len(reference):
            raise ValueError(f"models[{k}] has {len(model)} layers but models[0] has {len(reference)}")
        for index, (layer, first) in enumerate(zip(model, reference)):
            if not isinstance(layer, SUPPORTED_LAYERS):
                raise ValueError(f"models[{k}] layer {index} ({_describe(layer)}) is not supported by the batched "
                                 f"engine; supported: {', '.join(t.__name__ for t in SUPPORTED_LAYERS)}")
            if _signature(layer) != _signature(first):
                raise ValueError(f"models[{k}] layer {index} is {_describe(layer)} but models[0] layer {index} "
                                 f"is {_describe(first)}: models of different architectures cannot be stacked")
        for (name, parameter), (_, first) in zip(model.named_parameters(), reference.named_parameters()):
            if parameter.shape != first.shape:
                raise ValueError(f"models[{k}] parameter {name!r} has shape {tuple(parameter.shape)} but models[0] "
                                 f"has {tuple(first.shape)}")
            if parameter.requires_grad != first.requires_grad:
                raise ValueError(f"models[{k}] parameter {name!r} has requires_grad={parameter.requires_grad} but "
                                 f"models[0] has {first.requires_grad}: every model must train the same parameters")
        for layer in model:
            if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
                raise ValueError(f"Conv2d with padding_mode={layer.padding_mode!r} is not supported; use 'zeros'")
            if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
                raise ValueError("only nn.Flatten() with its default start_dim=1, end_dim=-1 is supported")


def architecture_key(model: nn.Module) -> tuple:
    """What must agree for models to be stacked: every layer (type and settings), every parameter's
    name, shape and ``requires_grad``."""
    return (tuple(_signature(layer) for layer in model.children()),
            tuple((name, tuple(p.shape), p.requires_grad) for name, p in model.named_parameters()))


def group_by_architecture(models: Sequence[nn.Module], extra: Sequence | None = None) -> list[list[int]]:
    """Indices of ``models`` grouped by :func:`architecture_key` (and by ``extra[k]``, e.g. each
    model's learning rate, where given), groups and members in first-seen order."""
    groups: dict = {}
    for k, model in enumerate(models):
        groups.setdefault((architecture_key(model), None if extra is None else extra[k]), []).append(k)
    return list(groups.values())


class ModelStack:
    """``K`` models of one architecture with their parameters stacked along a first dimension.

    ``parameters[name]`` is a tensor ``(K, *shape)``: row ``k`` is model ``k``'s parameter ``name``.
    ``trainable`` names the parameters that train (those with ``requires_grad`` in the models given).
    """

    def __init__(self, layers: nn.Sequential, parameters: dict[str, torch.Tensor], trainable: frozenset[str]):
        self.layers = layers
        self.parameters = parameters
        self.trainable = trainable

    @classmethod
    def from_models(cls, models: Sequence[nn.Module]) -> "ModelStack":
        """Stack copies of the weights of ``models`` (the models themselves are not changed)."""
        models = list(models)
        check_same_architecture(models)
        names = [name for name, _ in models[0].named_parameters()]
        parameters = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models]).clone()
                      for name in names}
        trainable = frozenset(name for name, p in models[0].named_parameters() if p.requires_grad)
        return cls(models[0], parameters, trainable)

    @classmethod
    def repeat(cls, model: nn.Module, count: int) -> "ModelStack":
        """``count`` copies of one model's weights (every FedAvg client starts from the global model)."""
        check_int_at_least(count, "count", 1)
        stack = cls.from_models([model])
        stack.parameters = {name: value.expand(count, *value.shape[1:]).clone() for name, value in stack.parameters.items()}
        return stack

    def __len__(self) -> int:
        return next(iter(self.parameters.values())).shape[0]

    @torch.no_grad()
    def fill_from(self, model: nn.Module) -> None:
        """Set every stacked model to ``model``'s weights, in place (a new FedAvg round)."""
        for name, parameter in model.named_parameters():
            self.parameters[name].copy_(parameter.detach().expand_as(self.parameters[name]))

    def write_to(self, models: Sequence[nn.Module]) -> None:
        """Copy model ``k``'s weights into ``models[k]``, in place, for every ``k``."""
        if len(models) != len(self):
            raise ValueError(f"models must hold one model per stacked model ({len(self)}), got {len(models)}")
        with torch.no_grad():
            for k, model in enumerate(models):
                for name, parameter in model.named_parameters():
                    parameter.copy_(self.parameters[name][k])

    def forward(self, images: torch.Tensor, training: bool = False,
                parameters: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(K, B, C)`` of the ``K`` models, model ``k`` on ``images[k]`` ``(K, B, ...)``.

        ``training`` switches dropout on; ``parameters`` (default: the stack's own) lets the
        training loop pass tensors that record gradients.
        """
        parameters = self.parameters if parameters is None else parameters
        count = len(self)
        if images.ndim < 3 or images.shape[0] != count:
            raise ValueError(f"images must have shape (K={count}, batch, ...), got {tuple(images.shape)}")
        batch = images.shape[1]
        x, grouped = images, False  # grouped: laid out (B, K*C, H, W) for the convolutions
        for index, layer in enumerate(self.layers):
            if isinstance(layer, nn.Linear):
                if grouped:
                    raise ValueError(f"layer {index}: a Linear layer needs an nn.Flatten() after the convolutions")
                weight, bias = parameters[f"{index}.weight"], parameters.get(f"{index}.bias")
                x = torch.bmm(x, weight.transpose(1, 2)) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
            elif isinstance(layer, nn.Conv2d):
                if not grouped:
                    x = x.transpose(0, 1).reshape(batch, count * x.shape[2], *x.shape[3:])
                    grouped = True
                weight, bias = parameters[f"{index}.weight"], parameters.get(f"{index}.bias")
                x = F.conv2d(x, weight.reshape(-1, *weight.shape[2:]), None if bias is None else bias.reshape(-1),
                             layer.stride, layer.padding, layer.dilation, groups=count * layer.groups)
            elif isinstance(layer, nn.MaxPool2d):
                x = F.max_pool2d(x if grouped else x.flatten(0, 1), layer.kernel_size, layer.stride, layer.padding,
                                 layer.dilation, ceil_mode=layer.ceil_mode)
                x = x if grouped else x.unflatten(0, (count, batch))
            elif isinstance(layer, nn.Flatten):
                x = x.reshape(batch, count, -1).transpose(0, 1) if grouped else x.reshape(count, batch, -1)
                grouped = False
            elif isinstance(layer, nn.ReLU):
                x = F.relu(x)
            else:  # nn.Dropout: independent masks for every model and example
                x = F.dropout(x, layer.p, training)
        if grouped or x.ndim != 3:
            raise ValueError("the models must end in logits (batch, classes): flatten and a Linear layer last")
        return x

    @torch.no_grad()
    def predict_logits(self, images: torch.Tensor, per_model: bool = False, chunk: int = 1024) -> torch.Tensor:
        """Logits ``(K, N, C)`` in eval mode (dropout off), without gradients: every model on the
        same ``images (N, ...)``, or with ``per_model=True`` model ``k`` on ``images[k]``."""
        if not per_model:
            images = images.unsqueeze(0).expand(len(self), *images.shape)
        return torch.cat([self.forward(images[:, i : i + chunk]) for i in range(0, images.shape[1], chunk)], dim=1)

    def accuracy_per_model(self, sets: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
        """``(K,)`` accuracy of model ``k`` on its own test set ``sets[k] = (images_k, labels_k)``."""
        if len(sets) != len(self):
            raise ValueError(f"sets must give one test set per model ({len(self)}), got {len(sets)}")
        data = StackedData.from_sets(sets)
        correct = self.predict_logits(data.images, per_model=True).argmax(dim=2) == data.targets[0]
        real = torch.arange(data.images.shape[1]).unsqueeze(0) < torch.as_tensor(data.sizes).unsqueeze(1)
        return ((correct & real).sum(dim=1).double() / torch.as_tensor(data.sizes)).numpy()

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        """``(K,)`` accuracy of every model on one shared test set ``images (N, ...)``, ``labels (N,)``."""
        if len(images) != len(labels) or len(labels) == 0:
            raise ValueError(f"images and labels must be non-empty and of one length, got {len(images)} and {len(labels)}")
        return (self.predict_logits(images).argmax(dim=2) == labels).double().mean(dim=1).numpy()


@dataclass
class StackedData:
    """``K`` training sets padded to one length: ``images (K, n_max, ...)``, each target
    ``(K, n_max, ...)``, ``sizes (K,)`` the real number of examples of each model."""

    images: torch.Tensor
    targets: tuple[torch.Tensor, ...]
    sizes: np.ndarray

    @classmethod
    def from_sets(cls, sets: Sequence[tuple]) -> "StackedData":
        """From ``K`` tuples ``(images_k, target_k, ...)`` whose tensors have ``n_k`` rows each."""
        if len(sets) == 0:
            raise ValueError("sets is empty: give one training set per model")
        width = len(sets[0])
        if width < 2:
            raise ValueError("each set must be (images, targets, ...): at least images and one target")
        sizes = []
        for k, data in enumerate(sets):
            if len(data) != width:
                raise ValueError(f"sets[{k}] has {len(data)} tensors but sets[0] has {width}")
            n = len(data[0])
            if n == 0:
                raise ValueError(f"sets[{k}] is empty: every model needs at least one training example")
            for j, tensor in enumerate(data[1:], start=1):
                if len(tensor) != n:
                    raise ValueError(f"sets[{k}][{j}] has {len(tensor)} rows but its images have {n}")
                if tensor.shape[1:] != sets[0][j].shape[1:]:
                    raise ValueError(f"sets[{k}][{j}] has rows of shape {tuple(tensor.shape[1:])} but sets[0][{j}] "
                                     f"has {tuple(sets[0][j].shape[1:])}")
            if data[0].shape[1:] != sets[0][0].shape[1:]:
                raise ValueError(f"sets[{k}] images have shape {tuple(data[0].shape[1:])} but sets[0]'s have "
                                 f"{tuple(sets[0][0].shape[1:])}")
            if data[0].is_floating_point() and not torch.isfinite(data[0]).all():
                raise ValueError(f"sets[{k}] images contain NaN or inf")
            sizes.append(n)
        longest = max(sizes)

        def padded(j: int) -> torch.Tensor:
            first = sets[0][j]
            out = first.new_zeros(len(sets), longest, *first.shape[1:])
            for k, data in enumerate(sets):
                out[k, : sizes[k]] = data[j]
            return out

        return cls(padded(0), tuple(padded(j) for j in range(1, width)), np.array(sizes))

    def __len__(self) -> int:
        return len(self.sizes)

    def select(self, rows) -> "StackedData":
        """The sets of the models in ``rows`` (FedAvg's clients chosen this round)."""
        rows = torch.as_tensor(np.asarray(rows), dtype=torch.long)
        return StackedData(self.images[rows], tuple(t[rows] for t in self.targets), self.sizes[rows.numpy()])


def batch_schedule(sizes: np.ndarray, epochs: int, batch_size: int, generators: Sequence[torch.Generator | None]):
    """Every model's batches: ``(index, weight)``, each ``(epochs, steps, K, batch_size)``.

    Model ``k`` shuffles its ``n_k`` examples with ``generators[k]`` once per epoch, exactly as
    :func:`fedkd_lessons.engine.training.train` does, and the orders are drawn model by model, epoch by
    epoch: the order a loop over the models draws them in, so one generator shared by all models
    gives the same batches as training them one after another. ``weight`` is 1 for a real example
    and 0 for padding (a short last batch, or a model with fewer batches than the longest).
    """
    count = len(sizes)
    steps = int(math.ceil(max(sizes) / batch_size))
    padded = steps * batch_size
    sizes = torch.as_tensor(np.asarray(sizes), dtype=torch.long)
    orders = [torch.randperm(int(n), generator=generators[k]) for k, n in enumerate(sizes.tolist()) for _ in range(epochs)]
    # each (model, epoch) order goes to the front of its padded row: row r's entries start at r * padded
    lengths = sizes.repeat_interleave(epochs)
    firsts = torch.cumsum(lengths, 0) - lengths
    within = torch.arange(int(lengths.sum())) - firsts.repeat_interleave(lengths)
    index = torch.zeros(count * epochs * padded, dtype=torch.long)
    index[(torch.arange(count * epochs) * padded).repeat_interleave(lengths) + within] = torch.cat(orders)
    weight = (torch.arange(padded) < sizes.view(count, 1, 1)).float().expand(count, epochs, padded)
    shape = (count, epochs, steps, batch_size)
    return index.view(shape).permute(1, 2, 0, 3), weight.reshape(shape).permute(1, 2, 0, 3)


class StackedOptimizer:
    """SGD with momentum or Adam for every model of a stack at once, each with its own state.

    The update rules are PyTorch's ``torch.optim.SGD`` (dampening 0, no Nesterov) and
    ``torch.optim.Adam`` (Kingma & Ba 2015, Algorithm 1, with L2 ``weight_decay`` added to the
    gradient), applied only to the models marked active in a step: a model with no batch this step
    keeps its weights, momentum and Adam step count, as if it had not been stepped at all. Updates
    are made in place: at 1,000 MNIST-sized models every new buffer is 200 MB of fresh memory.
    """

    def __init__(self, parameters: dict[str, torch.Tensor], names, optimizer: str, lr: float, momentum: float = 0.9,
                 weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.parameters, self.names = parameters, list(names)
        self.optimizer, self.lr = optimizer, check_positive_finite(lr, "lr")
        self.momentum, self.weight_decay, self.betas, self.eps = momentum, weight_decay, betas, eps
        self.steps = torch.zeros(len(next(iter(parameters.values()))))
        self.first: dict[str, torch.Tensor] = {}  # momentum buffer / Adam's first moment, made at the first step
        self.second: dict[str, torch.Tensor] = {}  # Adam's second moment

    @torch.no_grad()
    def step(self, gradients: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        """One update of the active models (``active``: ``(K,)`` bool) from ``gradients[name]`` ``(K, ...)``;
        the gradients may be overwritten."""
        self.steps += active.float()
        everyone = bool(active.all())
        for name in self.names:
            parameter, gradient = self.parameters[name], gradients[name]
            shape = (-1, *([1] * (parameter.ndim - 1)))
            mask = active.view(shape)
            if not everyone:
                gradient.mul_(mask)  # an inactive model's moments must not move: zero gradient, masked below
            if self.weight_decay:
                gradient.add_(parameter * mask, alpha=self.weight_decay)
            if name not in self.first:  # every model has a batch at the first step (no set is empty)
                self.first[name] = torch.zeros_like(parameter) if self.optimizer == "adam" else gradient
                if self.optimizer == "adam":
                    self.second[name] = torch.zeros_like(parameter)
                else:
                    parameter.add_(gradient, alpha=-self.lr)  # PyTorch's first SGD step: buffer = gradient
                    continue
            first = self.first[name]
            if self.optimizer == "sgd" and everyone:
                torch.add(gradient, first, alpha=self.momentum, out=first)  # one pass over the buffer
                parameter.add_(first, alpha=-self.lr)
            elif self.optimizer == "sgd":
                first.copy_(torch.where(mask, first * self.momentum + gradient, first))
                parameter.sub_(first * (self.lr * mask))
            else:
                beta1, beta2 = self.betas
                second = self.second[name]
                if everyone:
                    first.lerp_(gradient, 1 - beta1)
                    second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                else:
                    first.copy_(torch.where(mask, first.lerp(gradient, 1 - beta1), first))
                    second.copy_(torch.where(mask, beta2 * second + (1 - beta2) * gradient * gradient, second))
                steps = self.steps.clamp(min=1).view(shape)
                denominator = (second.sqrt() / torch.sqrt(1 - beta2**steps)).add_(self.eps)
                parameter.sub_(first / denominator * (self.lr / (1 - beta1**steps) * mask))


def cross_entropy_per_example(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(M,)`` cross-entropy of each row of ``logits (M, C)`` against integer ``labels (M,)``."""
    return F.cross_entropy(logits, labels, reduction="none")


@checked_arguments(stack=Instance(ModelStack), data=Instance(StackedData), epochs=Integer(0), lr=POSITIVE,
                   batch_size=Integer(1), loss_fn=Optional(CallableArgument()), penalty=Optional(CallableArgument()),
                   optimizer=OneOf("adam", "sgd"), momentum=Real(0, 1, closed="left"), weight_decay=Real(0),
                   epoch_end=Optional(CallableArgument()))
def train_stack(
    stack: ModelStack,
    data: StackedData,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    loss_fn: Callable | None = None,
    penalty: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    generators: Sequence[torch.Generator | None] | torch.Generator | None = None,
    model_names: Sequence[str] | None = None,
    epoch_end: Callable[[int, "ModelStack"], None] | None = None,
    progress: bool | None = None,
    description: str = "training",
) -> np.ndarray:
    """Train the ``K`` stacked models in place, model ``k`` on ``data``'s set ``k``; return the
    mean loss of each model in each epoch, ``(K, epochs)``.

    The batched twin of :func:`fedkd_lessons.engine.training.train`, with the same arguments, except:

    Args:
        data: the ``K`` training sets (:meth:`StackedData.from_sets`).
        loss_fn: ``loss_fn(logits (M, C), *targets (M, ...)) -> (M,)``, the loss of every example
            (the engine averages each model's own examples); default cross-entropy. Each model
            minimises the mean over its batch, exactly as the one-by-one loop does.
        penalty: ``penalty(parameters) -> (K,)``, a term per model added to every batch's loss
            (EWC), given the stacked parameters ``{name: (K, ...)}``.
        generators: one generator per model shuffling its batches (or one shared by all, or
            ``None`` for torch's global stream); see :func:`batch_schedule` for the drawing order.
        model_names: names used in error messages (default ``model k``).
        epoch_end: called as ``epoch_end(epoch, stack)`` after each epoch (1, 2, ...), e.g. to score
            the models on validation data and keep the best weights (early stopping); the optimizer
            state runs on undisturbed.

    Raises:
        FloatingPointError: a model's loss becomes NaN or infinite; the message names the model,
            the epoch and the step, and training stops there.
    """
    count = len(stack)
    if len(data) != count:
        raise ValueError(f"data holds {len(data)} training sets but the stack has {count} models")
    if not isinstance(generators, (list, tuple)):
        generators = [generators] * count
    if len(generators) != count:
        raise ValueError(f"generators must give one generator per model ({count}), got {len(generators)}")
    names = list(model_names) if model_names is not None else [f"model {k}" for k in range(count)]
    loss_fn = loss_fn or cross_entropy_per_example
    history = np.zeros((count, epochs))
    if epochs == 0:
        return history
    trainable = [name for name in stack.parameters if name in stack.trainable]
    opt = StackedOptimizer(stack.parameters, trainable, optimizer, lr, momentum, weight_decay)
    index, weight = batch_schedule(data.sizes, epochs, batch_size, generators)
    # each step gathers its (K, B) examples from the padded sets, flattened to one index per example
    offsets = torch.arange(count).unsqueeze(1) * data.images.shape[1]
    flat_images = data.images.flatten(0, 1)
    flat_targets = [t.flatten(0, 1) for t in data.targets]
    images = flat_images.new_empty(count * batch_size, *flat_images.shape[1:])  # reused: no new memory per step
    for epoch in progress_bar(range(epochs), progress, description):
        for step in range(index.shape[1]):
            batch, mask = (index[epoch, step] + offsets).flatten(), weight[epoch, step]  # (K B,), (K, B)
            examples = mask.sum(dim=1)
            active = examples > 0
            parameters = {name: value.detach().requires_grad_(name in stack.trainable)
                          for name, value in stack.parameters.items()}
            torch.index_select(flat_images, 0, batch, out=images)
            logits = stack.forward(images.unflatten(0, (count, batch_size)), training=True, parameters=parameters)
            targets = [t[batch] for t in flat_targets]
            per_example = loss_fn(logits.flatten(0, 1), *targets).view(count, -1)
            losses = (per_example * mask).sum(dim=1) / examples.clamp(min=1)
            if penalty is not None:
                losses = losses + penalty(parameters) * active
            bad = active & ~torch.isfinite(losses)
            if bad.any():
                k = int(bad.nonzero()[0])
                raise FloatingPointError(f"{names[k]}: the loss became {losses[k].item()} at epoch {epoch + 1}, "
                                         f"step {step + 1}; training stopped")
            gradients = torch.autograd.grad(losses.sum(), [parameters[name] for name in trainable])
            opt.step(dict(zip(trainable, gradients)), active)
            history[:, epoch] += (losses.detach() * examples).numpy()
        if epoch_end is not None:
            epoch_end(epoch + 1, stack)
    history /= np.asarray(data.sizes, dtype=float)[:, None]
    return history
