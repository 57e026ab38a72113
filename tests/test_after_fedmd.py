"""FD, FedDF, DS-FL, the defence and the attack (fedkd_lessons/after_fedmd.py), each formula against
hand-computed values or torch.nn.functional, and the one harness on a tiny federation."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fedkd_lessons.after_fedmd import (METHODS, MethodOptions, MethodRun, accuracies, add_noise, average_weights,
                                       entropy_reduction_average, estimate_class_mix, fd_loss, fd_tables, fd_teachers,
                                       fd_train, feddf_targets, logits_of_many, mean_entropy, method_bytes_per_round,
                                       methods_round, per_label_mean_logits, run_methods_together)
from fedkd_lessons.fedmd import Party, bytes_per_round
from fedkd_lessons.engine.models import accuracy, make_cnn, make_mlp, predict_logits


# ------------------------------------------------------------------------------------------ FD

def test_per_label_means_by_hand():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    means, counts = per_label_mean_logits(logits, labels, num_classes=3)
    assert torch.equal(counts, torch.tensor([2.0, 0.0, 1.0]))
    assert torch.allclose(means, torch.tensor([[2.0, 3.0], [0.0, 0.0], [10.0, 0.0]]))


def test_fd_teachers_average_the_other_holders_only():
    # 3 parties, 2 labels, 1 class column; party 2 does not hold label 1
    tables = torch.tensor([[[1.0], [10.0]], [[3.0], [20.0]], [[8.0], [99.0]]])
    counts = torch.tensor([[5, 2], [1, 4], [3, 0]])
    teachers, defined = fd_teachers(tables, counts)
    # label 0: holders {0, 1, 2}; party 0 -> (3 + 8) / 2, party 1 -> (1 + 8) / 2, party 2 -> (1 + 3) / 2
    # label 1: holders {0, 1}; party 0 -> 20, party 1 -> 10, party 2 -> (10 + 20) / 2 (its 99 is ignored)
    assert torch.allclose(teachers[:, :, 0], torch.tensor([[5.5, 20.0], [4.5, 10.0], [2.0, 15.0]]))
    assert defined.all()
    teachers, defined = fd_teachers(tables[:1], counts[:1])  # alone: nobody else holds anything
    assert not defined.any() and torch.equal(teachers, torch.zeros_like(teachers))


def test_fd_loss_is_cross_entropy_plus_weighted_t_squared_kl():
    generator = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator) * 2
    labels = torch.tensor([0, 1, 2, 3, 0])
    T, beta = 3.0, 0.7
    p, log_q = F.softmax(teacher / T, dim=1), F.log_softmax(logits / T, dim=1)
    by_hand = -F.log_softmax(logits, dim=1)[torch.arange(5), labels] + beta * T**2 * (p * (p.log() - log_q)).sum(1)
    assert torch.allclose(fd_loss(logits, labels, teacher, weight=beta, temperature=T), by_hand, atol=1e-6)
    assert torch.allclose(fd_loss(logits, labels, teacher, weight=0.0), F.cross_entropy(logits, labels, reduction="none"))
    mask = torch.tensor([True, False, True, False, True])
    masked = fd_loss(logits, labels, teacher, mask, weight=beta, temperature=T)
    assert torch.allclose(masked[~mask], F.cross_entropy(logits, labels, reduction="none")[~mask])
    assert torch.allclose(masked[mask], by_hand[mask], atol=1e-6)


# --------------------------------------------------------------------------------------- FedDF

def test_average_weights_by_hand():
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        a.weight.copy_(torch.tensor([[1.0, 2.0]])), a.bias.fill_(0.0)
        b.weight.copy_(torch.tensor([[3.0, -2.0]])), b.bias.fill_(1.0)
    averaged = average_weights([a, b])
    assert torch.equal(averaged["weight"], torch.tensor([[2.0, 0.0]]))
    assert torch.equal(averaged["bias"], torch.tensor([0.5]))


def test_feddf_target_is_softmax_of_the_mean_logits():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]])  # two parties, one sample
    assert torch.allclose(feddf_targets(logits), F.softmax(torch.tensor([[1.0, 0.0]]), dim=1))
    assert torch.allclose(feddf_targets(logits, temperature=2.0), F.softmax(torch.tensor([[0.5, 0.0]]), dim=1))


# --------------------------------------------------------------------------------------- DS-FL

def test_entropy_reduction_by_hand():
    probabilities = torch.tensor([[[0.6, 0.4]], [[0.2, 0.8]]])  # mean (0.4, 0.6)
    expected = torch.tensor([[1.0, math.exp(2.0)]]) / (1 + math.exp(2.0))  # softmax((0.4, 0.6) / 0.1)
    assert torch.allclose(entropy_reduction_average(probabilities, 0.1), expected)


def parties_sure_of(classes, num_classes=16):
    """(m, 1, C): party k puts all but 1e-6 of its mass on classes[k]."""
    probabilities = torch.full((len(classes), 1, num_classes), 1e-6 / (num_classes - 1))
    for k, c in enumerate(classes):
        probabilities[k, 0, c] = 1 - 1e-6
    return probabilities


def test_entropy_reduction_sharpens_a_majority_and_keeps_the_order():
    probabilities = parties_sure_of([0] * 7 + [1] * 3)  # plain average (0.7, 0.3, 0, ...)
    plain, sharpened = probabilities.mean(dim=0), entropy_reduction_average(probabilities, 0.1)
    assert mean_entropy(sharpened) < mean_entropy(plain)
    assert float(sharpened[0, 0]) == pytest.approx(math.exp(7) / (math.exp(7) + math.exp(3) + 14), rel=1e-4)
    assert torch.equal(sharpened.argmax(dim=1), plain.argmax(dim=1))


def test_entropy_reduction_spreads_a_split_vote_onto_the_absent_classes():
    # (0.4, 0.3, 0.3, 0, ...): at T = 0.1 the 13 absent classes get exp(0) each against exp(4),
    # so the "reduced" target has *more* entropy than the plain average
    probabilities = parties_sure_of([0] * 4 + [1] * 3 + [2] * 3)
    plain, sharpened = probabilities.mean(dim=0), entropy_reduction_average(probabilities, 0.1)
    assert mean_entropy(sharpened) > mean_entropy(plain)
    assert float(sharpened[0, 3:].sum()) == pytest.approx(13 / (math.exp(4) + 2 * math.exp(3) + 13), rel=1e-4)


def test_entropy_reduction_softens_a_near_uniform_average():
    # gaps of a few hundredths between 16 classes: divided by T = 0.1 they become a few tenths in
    # logit, smaller ratios than the probabilities had
    plain = torch.tensor([[0.03] * 8 + [0.095] * 8])
    sharpened = entropy_reduction_average(plain.unsqueeze(0), 0.1)
    assert mean_entropy(sharpened) > mean_entropy(plain)
    assert torch.equal(sharpened.argsort(dim=1), plain.argsort(dim=1))


def test_entropy_reduction_slightly_softens_a_one_hot_average():
    one_hot = F.one_hot(torch.tensor([[3]]), 16).float()  # (1 party, 1 sample, 16)
    top = entropy_reduction_average(one_hot, 0.1)[0, 3]
    assert top == pytest.approx(math.exp(10) / (math.exp(10) + 15), rel=1e-6)
    assert round(float(top), 4) == 0.9993


# ------------------------------------------------------------------------------- attack, defence

def test_estimate_class_mix_by_hand():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.1, 0.4]]))  # probabilities are these rows
    mix = estimate_class_mix(scores, [1, 2])
    assert torch.allclose(mix, torch.tensor([0.2, 0.3]) / 0.5)


def test_add_noise_has_the_asked_spread_and_zero_leaves_scores_alone():
    scores = torch.zeros(200, 50)
    assert add_noise(scores, 0.0) is scores
    noisy = add_noise(scores, 3.0, torch.Generator().manual_seed(0))
    assert float(noisy.std()) == pytest.approx(3.0, rel=0.02) and abs(float(noisy.mean())) < 0.05


# ------------------------------------------------------------------------------------------- bytes

def test_bytes_per_round_by_hand_and_like_fedmd():
    models = [make_mlp((8,), num_classes=16), make_cnn((4,), num_classes=16)]
    fedmd = bytes_per_round(models, 500)
    assert method_bytes_per_round("FedMD", models, subset_size=500, labels_held=6) == 2 * 2 * 500 * 16 * 4 == fedmd.fedmd
    assert method_bytes_per_round("DS-FL", models, subset_size=500, labels_held=6) == fedmd.fedmd
    assert method_bytes_per_round("FD", models, subset_size=500, labels_held=6) == 2 * 2 * 6 * 16 * 4
    assert method_bytes_per_round("FedDF", models, subset_size=500, labels_held=6) == fedmd.fedavg
    assert method_bytes_per_round("control", models, subset_size=500, labels_held=6) == 0


# ------------------------------------------------------------------------------- batched scoring

def test_logits_of_many_and_accuracies_equal_the_model_by_model_ones():
    torch.manual_seed(0)
    models = [make_mlp((8,), num_classes=16), make_cnn((4,), num_classes=16), make_mlp((8,), num_classes=16)]
    images = [torch.rand(7, 1, 8, 8) for _ in models]
    for model, x, got in zip(models, images, logits_of_many(models, images)):
        assert torch.allclose(got, predict_logits(model, x), atol=1e-5)
    labels = [torch.randint(0, 16, (7,)) for _ in models]
    got = accuracies(models, list(zip(images, labels)))
    assert np.allclose(got, [accuracy(m, x, y) for m, x, y in zip(models, images, labels)])


# --------------------------------------------------------------------------------- the harness

def tiny_federation(seed=0):
    torch.manual_seed(seed)
    models = [("a", make_mlp((8,), num_classes=16)), ("b", make_mlp((8,), num_classes=16)),
              ("c", make_cnn((4,), num_classes=16))]
    parties = []
    for k, (name, model) in enumerate(models):
        labels = torch.arange(10, 16).repeat(2)
        parties.append(Party(name, model, torch.rand(len(labels), 1, 8, 8), labels, seed=k))
    return parties, torch.rand(40, 1, 8, 8), torch.rand(12, 1, 8, 8), torch.arange(10, 16).repeat(2)


def test_every_method_runs_and_leaves_the_originals_alone():
    parties, public, test_images, test_labels = tiny_federation()
    before = copy.deepcopy([p.model.state_dict() for p in parties])
    runs = [MethodRun(method, parties, test_images, test_labels, subset_size=20) for method in METHODS]
    histories = run_methods_together(runs, public, rounds=2)
    for history in histories:
        assert history.accuracy.shape == (3, 3)
        assert np.array_equal(history.accuracy[0], histories[0].accuracy[0])  # one start for all
    for party, state in zip(parties, before):
        assert all(torch.equal(party.model.state_dict()[key], state[key]) for key in state)


def test_round_0_is_each_start_scored_once_and_other_starts_apart():
    parties, public, test_images, test_labels = tiny_federation()
    others, *_ = tiny_federation(seed=1)
    runs = [MethodRun("FedMD", parties, test_images, test_labels, subset_size=20),
            MethodRun("control", parties, test_images, test_labels, subset_size=20),
            MethodRun("control", others, test_images, test_labels, subset_size=20)]
    fedmd, control, other = run_methods_together(runs, public, rounds=1)
    expected = accuracies([p.model for p in parties], [(test_images, test_labels)] * 3)
    assert np.allclose(fedmd.accuracy[0], expected) and np.array_equal(control.accuracy[0], fedmd.accuracy[0])
    assert np.allclose(other.accuracy[0], accuracies([p.model for p in others], [(test_images, test_labels)] * 3))
    assert not np.array_equal(other.accuracy[0], fedmd.accuracy[0])


def test_fd_without_its_term_is_the_control():
    parties, public, test_images, test_labels = tiny_federation()
    runs = [MethodRun("FD", parties, test_images, test_labels, subset_size=20),
            MethodRun("control", parties, test_images, test_labels, subset_size=20)]
    fd, control = run_methods_together(runs, public, rounds=2, options=MethodOptions(fd_weight=0.0))
    for a, b in zip(fd.parties, control.parties):
        assert all(torch.allclose(a.model.state_dict()[key], b.model.state_dict()[key], atol=1e-6)
                   for key in a.model.state_dict())


def test_feddf_gives_the_parties_of_one_architecture_one_model():
    parties, public, test_images, test_labels = tiny_federation()
    run = MethodRun("FedDF", parties, test_images, test_labels, subset_size=20)
    history, = run_methods_together([run], public, rounds=1, options=MethodOptions(revisit_epochs=0))
    a, b, _ = history.parties
    assert all(torch.equal(a.model.state_dict()[key], b.model.state_dict()[key]) for key in a.model.state_dict())


def test_fd_tables_are_per_label_means_of_the_private_logits():
    parties, *_ = tiny_federation()
    tables, counts = fd_tables(parties)
    logits = predict_logits(parties[0].model, parties[0].private_images)
    assert torch.allclose(tables[0, 12], logits[parties[0].private_labels == 12].mean(0), atol=1e-5)
    assert counts[0, 12] == 2 and counts[0, 3] == 0


# ----------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: per_label_mean_logits(torch.zeros(3), torch.tensor([0, 1])), r"logits must have 2 dimension\(s\)"),
    (lambda: per_label_mean_logits(torch.zeros(2, 2), torch.tensor([0.0, 1.0])), "labels must hold integers"),
    (lambda: per_label_mean_logits(torch.zeros(2, 2), torch.tensor([0, 5]), num_classes=3), "labels must lie in"),
    (lambda: fd_teachers(torch.zeros(2, 3), torch.zeros(2, 3)), r"tables must have 3 dimension\(s\)"),
    (lambda: fd_teachers(torch.zeros(2, 3, 4), -torch.ones(2, 3)), "counts must be >= 0"),
    (lambda: fd_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 4)),
     r"logits \(2, 3\) and teacher_logits \(2, 4\)"),
    (lambda: fd_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3), weight=-1.0), "weight must be"),
    (lambda: fd_loss(torch.zeros(2, 3), torch.tensor([0, 1]), torch.zeros(2, 3), temperature=0.0), "temperature"),
    (lambda: average_weights([]), "models must be a list or tuple of at least 1"),
    (lambda: average_weights([make_mlp((8,)), make_mlp((4,))]), r"models\[1\] has another architecture"),
    (lambda: feddf_targets(torch.zeros(2, 3, 4), temperature=-1.0), "temperature"),
    (lambda: entropy_reduction_average(torch.full((2, 3, 4), 0.25), 0.0), "temperature"),
    (lambda: entropy_reduction_average(torch.full((3, 4), 0.25)), r"probabilities must have 3 dimension\(s\)"),
    (lambda: entropy_reduction_average(torch.zeros(2, 3, 4)), "probabilities must be >= 0 with rows summing to 1"),
    (lambda: add_noise(torch.zeros(2), -1.0), "noise_std must be"),
    (lambda: add_noise(torch.zeros(2), float("nan")), "noise_std must be"),
    (lambda: estimate_class_mix(torch.zeros(4), [1]), r"scores must have 2 dimension\(s\)"),
    (lambda: estimate_class_mix(torch.zeros(4, 3), []), "classes must be a list or tuple of at least 1"),
    (lambda: method_bytes_per_round("FedAvg", [make_mlp((8,))], subset_size=1, labels_held=1), "method must be one of"),
    (lambda: method_bytes_per_round("FD", [make_mlp((8,))], subset_size=1, labels_held=0), "labels_held must be"),
    (lambda: method_bytes_per_round("FD", [], subset_size=1, labels_held=1), "models must be a list or tuple"),
    (lambda: mean_entropy(torch.full((4,), 0.25)), r"probabilities must have 2 dimension\(s\)"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match="^" + message):
        call()


# One test per check between arguments: each names the argument at fault.

def test_labels_of_another_length_than_the_logits_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^labels must give one label per row of logits \(3\), got 2"):
        per_label_mean_logits(torch.zeros(3, 2), torch.tensor([0, 1]))


def test_counts_of_another_shape_than_the_tables_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^counts must be \(parties, labels\) = \(2, 3\)"):
        fd_teachers(torch.zeros(2, 3, 4), torch.zeros(2, 2))


def test_a_class_beyond_the_scores_columns_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^classes must be column indices of scores, in \[0, 2\], got \[3\]"):
        estimate_class_mix(torch.zeros(4, 3), [3])


def test_images_not_one_per_model_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^images must give one image tensor per model \(1\), got 2"):
        logits_of_many([make_mlp((8,))], [torch.rand(2, 1, 8, 8)] * 2)


def test_test_sets_not_one_per_model_are_rejected_by_name():
    with pytest.raises(ValueError, match=r"^sets must give one test set per model \(1\), got 2"):
        accuracies([make_mlp((8,))], [(torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))] * 2)


def test_a_test_set_with_labels_of_another_length_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^sets\[0\] must give one label per image \(2\), got 3"):
        accuracies([make_mlp((8,))], [(torch.rand(2, 1, 8, 8), torch.tensor([0, 1, 2]))])


def test_a_test_set_that_is_no_pair_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"^sets\[0\] must be an \(images, labels\) pair, got 1 item\(s\)"):
        accuracies([make_mlp((8,))], [(torch.rand(2, 1, 8, 8),)])


def test_fd_teachers_not_one_per_party_are_rejected_by_name():
    parties, *_ = tiny_federation()
    teachers, defined = fd_teachers(*fd_tables(parties))
    with pytest.raises(ValueError, match=r"^teachers and defined must give one table per party \(3\), got 2 and 3"):
        fd_train(parties, list(teachers[:2]), list(defined), epochs=1, weight=1.0, temperature=1.0)


def test_fd_teachers_without_a_row_for_a_party_label_are_rejected_by_name():
    parties, *_ = tiny_federation()
    teachers, defined = fd_teachers(*fd_tables(parties))
    with pytest.raises(ValueError, match=r"^teachers\[0\] must hold a row for every label of party 'a' \(up to 15\)"):
        fd_train(parties, [t[:10] for t in teachers], [d[:10] for d in defined], epochs=1, weight=1.0, temperature=1.0)


def test_generators_not_one_per_run_are_rejected_by_name():
    parties, public, test_images, test_labels = tiny_federation()
    runs = [MethodRun("FedMD", parties, test_images, test_labels, subset_size=20)]
    with pytest.raises(ValueError, match=r"^servers and noise must give one generator per run \(1\), got 2 and 1"):
        methods_round(runs, [torch.Generator()] * 2, [torch.Generator()], public, MethodOptions())


def test_a_subset_larger_than_the_public_set_is_rejected_by_name_in_a_round():
    parties, public, test_images, test_labels = tiny_federation()
    runs = [MethodRun("FedMD", parties, test_images, test_labels, subset_size=41)]
    with pytest.raises(ValueError, match=r"^runs\[0\].subset_size must be at most the public set's size 40, got 41"):
        methods_round(runs, [torch.Generator()], [torch.Generator()], public, MethodOptions())


def test_method_run_rejects_bad_settings():
    parties, public, test_images, test_labels = tiny_federation()
    with pytest.raises(ValueError, match="^method must be one of"):
        MethodRun("FedAvg", parties, test_images, test_labels)
    with pytest.raises(ValueError, match="^noise_std is the defence on FedMD"):
        MethodRun("FD", parties, test_images, test_labels, noise_std=1.0)
    with pytest.raises(ValueError, match="^subset_size must be"):
        MethodRun("FedMD", parties, test_images, test_labels, subset_size=0)
    with pytest.raises(ValueError, match="^parties must be a list or tuple of at least 1"):
        MethodRun("FedMD", [], test_images, test_labels)
    with pytest.raises(ValueError, match="^seed must be an integer >= 0"):
        MethodRun("FedMD", parties, test_images, test_labels, seed=-1)
    with pytest.raises(ValueError, match="^subset_size must be at most"):
        run_methods_together([MethodRun("FedMD", parties, test_images, test_labels, subset_size=41)], public, rounds=1)
    with pytest.raises(ValueError, match="^runs must be a list or tuple of at least 1"):
        run_methods_together([], public, rounds=1)


def test_a_run_whose_test_labels_are_not_one_per_test_image_is_rejected_by_name():
    parties, _, test_images, test_labels = tiny_federation()
    with pytest.raises(ValueError, match=r"^test_labels must give one label per test image \(12\), got 11"):
        MethodRun("FedMD", parties, test_images, test_labels[:11])


def test_method_options_check_their_fields():
    with pytest.raises(ValueError, match="^fd_weight must be a finite number >= 0"):
        MethodOptions(fd_weight=-1.0)
    with pytest.raises(ValueError, match="^era_temperature must be a finite number > 0"):
        MethodOptions(era_temperature=0.0)


def test_measuring_fewer_rounds_keeps_round_zero_and_the_last_and_the_same_numbers():
    parties, public, test_images, test_labels = tiny_federation()
    run = MethodRun("FedMD", parties, test_images, test_labels, subset_size=20)
    torch.manual_seed(0)
    every, = run_methods_together([run], public, rounds=3)
    torch.manual_seed(0)
    ends, = run_methods_together([run], public, rounds=3, measure_every=None)
    torch.manual_seed(0)
    second, = run_methods_together([run], public, rounds=3, measure_every=2)
    assert every.settings["measured_rounds"] == (0, 1, 2, 3) and ends.settings["measured_rounds"] == (0, 3)
    assert second.settings["measured_rounds"] == (0, 2, 3)
    assert np.array_equal(ends.accuracy, every.accuracy[[0, 3]])
    assert np.array_equal(second.accuracy, every.accuracy[[0, 2, 3]])
    with pytest.raises(ValueError, match="measure_every must be"):
        run_methods_together([run], public, rounds=1, measure_every=0)
