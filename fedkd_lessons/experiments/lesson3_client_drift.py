"""Lesson 3's picture of client drift, on a toy small enough to solve by hand: clients whose losses
are quadratics with different optima and curvatures, FedAvg's local gradient steps, and where
FedAvg settles compared with the optimum of the federation's loss.

Client ``k`` holds ``n_k`` examples and the loss ``f_k(w) = 1/2 sum_d a_kd (w_d - c_kd)^2``; the
federation's loss is ``F(w) = sum_k (n_k / n) f_k(w)``, whose optimum is
``w*_d = sum_k n_k a_kd c_kd / sum_k n_k a_kd``. One FedAvg round (McMahan et al. 2017,
Algorithm 1, full participation) takes ``E`` gradient steps of size ``lr`` on each client from the
global weights, then the weighted average. A local step maps ``w_d - c_kd`` to
``(1 - lr a_kd)(w_d - c_kd)``, so after ``E`` steps ``w_kd = c_kd + m_kd (w_d - c_kd)`` with
``m_kd = (1 - lr a_kd)^E``, and FedAvg's fixed point solves ``w = sum_k (n_k / n) w_k``:
``w_d = sum_k n_k (1 - m_kd) c_kd / sum_k n_k (1 - m_kd)``. With ``E = 1`` that is ``w*``; as ``E``
grows each client runs to its own optimum (``m -> 0``) and FedAvg settles at the plain weighted
mean of the clients' optima instead: client drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedkd_lessons.engine.validation import (POSITIVE, Constraint, Each, Instance, Integer, Real, check_fields,
                                             checked_arguments)


class Point(Constraint):
    """A point of the weight space: a list, tuple or array of finite numbers with one dimension and
    at least one entry; ``check`` returns it as a float array (what every function here computes on)."""

    description = "a list, tuple or 1-d array of at least 1 finite number"

    def check(self, value, name: str):
        try:
            point = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            point = None
        if point is None or point.ndim != 1 or len(point) == 0 or not np.isfinite(point).all():
            return super().check(value, name)  # raises, naming the argument
        return point

    def accepts(self, value) -> bool:
        try:
            point = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            return False
        return point.ndim == 1 and len(point) > 0 and bool(np.isfinite(point).all())

    def bad_examples(self) -> list:
        return ["not a point", [], [[0.0, 1.0]], [0.0, float("nan")]]


POINT = Point()


@dataclass(frozen=True)
class QuadraticClient:
    """A client with loss ``1/2 sum_d curvature_d (w_d - optimum_d)^2`` and ``examples`` examples."""

    optimum: tuple[float, ...]
    curvature: tuple[float, ...]
    examples: int

    def __post_init__(self):
        check_fields(self, optimum=Each(Real()), curvature=Each(POSITIVE), examples=Integer(1))
        if len(self.optimum) != len(self.curvature):
            raise ValueError(f"optimum and curvature must have the same length, got {self.optimum!r} "
                             f"and {self.curvature!r}")

    def loss(self, weights) -> np.ndarray:
        """``f_k`` at ``weights`` of shape ``(..., D)``."""
        gap = np.asarray(weights, dtype=float) - np.asarray(self.optimum)
        return 0.5 * (np.asarray(self.curvature) * gap**2).sum(axis=-1)

    def gradient(self, weights) -> np.ndarray:
        """``grad f_k(w) = curvature * (w - optimum)``, shape ``(D,)``."""
        return np.asarray(self.curvature) * (np.asarray(weights, dtype=float) - np.asarray(self.optimum))


CLIENTS = Each(Instance(QuadraticClient))


def _check_dimension(clients, **points) -> None:
    """Every client's optimum and every one of ``points`` (name -> (D,) array) has the first client's length D."""
    dimension = len(clients[0].optimum)
    for k, client in enumerate(clients):
        if len(client.optimum) != dimension:
            raise ValueError(f"clients must all have weights of one dimension, got {dimension} for clients[0] and "
                             f"{len(client.optimum)} for clients[{k}]")
    for name, point in points.items():
        if len(point) != dimension:
            raise ValueError(f"{name} must have the clients' dimension {dimension}, got {len(point)}")


@dataclass(frozen=True)
class DriftSettings:
    """The toy of lesson 3's client-drift picture: two equally large clients whose optima and
    curvatures differ (each is steep where the other is flat), plain gradient steps of size ``lr``."""

    clients: tuple[QuadraticClient, ...] = (QuadraticClient((-2.0, 1.0), (4.0, 0.5), 50),
                                            QuadraticClient((2.0, -1.0), (0.5, 4.0), 50))
    start: tuple[float, ...] = (0.0, 2.5)
    lr: float = 0.1
    local_steps: tuple[int, ...] = (1, 5, 20)  # E, the local steps per round, compared in the picture
    rounds: int = 30

    def __post_init__(self):
        check_fields(self, clients=Each(Instance(QuadraticClient), min_length=2), start=Each(Real()), lr=POSITIVE,
                     local_steps=Each(Integer(1)), rounds=Integer(1))
        if any(len(client.optimum) != len(self.start) for client in self.clients):
            raise ValueError("every client's optimum must have the length of start")
        if self.lr * max(max(client.curvature) for client in self.clients) >= 2:
            raise ValueError(f"lr times the largest curvature must be below 2 for gradient steps to converge, got lr = {self.lr!r}")


@checked_arguments(client=Instance(QuadraticClient), start=POINT, steps=Integer(0), lr=POSITIVE)
def local_steps(client: QuadraticClient, start, steps: int, lr: float) -> np.ndarray:
    """The path of ``steps`` gradient steps on ``client``'s loss from ``start``: ``(steps + 1, D)``."""
    _check_dimension([client], start=start)
    path = [np.asarray(start, dtype=float)]
    for _ in range(steps):
        path.append(path[-1] - lr * client.gradient(path[-1]))
    return np.stack(path)


@checked_arguments(points=Each(POINT), clients=CLIENTS)
def weighted_average(points, clients) -> np.ndarray:
    """FedAvg's server step: ``sum_k n_k w_k / sum_k n_k``."""
    if len(points) != len(clients):
        raise ValueError(f"points must hold one point per client ({len(clients)}), got {len(points)}")
    _check_dimension(clients, **{f"points[{k}]": point for k, point in enumerate(points)})
    sizes = np.array([client.examples for client in clients], dtype=float)
    return (sizes[:, None] * np.stack(points)).sum(axis=0) / sizes.sum()


@checked_arguments(weights=POINT, clients=CLIENTS, steps=Integer(1), lr=POSITIVE)
def fedavg_round(weights, clients, steps: int, lr: float) -> np.ndarray:
    """One FedAvg round with every client: ``steps`` local gradient steps each, then the weighted average."""
    _check_dimension(clients, weights=weights)
    return weighted_average([local_steps(client, weights, steps, lr)[-1] for client in clients], clients)


@checked_arguments(settings=Instance(DriftSettings), steps=Integer(1))
def fedavg_path(settings: DriftSettings, steps: int) -> np.ndarray:
    """The global weights before round 1 and after each of ``settings.rounds`` rounds: ``(rounds + 1, D)``."""
    path = [np.asarray(settings.start, dtype=float)]
    for _ in range(settings.rounds):
        path.append(fedavg_round(path[-1], settings.clients, steps, settings.lr))
    return np.stack(path)


@checked_arguments(clients=CLIENTS)
def global_optimum(clients) -> np.ndarray:
    """The minimiser of the federation's loss ``sum_k n_k f_k``: ``sum_k n_k a_k c_k / sum_k n_k a_k`` per coordinate."""
    _check_dimension(clients)
    sizes = np.array([client.examples for client in clients], dtype=float)[:, None]
    curvature = np.array([client.curvature for client in clients])
    optimum = np.array([client.optimum for client in clients])
    return (sizes * curvature * optimum).sum(axis=0) / (sizes * curvature).sum(axis=0)


@checked_arguments(clients=CLIENTS, steps=Integer(1), lr=POSITIVE)
def fedavg_fixed_point(clients, steps: int, lr: float) -> np.ndarray:
    """Where FedAvg with ``steps`` local steps settles (module docstring):
    ``sum_k n_k (1 - m_k) c_k / sum_k n_k (1 - m_k)`` with ``m_k = (1 - lr a_k)^steps``."""
    _check_dimension(clients)
    sizes = np.array([client.examples for client in clients], dtype=float)[:, None]
    pull = 1 - (1 - lr * np.array([client.curvature for client in clients])) ** steps
    optimum = np.array([client.optimum for client in clients])
    return (sizes * pull * optimum).sum(axis=0) / (sizes * pull).sum(axis=0)
