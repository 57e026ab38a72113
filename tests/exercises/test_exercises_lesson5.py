import pytest
import torch

from fedkd_lessons.exercises import check_consensus, check_fedmd_round, check_fedmd_round_bytes
from fedkd_lessons.fedmd import bytes_per_round, compute_consensus, digest, party_logits, revisit
from fedkd_lessons.engine.models import make_mlp


def unsolved(*args):
    raise NotImplementedError()


def test_consensus_checker_accepts_reference_and_reports_unsolved():
    assert check_consensus(compute_consensus).passed
    assert check_consensus(unsolved).status == "not solved"


def test_consensus_checker_rejects_softmax_before_averaging():
    feedback = check_consensus(lambda z: torch.softmax(z, dim=-1).mean(dim=0))
    assert not feedback.passed and "without a softmax" in feedback.message


def test_consensus_checker_rejects_sum_instead_of_mean():
    feedback = check_consensus(lambda z: z.sum(dim=0))
    assert not feedback.passed and "divide by the number of parties" in feedback.message


def test_consensus_checker_rejects_mean_over_the_wrong_dimension():
    feedback = check_consensus(lambda z: z.mean(dim=1))
    assert not feedback.passed and "dimension 0" in feedback.message


def reference_bytes(num_parties, subset_size, num_classes, bytes_per_number=4):
    models = [make_mlp((2,), num_classes=num_classes)] * num_parties
    return bytes_per_round(models, subset_size, num_classes, bytes_per_number).fedmd


def test_bytes_checker_accepts_reference_and_reports_unsolved():
    assert check_fedmd_round_bytes(reference_bytes).passed
    assert check_fedmd_round_bytes(unsolved).status == "not solved"


def test_bytes_checker_rejects_forgotten_download():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: m * s * c * b)
    assert not feedback.passed and "downloads the consensus" in feedback.message


def test_bytes_checker_rejects_numbers_instead_of_bytes():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * m * s * c)
    assert not feedback.passed and "numbers, not bytes" in feedback.message


def test_bytes_checker_rejects_one_party_only():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * s * c * b)
    assert not feedback.passed and "every one of the" in feedback.message


def _round(steps, use_server=True, kind="logits"):
    """A learner's FedMD round written from the package's steps in the order given."""
    def round_fn(parties, public_images, server, subset_size):
        order = torch.randperm(len(public_images), generator=server if use_server else None)
        indices = order[:subset_size]
        scores = torch.stack([party_logits(p, public_images, indices) for p in parties])
        for step in steps:
            if step == "digest":
                digest(parties, public_images[indices], compute_consensus(scores, kind), epochs=1, kind=kind)
            else:
                revisit(parties, epochs=1)
    return round_fn


def test_round_checker_accepts_algorithm_1_and_reports_unsolved():
    feedback = check_fedmd_round(_round(["digest", "revisit"]))
    assert feedback.passed and "moved closer together" in feedback.message
    assert check_fedmd_round(unsolved).status == "not solved"


@pytest.mark.parametrize("round_fn, message", [
    (_round(["revisit", "digest"]), "you revisit before you digest"),
    (_round(["digest"]), "you digest but never revisit"),
    (_round(["revisit"]), "you revisit but never digest"),
    (_round(["digest", "revisit"], kind="probabilities"), "you digest softened probabilities"),
    (_round(["digest", "revisit"], use_server=False), "with the server's generator"),
    (_round([]), "weights did not change"),
    (_round(["digest", "digest", "revisit"]), "other weights than one FedMD round gives"),
])
def test_round_checker_names_the_mistake(round_fn, message):
    feedback = check_fedmd_round(round_fn)
    assert not feedback.passed and message in feedback.message
