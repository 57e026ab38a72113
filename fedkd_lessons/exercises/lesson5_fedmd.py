"""Checkers for lesson 5's exercises: FedMD's consensus and the bytes one round moves."""

import torch

from .feedback import Wrong, as_tensor_answer, assert_close_answer, checker


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
        if got == expected / 2:
            raise Wrong(f"{case} you count {got:,} bytes, half the right number: each party also downloads the consensus.")
        if got == expected / width:
            raise Wrong(f"{case} you count {got:,}: that is numbers, not bytes; multiply by bytes_per_number.")
        if got == expected / num_parties:
            raise Wrong(f"{case} you count {got:,}: every one of the {num_parties} parties sends and receives.")
        raise Wrong(f"{case} you count {got!r} bytes; the right number is {expected:,} (2 · m · S · C · bytes).")
