"""How fast can one CPU simulate FedAvg? Three engines side by side on one task (lesson 3).

    python -m fedkd_lessons.course.bench                 # every case and engine, a few minutes
    python -m fedkd_lessons.course.bench --engines loop batched --cases digits-100

The task: FedAvg (McMahan et al. 2017) with an MLP(64) on every client, every client training one
epoch (SGD, lr 0.05, momentum 0.9, batch 32) every round, the server averaging by sample counts.
Cases: the digits split over 10 and 100 clients, and 1,000 clients on a synthetic set of MNIST's
shape (60,000 random 28 x 28 images, 60 per client). Engines:

- ``loop``: the clients one by one, each through :func:`fedkd_lessons.engine.training.train` (what the
  course did before the batched engine);
- ``batched``: :func:`fedkd_lessons.fedavg.run_fedavg`, all clients of a round at once in
  :mod:`fedkd_lessons.engine.batched`;
- ``flower``: Flower's own simulation engine (``flwr.simulation.run_simulation`` on Ray, with
  Flower's ``FedAvg`` strategy and a ``ClientApp`` that trains with the course's ``train``), what a
  user would pick instead. Ray runs one client per core, so it uses both cores of a 2-core machine
  where the other two engines use one thread.

Each case and engine runs in a fresh Python process, so each peak memory (resident memory of the
process and all its children, sampled every 50 ms) is its own. The bench also measures this
machine's matrix-multiply peak (one thread, float32) and reports the batched engine's achieved
rate against it. The numbers depend on the machine: it is a tool, not a test.
"""

import argparse
import copy
import dataclasses
import functools
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import torch

from fedkd_lessons.data.partition import client_datasets, iid_partition
from fedkd_lessons.data.digits import load_digits_split
from fedkd_lessons.fedavg import FedAvgSettings, fedavg, run_fedavg
from fedkd_lessons.engine.models import make_mlp
from fedkd_lessons.engine.seeding import seed_everything
from fedkd_lessons.engine.training import train
from fedkd_lessons.engine.validation import Each, Instance, Integer, OneOf, Real, checked_arguments

CASES = {
    "digits-10": dict(dataset="digits 8x8", clients=10, image_size=8, rounds=40, flower_rounds=3),
    "digits-100": dict(dataset="digits 8x8", clients=100, image_size=8, rounds=40, flower_rounds=2),
    "mnist-shape-1000": dict(dataset="synthetic 60,000 x 28 x 28", clients=1000, image_size=28, rounds=3,
                             flower_rounds=1),
}
ENGINES = ("loop", "batched", "flower")
# one task for every engine: every client trains one epoch of SGD per round (the rounds are set per case)
TRAINING = FedAvgSettings(rounds=1, client_fraction=1.0, local_epochs=1, lr=0.05, batch_size=32, optimizer="sgd",
                          momentum=0.9)
HIDDEN, CLASSES = 64, 10
CASE = OneOf(*CASES)
CLIENTS = Each(Instance(tuple))  # (images, labels) per client, as client_datasets gives them


@checked_arguments(name=CASE)
@functools.lru_cache(maxsize=1)
def case_clients(name: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The case's clients' ``(images, labels)``, the same in every process (seeded)."""
    case = CASES[name]
    if case["dataset"].startswith("digits"):
        split = load_digits_split()
        images, labels = split.train_images, split.train_labels
    else:
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(60_000, 1, 28, 28, generator=generator)
        labels = torch.randint(0, CLASSES, (60_000,), generator=generator)
    return client_datasets(images, labels, iid_partition(labels.numpy(), case["clients"], seed=0))


@checked_arguments(name=CASE)
def make_model(name: str) -> torch.nn.Module:
    return make_mlp((HIDDEN,), num_classes=CLASSES, image_size=CASES[name]["image_size"])


@checked_arguments(name=CASE)
def flops_per_round(name: str) -> float:
    """Multiply-adds x 2 of one round's training: per example, the forward pass ``2 (D H + H C)``,
    the weight gradients as much again, and the gradient into the hidden layer ``2 H C`` (none is
    needed into the images). Biases and activations are left out."""
    size = CASES[name]["image_size"] ** 2
    per_example = 4 * (size * HIDDEN + HIDDEN * CLASSES) + 2 * HIDDEN * CLASSES
    return float(sum(len(labels) for _, labels in case_clients(name)) * TRAINING.local_epochs * per_example)


@checked_arguments(size=Integer(1), repeats=Integer(1))
def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The best float32 matrix-multiply rate of one thread on this machine, in GFLOP/s."""
    torch.set_num_threads(1)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


class PeakMemory:
    """Samples the resident memory of this process and all its children (Ray's workers too)."""

    def __init__(self, every: float = 0.05):
        self.every, self.peak, self._stop = every, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@checked_arguments(model=Instance(torch.nn.Module), clients=CLIENTS, rounds=Integer(0), seed=Integer(0))
def loop_fedavg(model: torch.nn.Module, clients, rounds: int, seed: int = 0) -> torch.nn.Module:
    """FedAvg with every client trained one by one through :func:`fedkd_lessons.engine.training.train`
    (one generator, seeded ``seed``, shuffling client after client); returns the global model. The
    reference the batched engine must equal."""
    global_model = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    sizes = [len(labels) for _, labels in clients]
    for _ in range(rounds):
        torch.randperm(len(clients), generator=generator)  # run_fedavg's draw of the round's clients (all here)
        states = []
        for images, labels in clients:
            local = copy.deepcopy(global_model)
            train(local, images, labels, epochs=TRAINING.local_epochs, lr=TRAINING.lr,
                  batch_size=TRAINING.batch_size, optimizer=TRAINING.optimizer, momentum=TRAINING.momentum,
                  generator=generator, progress=False)
            states.append(local.state_dict())
        global_model.load_state_dict(fedavg(states, sizes))
    return global_model


@checked_arguments(model=Instance(torch.nn.Module), clients=CLIENTS, rounds=Integer(0), seed=Integer(0))
def batched_fedavg(model: torch.nn.Module, clients, rounds: int, seed: int = 0) -> torch.nn.Module:
    """The same FedAvg through :func:`fedkd_lessons.fedavg.run_fedavg` (the batched engine)."""
    return run_fedavg(model, clients, dataclasses.replace(TRAINING, rounds=rounds), seed=seed, progress=False).model


@checked_arguments(name=CASE, rounds=Integer(1))
def flower_fedavg(name: str, rounds: int) -> float:
    """FedAvg on Flower's simulation engine; returns the seconds of the rounds alone (Ray's start-up
    and the first round's process warm-up are timed separately and not counted)."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    client_app, server_app = ClientApp(), ServerApp()
    marks: list[float] = []

    @client_app.train()
    def local_training(message: Message, context: Context) -> Message:
        torch.set_num_threads(1)
        images, labels = case_clients(name)[int(context.node_config["partition-id"])]
        model = make_model(name)
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        train(model, images, labels, epochs=TRAINING.local_epochs, lr=TRAINING.lr,
              batch_size=TRAINING.batch_size, optimizer=TRAINING.optimizer, momentum=TRAINING.momentum,
              progress=False)
        content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                              "metrics": MetricRecord({"num-examples": len(labels)})})
        return Message(content=content, reply_to=message)

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=CASES[name]["clients"],
                          min_available_nodes=CASES[name]["clients"])
        torch.manual_seed(0)
        strategy.start(grid=grid, initial_arrays=ArrayRecord(make_model(name).state_dict()), num_rounds=rounds + 1,
                       train_config=ConfigRecord({}),
                       evaluate_fn=lambda server_round, arrays: marks.append(time.perf_counter()) or None)

    os.environ.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=CASES[name]["clients"],
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}})
    # marks: before round 1, then after each round; round 1 warms up Ray's workers and is not counted
    return marks[-1] - marks[1]


@checked_arguments(name=CASE, engine=OneOf(*ENGINES))
def run_case(name: str, engine: str) -> dict:
    """One case on one engine in this process; returns its row."""
    seed_everything(0)
    case = CASES[name]
    rounds = case["flower_rounds"] if engine == "flower" else case["rounds"]
    case_clients(name)  # the data are loaded before the clock starts
    with PeakMemory() as memory:
        start = time.perf_counter()
        if engine == "flower":
            seconds = flower_fedavg(name, rounds)
        else:
            torch.manual_seed(0)
            {"loop": loop_fedavg, "batched": batched_fedavg}[engine](make_model(name), case_clients(name), rounds)
            seconds = time.perf_counter() - start
    row = dict(case=name, engine=engine, dataset=case["dataset"], clients=case["clients"], rounds=rounds,
               rounds_per_second=rounds / seconds, peak_mb=memory.peak / 2**20)
    if engine == "batched":
        row["gflop_per_round"] = flops_per_round(name) / 1e9
        row["achieved_gflops"] = row["gflop_per_round"] * row["rounds_per_second"]
    return row


@checked_arguments(rows=Each(Instance(dict)), peak_gflops=Real(0, closed="neither"))
def format_table(rows: list[dict], peak_gflops: float) -> str:
    """The rows as a fixed-width text table, with speed-ups over the loop and the batched engine's
    rate against the measured matrix-multiply peak."""
    loop = {row["case"]: row["rounds_per_second"] for row in rows if row["engine"] == "loop"}
    header = (f"{'case':<18} {'engine':<8} {'clients':>7} {'rounds/s':>9} {'x loop':>7} {'peak RSS':>9} "
              f"{'GFLOP/s':>8} {'of peak':>8} {'x FLOP time':>11}")
    lines = [header, "-" * len(header)]
    for row in rows:
        speedup = f"{row['rounds_per_second'] / loop[row['case']]:.1f}" if row["case"] in loop else "-"
        rate = share = over = "-"
        if "achieved_gflops" in row:
            rate, share = f"{row['achieved_gflops']:.1f}", f"{row['achieved_gflops'] / peak_gflops:.0%}"
            over = f"{peak_gflops / row['achieved_gflops']:.1f}"
        lines.append(f"{row['case']:<18} {row['engine']:<8} {row['clients']:>7} {row['rounds_per_second']:>9.2f} "
                     f"{speedup:>7} {row['peak_mb']:>7.0f}MB {rate:>8} {share:>8} {over:>11}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--one", nargs=2, metavar=("CASE", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(*args.one)))
        return
    peak = matmul_peak_gflops()
    rows = []
    for name in args.cases:
        for engine in args.engines:
            done = subprocess.run([sys.executable, "-m", "fedkd_lessons.course.bench", "--one", name, engine],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"the bench case {name} on {engine} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"  done: {name} on {engine}", file=sys.stderr)
    print(f"FedAvg, MLP({HIDDEN}), every client trains one epoch (SGD, batch 32) every round.")
    print(f"Matrix-multiply peak of one thread on this machine: {peak:.1f} GFLOP/s (float32, 2048 x 2048).")
    print("'x FLOP time': the batched engine's round time over the time its FLOPs need at that peak.")
    print(format_table(rows, peak))


if __name__ == "__main__":
    main()
