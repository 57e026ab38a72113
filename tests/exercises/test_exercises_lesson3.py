import numpy as np
import pytest
import torch

from fedkd_lessons.exercises import check_class_skew, check_clip_update, check_weighted_average
from fedkd_lessons.exercises.lesson3_federated import check_fedavg_round
from fedkd_lessons.experiments.lesson3_client_drift import DriftSettings


def unsolved(*args):
    raise NotImplementedError()


# --- the weighted average (FedAvg) --------------------------------------------------------------

def reference_average(client_states, weights):
    total = sum(weights)
    return {name: sum(w * state[name] for w, state in zip(weights, client_states)) / total for name in client_states[0]}


def test_weighted_average_checker_accepts_reference_and_reports_unsolved():
    assert check_weighted_average(reference_average).passed
    assert check_weighted_average(unsolved).status == "not solved"


def test_weighted_average_checker_rejects_plain_unweighted_mean():
    feedback = check_weighted_average(
        lambda states, weights: {name: sum(s[name] for s in states) / len(states) for name in states[0]})
    assert not feedback.passed and "plain mean" in feedback.message


def test_weighted_average_checker_rejects_missing_division_by_total_weight():
    feedback = check_weighted_average(
        lambda states, weights: {name: sum(w * s[name] for w, s in zip(weights, states)) for name in states[0]})
    assert not feedback.passed and "total weight" in feedback.message


def test_weighted_average_checker_rejects_division_by_number_of_clients():
    feedback = check_weighted_average(
        lambda states, weights: {name: sum(w * s[name] for w, s in zip(weights, states)) / len(states) for name in states[0]})
    assert not feedback.passed and "total weight" in feedback.message


def test_weighted_average_checker_rejects_a_list_instead_of_a_dict():
    feedback = check_weighted_average(lambda states, weights: [reference_average(states, weights)["w"]])
    assert not feedback.passed and "dict" in feedback.message


# --- the class skew of a partition --------------------------------------------------------------

def reference_skew(client_labels, num_classes):
    counts = np.array([np.bincount(labels, minlength=num_classes) for labels in client_labels], dtype=float)
    pooled = counts.sum(0) / counts.sum()
    return float(np.mean([0.5 * np.abs(c / c.sum() - pooled).sum() for c in counts]))


def test_reference_skew_by_hand():
    # two clients holding only 0s and only 1s: the pooled mix is (1/2, 1/2), each client is 1/2 (|1 - 1/2| + |0 - 1/2|)
    # = 1/2 from it; two clients with the same mix are 0 from it; clients [0, 0, 0, 1] and [1]: pooled (3/5, 2/5),
    # distances 1/2 (|3/4 - 3/5| + |1/4 - 2/5|) = 3/20 and 1/2 (3/5 + 3/5) = 3/5, mean 3/8.
    assert reference_skew([np.array([0, 0]), np.array([1, 1])], 2) == 0.5
    assert reference_skew([np.array([0, 1]), np.array([1, 0])], 2) == 0.0
    assert reference_skew([np.array([0, 0, 0, 1]), np.array([1])], 2) == pytest.approx(3 / 8)


def test_class_skew_checker_accepts_reference_and_reports_unsolved():
    assert check_class_skew(reference_skew).passed
    assert check_class_skew(unsolved).status == "not solved"


def test_class_skew_checker_rejects_comparison_with_the_uniform_mix():
    def against_uniform(client_labels, num_classes):
        return float(np.mean([0.5 * np.abs(np.bincount(l, minlength=num_classes) / len(l) - 1 / num_classes).sum()
                              for l in client_labels]))
    feedback = check_class_skew(against_uniform)
    assert not feedback.passed and "POOLED" in feedback.message


def test_class_skew_checker_rejects_forgotten_half():
    feedback = check_class_skew(lambda labels, c: 2 * reference_skew(labels, c))
    assert not feedback.passed and "HALF" in feedback.message


def test_class_skew_checker_rejects_raw_counts_instead_of_shares():
    def with_counts(client_labels, num_classes):
        counts = np.array([np.bincount(l, minlength=num_classes) for l in client_labels], dtype=float)
        return float(np.mean(0.5 * np.abs(counts - counts.mean(0)).sum(1)))
    feedback = check_class_skew(with_counts)
    assert not feedback.passed and "shares" in feedback.message


def test_class_skew_checker_rejects_a_mean_weighted_by_client_size():
    def size_weighted(client_labels, num_classes):
        counts = np.array([np.bincount(labels, minlength=num_classes) for labels in client_labels], dtype=float)
        distances = 0.5 * np.abs(counts / counts.sum(1, keepdims=True) - counts.sum(0) / counts.sum()).sum(1)
        return float((distances * counts.sum(1)).sum() / counts.sum())
    feedback = check_class_skew(size_weighted)
    assert not feedback.passed and "each client counting once: 1/2" in feedback.message


def test_weighted_average_checker_rejects_an_average_off_in_one_entry_only():
    def off_by_a_little(client_states, weights):  # right on the small cases, wrong on a 4 x 3 weight
        average = reference_average(client_states, weights)
        if "layer.weight" in average:
            average["layer.weight"] = average["layer.weight"].clone()
            average["layer.weight"][2, 1] += 1e-2
        return average
    feedback = check_weighted_average(off_by_a_little)
    assert not feedback.passed and "'layer.weight'" in feedback.message


# --- clipping an update to norm S ---------------------------------------------------------------

def reference_clip(update, clip_norm):
    norm = torch.sqrt(sum((value ** 2).sum() for value in update.values()))
    scale = min(1.0, clip_norm / float(norm))
    return {name: value * scale for name, value in update.items()}


def test_clip_checker_accepts_reference_and_reports_unsolved():
    assert check_clip_update(reference_clip).passed
    assert check_clip_update(unsolved).status == "not solved"


def test_clip_checker_rejects_always_rescaling_to_s():
    feedback = check_clip_update(lambda u, s: {k: v * s / float(torch.sqrt(sum((x ** 2).sum() for x in u.values())))
                                               for k, v in u.items()})
    assert not feedback.passed and "SHRINKS" in feedback.message


def test_clip_checker_rejects_per_tensor_clipping():
    feedback = check_clip_update(lambda u, s: {k: v * min(1.0, s / float(v.norm())) for k, v in u.items()})
    assert not feedback.passed and "on its own" in feedback.message


def test_clip_checker_rejects_coordinate_clamping():
    feedback = check_clip_update(lambda u, s: {k: v.clamp(-s, s) for k, v in u.items()})
    assert not feedback.passed and "direction" in feedback.message


def fedavg_round_by_hand(weights, clients, steps, lr):
    """A FedAvg round written here: copies of the global weights, plain gradient steps, weighted average."""
    finals = []
    for client in clients:
        w = np.array(weights, dtype=float)
        for _ in range(steps):
            w = w - lr * np.asarray(client.curvature) * (w - np.asarray(client.optimum))
        finals.append(w)
    sizes = [client.examples for client in clients]
    return sum(n * w for n, w in zip(sizes, finals)) / sum(sizes)


def test_fedavg_round_checker_accepts_a_round_written_by_hand_and_reports_the_drift():
    feedback = check_fedavg_round(fedavg_round_by_hand, DriftSettings())
    # by hand (tests/experiments/test_experiments_lesson3.py): 20 local steps settle at distance 1.25 from (-14/9, -7/9)
    assert feedback.passed and "0.00 from the federation's optimum with 1 local step" in feedback.message
    assert "1.25 from it with 20" in feedback.message
    assert check_fedavg_round(unsolved).status == "not solved"


def test_fedavg_round_checker_names_the_usual_mistakes():
    def plain_mean(weights, clients, steps, lr):
        finals = [fedavg_round_by_hand(weights, [client], steps, lr) for client in clients]
        return sum(finals) / len(finals)

    def in_place(weights, clients, steps, lr):
        finals = []
        for client in clients:
            for _ in range(steps):
                weights -= lr * client.gradient(weights)
            finals.append(weights.copy())
        return sum(c.examples * w for c, w in zip(clients, finals)) / sum(c.examples for c in clients)

    def one_step(weights, clients, steps, lr):
        return fedavg_round_by_hand(weights, clients, 1, lr)

    assert "plain mean" in check_fedavg_round(plain_mean).message
    assert "changed the global weights" in check_fedavg_round(in_place).message
    assert "only one step" in check_fedavg_round(one_step).message


def test_settings_that_are_not_drift_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^settings must be None or a DriftSettings"):
        check_fedavg_round(lambda *args: np.zeros(1), {"lr": 0.1})
