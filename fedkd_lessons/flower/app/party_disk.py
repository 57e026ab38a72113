"""A party's own disk: where its node keeps its model, private data and copy of the public data.

Flower starts a fresh ``ClientApp`` process for every message, so nothing survives in memory from
one round to the next. Each party's node therefore keeps its state in its own directory, as a
hospital keeps its model and records on its own machine: the server never reads these files.
The node also keeps a diary of what it sent and received, which lesson 6 and its tests read
afterwards to check the consensus against the logits, from the parties' side.

Nothing here is unpickled: a model is stored as its weights (a state dict) beside a plain
description of its layers, and every file is read with ``torch.load(weights_only=True)``, which
accepts tensors, numbers, strings, lists and dicts only, never code.
"""

from pathlib import Path

import torch
from torch import nn

from fedkd_lessons.engine.validation import Each, Instance, Integer, OneOf, Tensor, checked_arguments
from fedkd_lessons.fedmd import LABELS, Party

DIRECTORY = Instance((str, Path))

PARTY_FILE, SHARED_FILE = "party.pt", "shared.pt"
DIARY_ENTRIES = ("sent", "received")  # the logits a party sent, the consensus it received


# The layers our models are made of (fedkd_lessons.engine.models), and the arguments that rebuild each.
LAYERS = {
    "Flatten": (nn.Flatten, ()),
    "ReLU": (nn.ReLU, ()),
    "Dropout": (nn.Dropout, ("p",)),
    "Linear": (nn.Linear, ("in_features", "out_features")),
    "Conv2d": (nn.Conv2d, ("in_channels", "out_channels", "kernel_size", "padding")),
    "MaxPool2d": (nn.MaxPool2d, ("kernel_size",)),
}


@checked_arguments(model=Instance(nn.Module))
def architecture_of(model: nn.Module) -> list[dict]:
    """A plain description of ``model``, an ``nn.Sequential`` of :data:`LAYERS`: one dict per layer
    with its type and constructor arguments (numbers and lists only)."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential of {sorted(LAYERS)}, got {type(model).__name__}")
    layers = []
    for layer in model:
        kind = type(layer).__name__
        if kind not in LAYERS or type(layer) is not LAYERS[kind][0]:
            raise ValueError(f"model: layer {kind} cannot be stored; known layers are {sorted(LAYERS)}")
        arguments = {name: getattr(layer, name) for name in LAYERS[kind][1]}
        layers.append({"type": kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()}})
    return layers


@checked_arguments(layers=Each(Instance(dict)))
def build_architecture(layers: list[dict]) -> nn.Sequential:
    """The model :func:`architecture_of` described, with fresh weights."""
    modules = []
    for layer in layers:
        layer = dict(layer)
        kind = layer.pop("type")
        if kind not in LAYERS:
            raise ValueError(f"unknown layer type {kind!r} in a stored architecture; known: {sorted(LAYERS)}")
        modules.append(LAYERS[kind][0](**{k: tuple(v) if isinstance(v, list) else v for k, v in layer.items()}))
    return nn.Sequential(*modules)


@checked_arguments(directory=DIRECTORY, party=Instance(Party))
def save_party(directory, party: Party) -> None:
    """Write ``party`` (its architecture and weights, private data, settings and batch-shuffling
    stream) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = dict(name=party.name, architecture=architecture_of(party.model), weights=party.model.state_dict(),
                 private_images=party.private_images, private_labels=party.private_labels, seed=party.seed,
                 lr=party.lr, batch_size=party.batch_size, generator_state=party.generator.get_state())
    temporary = directory / (PARTY_FILE + ".tmp")
    torch.save(state, temporary)
    temporary.replace(directory / PARTY_FILE)  # a node killed mid-write keeps its last whole state


@checked_arguments(directory=DIRECTORY)
def load_party(directory) -> Party:
    """The :class:`Party` saved by :func:`save_party`, its random stream where it left off."""
    state = torch.load(Path(directory) / PARTY_FILE, weights_only=True)  # data only: no code is unpickled
    model = build_architecture(state.pop("architecture"))
    model.load_state_dict(state.pop("weights"))
    generator_state = state.pop("generator_state")
    party = Party(model=model, **state)
    party.generator.set_state(generator_state)
    return party


@checked_arguments(directory=DIRECTORY, public_images=Tensor(), test_images=Tensor(), test_labels=LABELS)
def save_shared_data(directory, public_images, test_images, test_labels) -> None:
    """The data every party holds alike: the public images, and the test letters it reports on."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(dict(public_images=public_images, test_images=test_images, test_labels=test_labels),
               directory / SHARED_FILE)


@checked_arguments(directory=DIRECTORY)
def load_shared_data(directory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(public_images, test_images, test_labels)`` saved by :func:`save_shared_data`."""
    shared = torch.load(Path(directory) / SHARED_FILE, weights_only=True)
    return shared["public_images"], shared["test_images"], shared["test_labels"]


@checked_arguments(directory=DIRECTORY, round_number=Integer(1), what=OneOf(*DIARY_ENTRIES),
                   tensor=Tensor(finite=False))
def write_diary(directory, round_number: int, what: str, tensor: torch.Tensor) -> None:
    """Keep ``tensor`` (``what`` is ``"sent"`` logits or ``"received"`` consensus) of FedMD round
    ``round_number`` (1-based) in the party's diary."""
    torch.save(tensor.clone(), Path(directory) / f"{what}-round-{round_number}.pt")


@checked_arguments(directory=DIRECTORY)
def read_diary(directory) -> dict[tuple[str, int], torch.Tensor]:
    """Every diary entry of a party: ``{(what, round): tensor}``."""
    entries = {}
    for path in sorted(Path(directory).glob("*-round-*.pt")):
        what, _, round_number = path.stem.rpartition("-round-")
        entries[(what, int(round_number))] = torch.load(path, weights_only=True)
    return entries
