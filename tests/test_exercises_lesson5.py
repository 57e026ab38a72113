import torch

from fedkd_lessons.exercises import check_consensus, check_fedmd_round_bytes
from fedkd_lessons.fedmd import bytes_per_round, compute_consensus
from fedkd_lessons.models import make_mlp


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
