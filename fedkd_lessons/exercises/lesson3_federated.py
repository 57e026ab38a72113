"""Checkers for lesson 3's exercises: FedAvg's weighted average, the class skew of a partition,
clipping an update to norm S (the first step of DP-style FedAvg), and a whole FedAvg round on the
client-drift toy, with the drift it produces."""

import math

import numpy as np
import torch

from fedkd_lessons.experiments.lesson3_client_drift import (DriftSettings, QuadraticClient, fedavg_fixed_point,
                                                            global_optimum)
from fedkd_lessons.engine.validation import Callable, Instance, Optional, checked_arguments
from fedkd_lessons.exercises.feedback import Wrong, as_tensor_answer, assert_close_answer, checker


def _as_state_answer(value, keys, what: str) -> dict:
    if not isinstance(value, dict):
        raise Wrong(f"{what} should return a dict of tensors (a state dict), got {type(value).__name__}.")
    if set(value) != set(keys):
        raise Wrong(f"{what} returned the keys {sorted(value)}; keep exactly the keys of the inputs, {sorted(keys)}.")
    return {name: as_tensor_answer(value[name], f"{what}[{name!r}]") for name in keys}


@checked_arguments(average_fn=Callable())
@checker("Your weighted average is FedAvg: each client counts in proportion to its examples.")
def check_weighted_average(average_fn) -> None:
    """Lesson 3: ``average_fn(client_states: list[dict[str, Tensor]], weights: list[float]) -> dict``
    with ``w = sum_k n_k w_k / sum_k n_k`` for every entry."""
    states = [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([5.0, -2.0])}]
    got = _as_state_answer(average_fn(states, [1, 3]), ["w"], "average_fn(states, [1, 3])")
    expected = torch.tensor([4.0, -1.0])
    if torch.allclose(got["w"], torch.tensor([3.0, 0.0])):
        raise Wrong("with weights [1, 3] you returned the plain mean [3, 0]; the client with 3x the examples must "
                    "count 3x as much: multiply each state by its weight.")
    if torch.allclose(got["w"], torch.tensor([16.0, -4.0])) or torch.allclose(got["w"], torch.tensor([8.0, -2.0])):
        raise Wrong(f"with weights [1, 3] you returned {got['w'].tolist()}, expected [4, -1]: divide the weighted sum "
                    "by the total weight sum_k n_k (here 4).")
    assert_close_answer(got["w"], expected, "two clients, weights [1, 3]",
                        "(1 * [1, 2] + 3 * [5, -2]) / (1 + 3) = [4, -1].")
    generator = torch.Generator().manual_seed(3)
    states = [{"layer.weight": torch.randn(4, 3, generator=generator), "layer.bias": torch.randn(4, generator=generator)}
              for _ in range(5)]
    for weights, case in (([10, 40, 5, 25, 20], "five clients of different sizes"),
                          ([0, 7, 0, 0, 0], "one client with all the weight"),
                          ([0.5, 0.25, 0.125, 0.0625, 0.0625], "weights that are shares summing to 1")):
        got = _as_state_answer(average_fn(states, weights), states[0].keys(), f"average_fn(states, {weights})")
        for name in states[0]:
            expected = sum(n * state[name] for n, state in zip(weights, states)) / sum(weights)
            assert_close_answer(got[name], expected, f"{case}, entry {name!r}",
                                "Average every entry of the state dict the same way, weights normalised by their sum.")


@checked_arguments(skew_fn=Callable())
@checker("Your class skew measures how far each client's class mix is from the pooled one.")
def check_class_skew(skew_fn) -> None:
    """Lesson 3: ``skew_fn(client_labels: list of label arrays, num_classes) -> float``: the mean
    over clients of the total-variation distance ``1/2 sum_c |p_k(c) - p(c)|``."""
    def ask(client_labels, num_classes, case):
        value = skew_fn([np.asarray(labels) for labels in client_labels], num_classes)
        if isinstance(value, (torch.Tensor, np.ndarray)):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise Wrong(f"{case}: return one finite number, got {value!r}.")
        return float(value)

    same = ask([[0, 1, 2], [2, 1, 0], [0, 1, 2, 0, 1, 2]], 3, "three clients with identical mixes")
    if abs(same) > 1e-9:
        raise Wrong(f"clients whose class mix equals the pooled mix should give 0, got {same:.4f}: compare class "
                    "shares (counts / client size), not raw counts.")
    single = ask([[c] * 5 for c in range(10)], 10, "ten clients of one class each")
    if math.isclose(single, 1.8, rel_tol=1e-6):
        raise Wrong("ten one-class clients give 1.8 but should give 0.9: total variation is HALF the sum of |p_k - p|.")
    if not math.isclose(single, 0.9, rel_tol=1e-6):
        raise Wrong(f"ten clients holding one class each should give 0.9 (= 1/2 (0.9 + 9 x 0.1)), got {single:.4f}.")
    unbalanced = ask([[0, 0, 0, 1], [0, 0, 0, 0]], 2, "pooled mix 7/8 class 0, 1/8 class 1")
    if math.isclose(unbalanced, 0.375, abs_tol=1e-9):
        raise Wrong("clients [0,0,0,1] and [0,0,0,0] gave 0.375, the distance from the UNIFORM mix; compare each client "
                    "with the POOLED mix of all clients (here 7/8 class 0), which gives 0.125.")
    if not math.isclose(unbalanced, 0.125, abs_tol=1e-9):
        raise Wrong(f"clients [0,0,0,1] and [0,0,0,0] pool to 7/8 class 0, so each is 1/8 away; expected 0.125, got "
                    f"{unbalanced:.4f}.")
    # By hand: pooled counts (3, 1, 2) of 6; client [0, 0, 0, 1] has shares (3/4, 1/4, 0), distance
    # 1/2 (1/4 + 1/12 + 1/3) = 1/3; client [2, 2] has (0, 0, 1), distance 1/2 (1/2 + 1/6 + 2/3) = 2/3; mean 1/2.
    # A mean weighted by client size would give (4 * 1/3 + 2 * 2/3) / 6 = 4/9.
    sizes = ask([[0, 0, 0, 1], [2, 2]], 3, "clients [0, 0, 0, 1] and [2, 2]")
    if math.isclose(sizes, 4 / 9, rel_tol=1e-6):
        raise Wrong("clients [0, 0, 0, 1] and [2, 2] gave 4/9, their distances 1/3 and 2/3 weighted by client size; "
                    "average the distances over clients, each client counting once: 1/2.")
    if not math.isclose(sizes, 0.5, rel_tol=1e-6):
        raise Wrong(f"clients [0, 0, 0, 1] and [2, 2] pool to shares (1/2, 1/6, 1/3), so their distances are 1/3 and "
                    f"2/3 and the skew is their mean, 1/2; got {sizes:.4f}.")


@checked_arguments(clip_fn=Callable())
@checker("Your clip keeps small updates as they are and shrinks large ones to norm S, direction kept.")
def check_clip_update(clip_fn) -> None:
    """Lesson 3: ``clip_fn(update: dict[str, Tensor], clip_norm) -> dict``: the whole update times
    ``min(1, S / ||update||)``, the norm taken over all entries together."""
    small = {"w": torch.tensor([0.3, 0.4])}
    got = _as_state_answer(clip_fn(small, 1.0), ["w"], "clip_fn(update of norm 0.5, 1.0)")
    if torch.allclose(got["w"], torch.tensor([0.6, 0.8])):
        raise Wrong("an update of norm 0.5 with S = 1 was stretched to norm 1; clipping only ever SHRINKS: "
                    "scale by min(1, S / norm).")
    assert_close_answer(got["w"], small["w"], "an update already inside the ball (norm 0.5, S = 1)",
                        "Leave updates with norm <= S unchanged.")
    large = {"w": torch.tensor([3.0, 4.0])}
    got = _as_state_answer(clip_fn(large, 1.0), ["w"], "clip_fn(update of norm 5, 1.0)")
    if torch.allclose(got["w"], torch.tensor([1.0, 1.0])):
        raise Wrong("each coordinate was clamped to [-S, S]; that changes the update's direction. Scale the "
                    "whole update by S / norm instead.")
    assert_close_answer(got["w"], torch.tensor([0.6, 0.8]), "an update of norm 5 with S = 1",
                        "[3, 4] has norm 5, so it becomes [3, 4] / 5 = [0.6, 0.8].")
    # Two tensors of norm 3 and 4: the WHOLE update has norm 5, so both shrink by 1/5.
    split = {"a.weight": torch.tensor([[3.0, 0.0]]), "a.bias": torch.tensor([0.0, 4.0])}
    got = _as_state_answer(clip_fn(split, 2.0), split.keys(), "clip_fn(two-tensor update of norm 5, 2.0)")
    if torch.allclose(got["a.bias"], torch.tensor([0.0, 2.0])):
        raise Wrong("each tensor was clipped on its own; the norm S bounds the WHOLE update: "
                    "||Delta|| = sqrt(sum over every entry of every tensor of the squares).")
    for name, value in split.items():
        assert_close_answer(got[name], value * 2.0 / 5.0, f"a two-tensor update of total norm 5, S = 2, entry {name!r}",
                            "Take the norm over all entries together, then scale every tensor by S / norm.")


def _round_answer(round_fn, weights, clients, steps, lr, case: str) -> np.ndarray:
    given = np.array(weights, dtype=float)
    value = round_fn(given, list(clients), steps, lr)
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    value = np.asarray(value, dtype=float)
    if value.shape != given.shape:
        raise Wrong(f"{case}: return the new global weights, shape {given.shape}, got shape {value.shape}.")
    if not np.array_equal(given, np.asarray(weights, dtype=float)):
        raise Wrong(f"{case}: your round changed the global weights it was given. Each client must start from a "
                    "copy (w = global_weights.copy()), or the second client starts where the first one stopped.")
    if not np.isfinite(value).all():
        raise Wrong(f"{case}: the new weights contain NaN or inf.")
    return value


@checked_arguments(round_fn=Callable(), settings=Optional(Instance(DriftSettings)))
@checker("Your round is FedAvg: every client takes its local steps from the same global weights, and the server "
         "averages the results, each client weighted by its examples.")
def check_fedavg_round(round_fn, settings: DriftSettings | None = None):
    """Lesson 3: ``round_fn(global_weights (D,), clients: list[QuadraticClient], local_steps, lr) -> (D,)``:
    ``local_steps`` gradient steps ``w <- w - lr * client.gradient(w)`` on each client from the global
    weights, then ``sum_k n_k w_k / sum_k n_k`` with ``n_k = client.examples``.

    ``settings`` (the lesson's :class:`DriftSettings`), the experiment: the learner's round repeated
    until it settles, with the fewest and the most local steps, against the closed forms."""
    # By hand: clients with optima 0 and 4, curvature 1, 1 and 3 examples; start at 2, lr 0.5.
    # One step: 2 -> 1 and 2 -> 3, average (1 * 1 + 3 * 3) / 4 = 2.5.
    # Two steps: 2 -> 1 -> 0.5 and 2 -> 3 -> 3.5, average (0.5 + 3 * 3.5) / 4 = 2.75.
    hand = [QuadraticClient((0.0,), (1.0,), 1), QuadraticClient((4.0,), (1.0,), 3)]
    for steps, expected in ((1, 2.5), (2, 2.75)):
        got = float(_round_answer(round_fn, [2.0], hand, steps, 0.5, f"two 1-d clients, {steps} local step(s)")[0])
        if math.isclose(got, expected, abs_tol=1e-9):
            continue
        hints = {
            (1, 2.0): "you took the plain mean; weight each client by its examples, n_k / sum n_k.",
            (2, 2.0): "you took the plain mean; weight each client by its examples, n_k / sum n_k.",
            (2, 3.125): "the second client started where the first one stopped: every client starts from the global weights.",
            (2, 2.5): "each client took only one step; take local_steps gradient steps per client.",
            (1, 4.0): "the gradient step goes downhill: w - lr * gradient, not w + lr * gradient.",
        }
        hint = next((h for (s, value), h in hints.items() if s == steps and math.isclose(got, value, abs_tol=1e-9)),
                    f"by hand the clients reach {'1 and 3' if steps == 1 else '0.5 and 3.5'}, weighted 1 : 3.")
        raise Wrong(f"two 1-d clients (optima 0 and 4, 1 and 3 examples), start 2, lr 0.5, {steps} local step(s): "
                    f"expected {expected}, got {got:.4g}: {hint}")
    if settings is None:
        return None
    best = global_optimum(settings.clients)
    settled = {}
    for steps in (min(settings.local_steps), max(settings.local_steps)):
        weights = np.asarray(settings.start, dtype=float)
        for _ in range(150):  # the slowest case, one local step, shrinks the distance by 0.775 a round
            weights = _round_answer(round_fn, weights, settings.clients, steps, settings.lr,
                                    f"the lesson's clients, {steps} local step(s)")
        expected = fedavg_fixed_point(settings.clients, steps, settings.lr)
        if not np.allclose(weights, expected, atol=1e-6):
            raise Wrong(f"on the lesson's two clients with {steps} local step(s) a round, repeating your round should "
                        f"settle at {np.round(expected, 3).tolist()}, but it reached {np.round(weights, 3).tolist()}.")
        settled[steps] = float(np.linalg.norm(weights - best))
    (fewest, near), (most, far) = sorted(settled.items())
    return (f"Repeated on the lesson's two clients, it settles {near:.2f} from the federation's optimum with {fewest} "
            f"local step a round and {far:.2f} from it with {most}: client drift, made by your round.")
