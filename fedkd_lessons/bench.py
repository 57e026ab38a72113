"""How fast is our simulated FedAvg, and how much memory does it take? (lesson 3)

    python -m fedkd_lessons.bench

Runs :func:`fedkd_lessons.federated.run_fedavg` (every client trains every round: the heaviest
aggregation) with 10 and 100 clients on the digits and 1,000 clients on a synthetic set of
MNIST's shape (60,000 random 28 x 28 images, 60 per client), and prints one table row per case:
rounds per second, the time of one ``fedavg`` call over all the clients' states, and the peak
resident memory. Each case runs in its own fresh Python process, so each peak is its own.
Not a test: the numbers depend on the machine. It takes about a minute on one CPU thread.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from .data import client_datasets, iid_partition, load_digits_split
from .federated import fedavg, run_fedavg
from .models import make_mlp
from .seeding import seed_everything

CASES = {
    "digits-10": dict(dataset="digits 8x8", clients=10, rounds=20),
    "digits-100": dict(dataset="digits 8x8", clients=100, rounds=10),
    "mnist-shape-1000": dict(dataset="synthetic 60,000 x 28 x 28", clients=1000, rounds=3),
}


def _peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kilobytes


def run_case(name: str) -> dict:
    """One benchmark case in this process; returns its row as a dict."""
    case = CASES[name]
    generator = seed_everything(0)
    if case["dataset"].startswith("digits"):
        split = load_digits_split()
        images, labels, image_size = split.train_images, split.train_labels, 8
    else:
        images = torch.rand(60_000, 1, 28, 28, generator=generator)
        labels = torch.randint(0, 10, (60_000,), generator=generator)
        image_size = 28
    clients = client_datasets(images, labels, iid_partition(labels.numpy(), case["clients"], seed=0))
    data_megabytes = _peak_megabytes()
    start = time.perf_counter()
    model, _ = run_fedavg(lambda: make_mlp((64,), image_size=image_size), clients, rounds=case["rounds"],
                          client_fraction=1.0, local_epochs=1, lr=0.05, batch_size=32, progress=False)
    seconds = time.perf_counter() - start
    states = [model.state_dict()] * case["clients"]
    start = time.perf_counter()
    fedavg(states, [len(y) for _, y in clients])
    aggregation = time.perf_counter() - start
    return dict(case=name, dataset=case["dataset"], clients=case["clients"], rounds=case["rounds"],
                rounds_per_second=case["rounds"] / seconds, aggregation_ms=1000 * aggregation,
                data_mb=data_megabytes, peak_mb=_peak_megabytes())


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    header = f"{'dataset':<28} {'clients':>7} {'rounds':>6} {'rounds/s':>9} {'fedavg ms':>9} {'RSS before':>10} {'peak RSS':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row['dataset']:<28} {row['clients']:>7} {row['rounds']:>6} {row['rounds_per_second']:>9.2f} "
                     f"{row['aggregation_ms']:>9.1f} {row['data_mb']:>8.0f}MB {row['peak_mb']:>7.0f}MB")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case in this process and print it as JSON")
    args = parser.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    rows = []
    for name in CASES:
        done = subprocess.run([sys.executable, "-m", "fedkd_lessons.bench", "--case", name],
                              check=True, capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("FedAvg simulated in one process, one CPU thread; MLP(64), every client trains one epoch")
    print("(batch 32) every round; 'fedavg ms' = one aggregation over all clients' states;")
    print("'RSS before' = resident memory with the data loaded, 'peak RSS' = peak of the whole case.")
    print(format_table(rows))


if __name__ == "__main__":
    main()
