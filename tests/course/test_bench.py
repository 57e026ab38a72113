"""The bench: its FLOP count by hand, its table, and its loop and batched engines computing one FedAvg."""

import pytest
import torch

from fedkd_lessons.course import bench
from fedkd_lessons.data.partition import client_datasets, iid_partition
from fedkd_lessons.engine.models import make_mlp


def test_flops_per_round_counted_by_hand():
    examples = sum(len(labels) for _, labels in bench.case_clients("digits-10"))
    forward = 2 * (64 * 64 + 64 * 10)  # two matrix products per example
    backward = forward + 2 * 64 * 10  # weight gradients, and the gradient into the hidden layer
    assert bench.flops_per_round("digits-10") == examples * (forward + backward)
    assert sum(len(y) for _, y in bench.case_clients("digits-100")) == examples  # the same digits, 100 ways


def test_the_loop_and_the_batched_engine_compute_the_same_fedavg(digits):
    clients = client_datasets(digits.train_images[:400], digits.train_labels[:400],
                              iid_partition(digits.train_labels[:400].numpy(), 7, seed=1))
    torch.manual_seed(0)
    start = make_mlp((64,))
    loop, batched = bench.loop_fedavg(start, clients, rounds=3), bench.batched_fedavg(start, clients, rounds=3)
    for (name, expected), got in zip(loop.state_dict().items(), batched.state_dict().values()):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert not torch.equal(loop.state_dict()["1.weight"], start.state_dict()["1.weight"])


def test_the_table_shows_speed_ups_and_the_share_of_the_peak():
    rows = [dict(case="digits-100", engine="loop", clients=100, rounds_per_second=5.0, peak_mb=700.0),
            dict(case="digits-100", engine="batched", clients=100, rounds_per_second=100.0, peak_mb=650.0,
                 gflop_per_round=0.03, achieved_gflops=3.0)]
    table = bench.format_table(rows, peak_gflops=60.0).splitlines()
    assert table[2].split()[:5] == ["digits-100", "loop", "100", "5.00", "1.0"]
    assert table[3].split() == ["digits-100", "batched", "100", "100.00", "20.0", "650MB", "3.0", "5%", "20.0"]


def test_a_case_runs_in_this_process_and_reports_its_row():
    row = bench.run_case("digits-10", "batched")
    assert row["engine"] == "batched" and row["clients"] == 10 and row["rounds_per_second"] > 0
    assert row["achieved_gflops"] == row["gflop_per_round"] * row["rounds_per_second"]
    assert row["peak_mb"] > 50


def test_a_case_or_engine_not_in_the_bench_is_refused_by_name():
    with pytest.raises(ValueError, match="^name must be one of 'digits-10', 'digits-100', 'mnist-shape-1000', got 'mnist'"):
        bench.run_case("mnist", "batched")
    with pytest.raises(ValueError, match="^engine must be one of 'loop', 'batched', 'flower', got 'ray'"):
        bench.run_case("digits-10", "ray")
    with pytest.raises(ValueError, match=r"^clients\[0\] must be a tuple, got a tensor"):
        bench.loop_fedavg(make_mlp((64,)), (torch.zeros(3, 1, 8, 8), torch.zeros(3)), rounds=1)
