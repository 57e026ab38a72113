"""Lesson 5's checkers against answers written here, never with the package's fedmd functions: the
consensus as a loop over the parties, the bytes as hand-worked counts, and a whole FedMD round in
plain torch (Li & Wang 2019, Algorithm 1: eval-mode logits on the server's subset, their mean, one
epoch of Adam on the mean absolute error towards it, one epoch of cross-entropy on the private
data), so a bug shared by the checker and the package's fedmd_round makes these tests fail. Each
typical mistake gets feedback that names it."""

import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.exercises import check_consensus, check_fedmd_round, check_fedmd_round_bytes


def unsolved(*args):
    raise NotImplementedError()


# --- the consensus ------------------------------------------------------------------------------

def mean_by_loop(logits):
    """(1/m) Σ_k f_k, party by party."""
    total = torch.zeros_like(logits[0])
    for party in logits:
        total = total + party
    return total / len(logits)


def test_mean_by_loop_on_values_worked_by_hand():
    # parties (1, 2) and (3, 6) on one sample: the mean is (2, 4); a third party (-4, 1) makes it (0, 3).
    assert mean_by_loop(torch.tensor([[[1.0, 2.0]], [[3.0, 6.0]]])).tolist() == [[2.0, 4.0]]
    assert mean_by_loop(torch.tensor([[[1.0, 2.0]], [[3.0, 6.0]], [[-4.0, 1.0]]])).tolist() == [[0.0, 3.0]]


def test_consensus_checker_accepts_a_mean_written_by_hand_and_reports_unsolved():
    feedback = check_consensus(mean_by_loop)
    assert feedback.passed and "plain mean" in feedback.message
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


def test_consensus_checker_rejects_dividing_by_one_party_too_many_and_a_non_tensor():
    feedback = check_consensus(lambda z: z.sum(dim=0) / (len(z) + 1))
    assert not feedback.passed and "(1/m) Σ_k f_k" in feedback.message
    feedback = check_consensus(lambda z: z.mean(dim=0).tolist())
    assert not feedback.passed and "should return a torch.Tensor" in feedback.message


# --- the bytes of one round ---------------------------------------------------------------------

# Worked by hand, 2 · m · S · C · bytes (each party uploads its S × C logits and downloads the consensus):
# 2 · 10 · 5000 · 16 · 4 = 6,400,000; 2 · 10 · 500 · 16 · 4 = 640,000; 2 · 3 · 7 · 5 · 8 = 1,680; 2 · 1 · 1 · 2 · 2 = 8.
BYTES_BY_HAND = {(10, 5000, 16, 4): 6_400_000, (10, 500, 16, 4): 640_000, (3, 7, 5, 8): 1_680, (1, 1, 2, 2): 8}


def test_bytes_checker_agrees_with_the_counts_worked_by_hand():
    def looked_up(num_parties, subset_size, num_classes, bytes_per_number=4):
        return BYTES_BY_HAND[num_parties, subset_size, num_classes, bytes_per_number]

    assert check_fedmd_round_bytes(looked_up).passed


def test_bytes_checker_accepts_the_formula_and_reports_unsolved():
    assert check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * m * s * c * b).passed
    assert check_fedmd_round_bytes(lambda m, s, c, b=4: torch.tensor(2 * m * s * c * b)).passed
    assert check_fedmd_round_bytes(unsolved).status == "not solved"


def test_bytes_checker_rejects_forgotten_download():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: m * s * c * b)
    assert not feedback.passed and "3,200,000 bytes, half the right number" in feedback.message


def test_bytes_checker_rejects_numbers_instead_of_bytes():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * m * s * c)
    assert not feedback.passed and "numbers, not bytes" in feedback.message


def test_bytes_checker_rejects_one_party_only():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * s * c * b)
    assert not feedback.passed and "every one of the 10 parties" in feedback.message


def test_bytes_checker_rejects_the_default_width_ignored_and_states_the_right_count():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * m * s * c * 4)
    assert not feedback.passed and "for 3 parties, S = 7, C = 5, 8 bytes per number you count 840" in feedback.message
    assert "4 bytes per number whatever bytes_per_number says" in feedback.message


def test_bytes_checker_states_the_right_count_of_an_unnamed_mistake():
    feedback = check_fedmd_round_bytes(lambda m, s, c, b=4: 2 * m * s * c * b + 1)
    assert not feedback.passed and "you count 6400001 bytes; the right number is 6,400,000" in feedback.message


# --- a whole FedMD round, in plain torch --------------------------------------------------------

def train_one_epoch(model, images, targets, loss_fn, batch_size, generator, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """One epoch of Adam (Kingma & Ba 2015, Algorithm 1; fresh state, lr 1e-3 as the paper's code),
    batches shuffled by ``generator``."""
    parameters = list(model.parameters())
    first, second = [torch.zeros_like(p) for p in parameters], [torch.zeros_like(p) for p in parameters]
    model.train()
    order = torch.randperm(len(images), generator=generator)
    for step, start in enumerate(range(0, len(images), batch_size), start=1):
        batch = order[start:start + batch_size]
        gradients = torch.autograd.grad(loss_fn(model(images[batch]), targets[batch]), parameters)
        with torch.no_grad():
            for p, g, m, v in zip(parameters, gradients, first, second):
                m.mul_(betas[0]).add_((1 - betas[0]) * g)
                v.mul_(betas[1]).add_((1 - betas[1]) * g * g)
                m_hat, v_hat = m / (1 - betas[0] ** step), v / (1 - betas[1] ** step)
                p -= lr * m_hat / (v_hat.sqrt() + eps)


def scores_on(parties, images):
    """Each party's raw logits in eval mode (no softmax), stacked (m, S, C)."""
    scores = []
    for party in parties:
        party.model.eval()
        with torch.no_grad():
            scores.append(party.model(images))
    return torch.stack(scores)


def mae(logits, target):
    return (logits - target).abs().mean()


def soft_kl(logits, target):  # KL(target || softmax(logits)) at T = 1, per example then the mean
    return F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")


def mse(logits, target):
    return ((logits - target) ** 2).mean()


def plain_round(steps=("digest", "revisit"), use_server=True, probabilities=False, digest_loss=mae):
    """Algorithm 1 in plain torch, its steps in the order given (``steps`` may leave one out)."""
    def round_fn(parties, public_images, server, subset_size):
        indices = torch.randperm(len(public_images), generator=server if use_server else None)[:subset_size]
        subset = public_images[indices]
        scores = scores_on(parties, subset)  # communicate
        target = mean_by_loop(scores.softmax(dim=-1) if probabilities else scores)  # aggregate
        for step in steps:
            for party in parties:
                if step == "digest":
                    train_one_epoch(party.model, subset, target, soft_kl if probabilities else digest_loss, 64,
                                    party.generator)
                else:
                    train_one_epoch(party.model, party.private_images, party.private_labels, F.cross_entropy,
                                    party.batch_size, party.generator)
    return round_fn


def test_round_checker_accepts_algorithm_1_written_in_plain_torch_and_reports_unsolved():
    feedback = check_fedmd_round(plain_round())
    assert feedback.passed and "moved closer together" in feedback.message
    assert check_fedmd_round(unsolved).status == "not solved"


@pytest.mark.parametrize("round_fn, message", [
    (plain_round(["revisit", "digest"]), "you revisit before you digest"),
    (plain_round(["digest"]), "you digest but never revisit"),
    (plain_round(["revisit"]), "you revisit but never digest"),
    (plain_round(probabilities=True), "you digest softened probabilities"),
    (plain_round(use_server=False), "with the server's generator"),
    (plain_round([]), "weights did not change"),
    (plain_round(["digest", "digest", "revisit"]), "other weights than one FedMD round gives"),
    (plain_round(digest_loss=mse), "other weights than one FedMD round gives"),  # the authors' code fits with MAE
], ids=["revisit first", "no revisit", "no digest", "probabilities", "own subset", "no training", "two digests",
        "MSE digest"])
def test_round_checker_names_the_mistake(round_fn, message):
    feedback = check_fedmd_round(round_fn)
    assert not feedback.passed and message in feedback.message


def test_round_checker_rejects_a_round_that_returns_the_parties_consensus():
    def returns_consensus(parties, public_images, server, subset_size):
        plain_round()(parties, public_images, server, subset_size)
        return torch.zeros(subset_size, 16)

    feedback = check_fedmd_round(returns_consensus)
    assert not feedback.passed and "returns nothing" in feedback.message
