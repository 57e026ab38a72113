"""Checkers for lesson 5's exercises: FedMD's consensus, the bytes one round moves, and a whole FedMD round."""

import torch

from fedkd_lessons.engine.validation import Callable, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


@checked_arguments(consensus_fn=Callable())
@checker("Your consensus is the plain mean of the parties' logits, sample by sample and class by class.")
def check_consensus(consensus_fn) -> None:
    """Lesson 5: ``consensus_fn(logits (m, S, C)) -> (S, C)``, the equal-weight mean over parties."""
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 6, 16, generator=generator) * 3
    got = as_tensor_answer(consensus_fn(logits), "consensus_fn(logits)")
    if got.shape != (6, 16):
        raise Wrong(f"for logits of shape (4 parties, 6 samples, 16 classes) you returned shape {tuple(got.shape)}, "
                    "expected (6, 16): average over the parties, dimension 0.")
    if torch.allclose(got.sum(dim=-1), torch.ones(6), atol=1e-4):
        raise Wrong("your rows sum to 1: FedMD averages the raw logits, without a softmax.")
    if torch.allclose(got.double(), logits.sum(dim=0).double(), atol=1e-4):
        raise Wrong("you summed the parties' logits; divide by the number of parties (the mean, 1/m Σ f_k).")
    assert_close_answer(got, sum(logits[k] for k in range(4)) / 4, "four parties",
                        "The consensus is (1/m) Σ_k f_k, the mean over dimension 0.")
    one = torch.randn(1, 3, 16, generator=generator)
    assert_close_answer(as_tensor_answer(consensus_fn(one), "consensus_fn(one party)"), one[0], "a single party",
                        "With one party the consensus is that party's own logits.")
    agree = torch.tensor([[2.0, -1.0]]).expand(3, 1, 2)
    assert_close_answer(as_tensor_answer(consensus_fn(agree), "consensus_fn(identical logits)"), agree[0],
                        "parties that agree", "If every party sends the same logits, the consensus equals them.")


def _reference_round_bytes(num_parties, subset_size, num_classes, bytes_per_number=4):
    return 2 * num_parties * subset_size * num_classes * bytes_per_number


@checked_arguments(bytes_fn=Callable())
@checker("You count every party's upload of its logits and its download of the consensus, in bytes.")
def check_fedmd_round_bytes(bytes_fn) -> None:
    """Lesson 5: ``bytes_fn(num_parties, subset_size, num_classes, bytes_per_number=4) -> int``."""
    cases = [(10, 5000, 16, 4), (10, 500, 16, 4), (3, 7, 5, 8), (1, 1, 2, 2)]
    for num_parties, subset_size, num_classes, width in cases:
        got = bytes_fn(num_parties, subset_size, num_classes, width)
        if isinstance(got, torch.Tensor):
            got = got.item()
        expected = _reference_round_bytes(num_parties, subset_size, num_classes, width)
        if got == expected:
            continue
        case = f"for {num_parties} parties, S = {subset_size}, C = {num_classes}, {width} bytes per number"
        if width != 4 and got == expected / width * 4:  # before the half: at 8 bytes, 4 gives half the count
            raise Wrong(f"{case} you count {got:,}: that is 4 bytes per number whatever bytes_per_number says; "
                        "multiply by bytes_per_number.")
        if got == expected / 2:
            raise Wrong(f"{case} you count {got:,} bytes, half the right number: each party also downloads the consensus.")
        if got == expected / width:
            raise Wrong(f"{case} you count {got:,}: that is numbers, not bytes; multiply by bytes_per_number.")
        if got == expected / num_parties:
            raise Wrong(f"{case} you count {got:,}: every one of the {num_parties} parties sends and receives.")
        raise Wrong(f"{case} you count {got!r} bytes; the right number is {expected:,} (2 · m · S · C · bytes).")


def _small_federation(seed: int):
    """Three parties with different small MLPs (no dropout), a few private 'letters' each, and 96
    public 'digits': random images, enough to tell a right round from a wrong one in a second."""
    from fedkd_lessons.fedmd import NUM_CLASSES, NUM_PUBLIC_CLASSES, make_parties
    from fedkd_lessons.engine.models import make_mlp

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    models = [(f"mlp {hidden}", make_mlp(hidden, num_classes=NUM_CLASSES)) for hidden in ((8,), (16,), (8, 8))]
    private = [(torch.rand(12, 1, 8, 8, generator=generator),
                torch.randint(NUM_PUBLIC_CLASSES, NUM_CLASSES, (12,), generator=generator)) for _ in models]
    parties = make_parties(models, private, seed=seed)
    for party in parties:
        party.batch_size = 4
    return parties, torch.rand(96, 1, 8, 8, generator=generator)


def _spread(parties, public_images, indices) -> float:
    """How far the parties' logits on ``public_images[indices]`` are from their mean (mean absolute)."""
    from fedkd_lessons.fedmd import party_logits

    scores = torch.stack([party_logits(party, public_images, indices) for party in parties])
    return float((scores - scores.mean(dim=0)).abs().mean())


def _round_by(parties, public_images, server, subset_size, steps) -> None:
    """A round written from the package's steps, in the order ``steps`` gives (for diagnosis)."""
    from fedkd_lessons.fedmd import compute_consensus, digest, party_logits, revisit

    indices = torch.randperm(len(public_images), generator=server)[:subset_size]
    scores = torch.stack([party_logits(party, public_images, indices) for party in parties])
    for step in steps:
        if step == "digest":
            digest(parties, public_images[indices], compute_consensus(scores), epochs=1)
        elif step == "digest probabilities":
            digest(parties, public_images[indices], compute_consensus(scores, "probabilities"), epochs=1,
                   kind="probabilities")
        else:
            revisit(parties, epochs=1)


def _same_weights(parties, others) -> bool:
    return all(torch.allclose(a, b, atol=1e-5, rtol=1e-4)
               for party, other in zip(parties, others)
               for a, b in zip(party.model.state_dict().values(), other.model.state_dict().values()))


@checked_arguments(round_fn=Callable())
@checker("Your round communicates, aggregates, digests and revisits in Algorithm 1's order, and its parties end "
         "exactly where the package's fedmd_round leaves them.")
def check_fedmd_round(round_fn) -> str:
    """Lesson 5: ``round_fn(parties, public_images, server, subset_size)`` runs one FedMD round in
    place: the subset drawn with ``torch.randperm(len(public_images), generator=server)[:subset_size]``,
    digest for 1 epoch (batch 64) towards the mean logits, then revisit for 1 epoch. Checked against
    :func:`fedkd_lessons.fedmd.fedmd_round` on three small parties, and by its effect: the parties'
    scores on the round's subset move closer together."""
    import copy

    from fedkd_lessons.fedmd import FedMDRun, FedMDSettings, fedmd_round

    parties, public = _small_federation(seed=11)
    subset_size = 48
    copies = {name: copy.deepcopy(parties) for name in ("yours", "reference", "revisit first", "no revisit",
                                                         "no digest", "probabilities")}
    servers = {name: torch.Generator().manual_seed(3) for name in copies}
    indices = torch.randperm(len(public), generator=torch.Generator().manual_seed(3))[:subset_size]
    before = _spread(parties, public, indices)
    returned = round_fn(copies["yours"], public, servers["yours"], subset_size)
    if returned is not None and not isinstance(returned, (list, tuple)):
        raise Wrong(f"the round works in place and returns nothing; yours returned a {type(returned).__name__}.")
    rounds = FedMDSettings(subset_size=subset_size, digest_epochs=1, revisit_epochs=1, digest_batch_size=64)
    fedmd_round([FedMDRun(copies["reference"], public[:1], torch.zeros(1, dtype=torch.long), rounds)],
                [servers["reference"]], public)
    if _same_weights(copies["yours"], parties):
        raise Wrong("the parties' weights did not change: train them in place (digest, then revisit).")
    if not torch.equal(servers["yours"].get_state(), servers["reference"].get_state()):
        raise Wrong("draw the round's public subset with the server's generator: "
                    "torch.randperm(len(public_images), generator=server)[:subset_size].")
    if not _same_weights(copies["yours"], copies["reference"]):
        diagnoses = {"revisit first": (["revisit", "digest"], "you revisit before you digest; Algorithm 1 digests "
                                       "the consensus first, then revisits the private data"),
                     "no revisit": (["digest"], "you digest but never revisit: finish with one epoch on each "
                                    "party's private data (revisit(parties, epochs=1))"),
                     "no digest": (["revisit"], "you revisit but never digest: train every party towards the "
                                   "consensus on the subset first (digest)"),
                     "probabilities": (["digest probabilities", "revisit"], "you digest softened probabilities; "
                                       "FedMD's consensus is the mean of the raw logits, fitted with MAE")}
        for name, (steps, message) in diagnoses.items():
            _round_by(copies[name], public, servers[name], subset_size, steps)
            if _same_weights(copies["yours"], copies[name]):
                raise Wrong(message + ".")
        raise Wrong("your parties end with other weights than one FedMD round gives: communicate (party_logits on "
                    "the subset), aggregate (compute_consensus), digest(parties, subset, consensus, epochs=1), "
                    "revisit(parties, epochs=1).")
    after = _spread(copies["yours"], public, indices)
    if not after < before:
        raise Wrong(f"the parties' scores on the subset did not move closer together ({before:.3f} -> {after:.3f}).")
    return (f"Its effect: the parties' scores on the round's {subset_size} public images moved closer together "
            "(their mean distance to the consensus shrank).")
