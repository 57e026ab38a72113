"""Lesson 3's claims at the notebook's settings on another seed than the notebook's (which nbval
checks through the notebook's own claims cell), and the settings' validation."""

import dataclasses

import pytest

from fedkd_lessons.experiments.claims import assert_claims
from fedkd_lessons.experiments.lesson3_federated import Settings, claims, run_claims_experiment
from fedkd_lessons.fedavg import FedAvgSettings


def test_the_claims_hold_on_another_seed():
    settings = dataclasses.replace(Settings(), seed=Settings().seed + 1)
    assert_claims(claims(run_claims_experiment(settings)))


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("num_clients", 1, "num_clients must be an integer >= 2"),
    ("iid_concentration", float("inf"), "iid_concentration must be a finite number > 0"),
    ("mild_concentration", 0.0, "mild_concentration must be a finite number > 0"),
    ("skewed_concentration", -0.1, "skewed_concentration must be a finite number > 0"),
    ("skewed_concentration", 5.0, "the concentrations must fall from iid_concentration to mild_concentration to "
                                  "skewed_concentration"),
    ("min_samples", 1, "min_samples must be an integer >= 2"),
    ("partition_retries", 0, "partition_retries must be an integer >= 1"),
    ("test_share", 1.5, "test_share must be a number in"),
    ("test_share", 0.0, "test_share must be a number in \\(0, 1\\), got 0.0"),
    ("min_test", 0, "min_test must be an integer >= 1"),
    ("min_test", 25, "min_test must be below min_samples"),
    ("hidden_units", 0, "hidden_units must be an integer >= 1"),
    ("rounds", 0, "rounds must be an integer >= 1"),
    ("client_fraction", 0.0, "client_fraction must be a number in \\(0, 1\\], got 0.0"),
    ("client_fraction", 1.5, "client_fraction must be a number in"),
    ("local_epochs", 0, "local_epochs must be an integer >= 1"),
    ("lr", 0.0, "lr must be a finite number > 0"),
    ("batch_size", 0, "batch_size must be an integer >= 1"),
    ("optimizer", "rmsprop", "optimizer must be one of 'sgd', 'adam', got 'rmsprop'"),
    ("momentum", 1.5, "momentum must be a number in"),
    ("warmup_rounds", 0, "warmup_rounds must be an integer >= 1"),
    ("trace_clients", (0,), "trace_clients must be a list or tuple of at least 2 item"),
    ("trace_clients", (1, 1), "trace_clients must name at least two different clients"),
    ("trace_clients", (0, 20), "trace_clients\\[1\\] must be an integer in \\[0, 19\\], got 20"),
    ("clip_quantile", -0.5, "clip_quantile must be a number in"),
    ("dp_sigmas", (0.1,), "dp_sigmas must be a list or tuple of at least 2 item"),
    ("dp_sigmas", (0.1, 0.01), "dp_sigmas must be two increasing noise levels"),
    ("dp_sigmas", (0.01, float("inf")), "dp_sigmas\\[1\\] must be a finite number > 0, got inf"),
    ("last_rounds", 0, "last_rounds must be an integer >= 1"),
    ("last_rounds", 31, "last_rounds must be at most rounds"),
    ("accuracy_level", 1.2, "accuracy_level must be a number in"),
    ("hurt_points", -0.1, "hurt_points must be a number in"),
    ("skew_concentrations", (1.0,), "skew_concentrations must be a list or tuple of at least 2 item"),
    ("skew_concentrations", (1.0, -1.0), "skew_concentrations\\[1\\] must be a finite number > 0, got -1.0"),
    ("skew_partitions", 0, "skew_partitions must be an integer >= 1"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_the_default_settings_are_the_notebooks():
    settings = Settings()
    assert settings.concentrations == (100, 1, 0.1)
    assert settings.fedavg == FedAvgSettings(rounds=30, client_fraction=0.5, local_epochs=2, lr=0.1, batch_size=16,
                                             optimizer="sgd", momentum=0.9, aggregator="mean")
