"""A party's own disk: where its node keeps its model, private data and copy of the public data.

Flower starts a fresh ``ClientApp`` process for every message, so nothing survives in memory from
one round to the next. Each party's node therefore keeps its state in its own directory, as a
hospital keeps its model and records on its own machine: the server never reads these files.
The node also keeps a diary of what it sent and received, which lesson 6 and its tests read
afterwards to check the consensus against the logits, from the parties' side.
"""

from pathlib import Path

import torch

from ..fedmd import Party

PARTY_FILE, SHARED_FILE = "party.pt", "shared.pt"


def save_party(directory, party: Party) -> None:
    """Write ``party`` (its model, private data, settings and batch-shuffling stream) to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = dict(name=party.name, model=party.model, private_images=party.private_images,
                 private_labels=party.private_labels, seed=party.seed, lr=party.lr, batch_size=party.batch_size,
                 generator_state=party.generator.get_state())
    temporary = directory / (PARTY_FILE + ".tmp")
    torch.save(state, temporary)
    temporary.replace(directory / PARTY_FILE)  # a node killed mid-write keeps its last whole state


def load_party(directory) -> Party:
    """The :class:`Party` saved by :func:`save_party`, its random stream where it left off."""
    state = torch.load(Path(directory) / PARTY_FILE, weights_only=False)  # our own file, holding a model
    generator_state = state.pop("generator_state")
    party = Party(**state)
    party.generator.set_state(generator_state)
    return party


def save_shared_data(directory, public_images, test_images, test_labels) -> None:
    """The data every party holds alike: the public images, and the test letters it reports on."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(dict(public_images=public_images, test_images=test_images, test_labels=test_labels),
               directory / SHARED_FILE)


def load_shared_data(directory) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(public_images, test_images, test_labels)`` saved by :func:`save_shared_data`."""
    shared = torch.load(Path(directory) / SHARED_FILE, weights_only=True)
    return shared["public_images"], shared["test_images"], shared["test_labels"]


def write_diary(directory, round_number: int, what: str, tensor: torch.Tensor) -> None:
    """Keep ``tensor`` (``what`` is ``"sent"`` logits or ``"received"`` consensus) of FedMD round
    ``round_number`` (1-based) in the party's diary."""
    torch.save(tensor.clone(), Path(directory) / f"{what}-round-{round_number}.pt")


def read_diary(directory) -> dict[tuple[str, int], torch.Tensor]:
    """Every diary entry of a party: ``{(what, round): tensor}``."""
    entries = {}
    for path in sorted(Path(directory).glob("*-round-*.pt")):
        what, _, round_number = path.stem.rpartition("-round-")
        entries[(what, int(round_number))] = torch.load(path, weights_only=True)
    return entries
