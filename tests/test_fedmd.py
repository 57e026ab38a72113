from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fedkd_lessons.fedmd as fedmd
from fedkd_lessons.fedmd import (
    FedMDSettings, Party, bytes_per_round, compute_consensus, consensus_loss, digest, draw_public_subset, make_parties,
    party_logits, pooled_upper_bound, pretrain_on_public, revisit, run_fedmd,
)
from fedkd_lessons.data.letters import make_letter_parties
from fedkd_lessons.engine.models import make_cnn, make_mlp


@pytest.fixture(scope="module")
def small_world(digits):
    """Three parties on a few letters, the public digits, a small test set."""
    torch.manual_seed(0)
    letters = make_letter_parties(num_parties=3, per_class=4, evaluation_per_class=3, seed=0)
    models = [("mlp", make_mlp((16,), num_classes=16)), ("cnn", make_cnn((4,), num_classes=16)),
              ("mlp2", make_mlp((8, 8), num_classes=16))]
    parties = make_parties(models, letters.private, seed=0)
    pretrain_on_public(parties, digits.train_images[:300], digits.train_labels[:300], epochs=1)
    return parties, digits.train_images[:300], letters


def test_consensus_is_the_exact_mean_of_the_parties_logits():
    logits = torch.tensor([[[1.0, -2.0, 4.0]], [[3.0, 0.0, -4.0]]])
    torch.testing.assert_close(compute_consensus(logits), torch.tensor([[2.0, -1.0, 0.0]]))
    many = torch.randn(5, 7, 16)
    torch.testing.assert_close(compute_consensus(list(many)), (many[0] + many[1] + many[2] + many[3] + many[4]) / 5)


def test_probability_consensus_averages_softened_softmaxes():
    logits = torch.randn(3, 4, 16)
    expected = sum(torch.softmax(logits[k] / 2.5, dim=-1) for k in range(3)) / 3
    torch.testing.assert_close(compute_consensus(logits, "probabilities", 2.5), expected)


def test_consensus_losses_match_hand_formulas():
    logits, target = torch.randn(6, 16), torch.randn(6, 16)
    torch.testing.assert_close(consensus_loss(logits, target), (logits - target).abs().mean())
    probs = torch.softmax(torch.randn(6, 16), dim=-1)
    student = torch.log_softmax(logits / 3.0, dim=-1)
    expected = 9.0 * (probs * (probs.log() - student)).sum() / 6
    torch.testing.assert_close(consensus_loss(logits, probs, "probabilities", 3.0), expected)


def test_digest_lowers_each_partys_distance_to_the_consensus(small_world):
    parties, public, _ = small_world
    indices = torch.arange(200)
    scores = torch.stack([party_logits(p, public, indices) for p in parties])
    consensus = compute_consensus(scores)
    for party in parties:
        party = fedmd.copy.deepcopy(party)
        before = F.l1_loss(party_logits(party, public, indices), consensus).item()
        digest(party, public[indices], consensus, epochs=2, batch_size=32)
        after = F.l1_loss(party_logits(party, public, indices), consensus).item()
        assert after < before


def test_revisit_trains_on_private_data_only(small_world, monkeypatch):
    parties, _, _ = small_world
    seen = []
    monkeypatch.setattr(fedmd, "train_parties", lambda parties, sets, **kw: seen.append((parties, sets)))
    revisit(parties[1], epochs=3)
    assert len(seen) == 1 and seen[0][0] == [parties[1]]
    (images, labels), = seen[0][1]
    assert images is parties[1].private_images and labels is parties[1].private_labels


def test_a_round_is_communicate_aggregate_digest_then_revisit(small_world, monkeypatch):
    parties, public, letters = small_world
    calls = []
    real_logits, real_digest, real_revisit = fedmd.party_logits, fedmd.digest, fedmd.revisit
    monkeypatch.setattr(fedmd, "party_logits", lambda party, *a: calls.append(("communicate", party.name)) or real_logits(party, *a))
    monkeypatch.setattr(fedmd, "digest", lambda parties, *a, **k: calls.append(("digest", tuple(p.name for p in parties))) or real_digest(parties, *a, **k))
    monkeypatch.setattr(fedmd, "revisit", lambda parties, **k: calls.append(("revisit", tuple(p.name for p in parties))) or real_revisit(parties, **k))
    run_fedmd(parties, public, letters.test_images, letters.test_labels, FedMDSettings(rounds=1, subset_size=50),
              progress=False)
    names = ("mlp", "cnn", "mlp2")
    assert calls == [("communicate", name) for name in names] + [("digest", names), ("revisit", names)]


def test_same_seed_same_history_and_inputs_untouched(small_world):
    parties, public, letters = small_world
    before = [p.model.state_dict()["1.weight"].clone() if "1.weight" in p.model.state_dict() else None for p in parties]
    settings = FedMDSettings(rounds=2, subset_size=60, seed=3)
    first = run_fedmd(parties, public, letters.test_images, letters.test_labels, settings, progress=False)
    second = run_fedmd(parties, public, letters.test_images, letters.test_labels, settings, progress=False)
    np.testing.assert_array_equal(first.accuracy, second.accuracy)
    assert first.accuracy.shape == (3, 3)
    for party, weight in zip(parties, before):
        if weight is not None:
            assert torch.equal(party.model.state_dict()["1.weight"], weight)


def test_controls_run_with_the_same_steps(small_world):
    parties, public, letters = small_world
    for target in ("none", "own logits"):
        history = run_fedmd(parties, public, letters.test_images, letters.test_labels,
                            FedMDSettings(rounds=1, subset_size=40), digest_target=target, progress=False)
        assert history.settings["digest_target"] == target and history.accuracy.shape == (2, 3)


def test_pooled_upper_bound_trains_copies_on_everyones_letters(small_world):
    parties, _, letters = small_world
    weights = parties[0].model[1].weight.clone()
    scores = pooled_upper_bound(parties, letters.test_images, letters.test_labels, epochs=1)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    assert torch.equal(parties[0].model[1].weight, weights)


def test_bytes_per_round_against_hand_count():
    models = [make_mlp((4,), num_classes=16), make_mlp((2,), num_classes=16)]
    weights = (64 * 4 + 4 + 4 * 16 + 16) + (64 * 2 + 2 + 2 * 16 + 16)
    counted = bytes_per_round(models, subset_size=10)
    assert counted.fedmd == 2 * 2 * 10 * 16 * 4
    assert counted.fedavg == 2 * weights * 4


def test_bad_inputs_are_rejected(small_world):
    parties, public, letters = small_world
    images, labels = letters.private[0]
    with pytest.raises(ValueError, match="the model has 10 outputs, but FedMD needs 10 public \\+ 6 private = 16"):
        Party("ten", make_mlp((4,), num_classes=10), images, labels)
    with pytest.raises(ValueError, match="the private set is empty"):
        Party("empty", make_mlp((4,), num_classes=16), images[:0], labels[:0])
    test = (letters.test_images, letters.test_labels)
    with pytest.raises(ValueError, match="subset_size must be at most the public set's size 300, got 301"):
        run_fedmd(parties, public, *test, FedMDSettings(subset_size=301))
    with pytest.raises(ValueError, match=r"settings must be None or a FedMDSettings, got \{.rounds.: 1\}"):
        run_fedmd(parties, public, *test, dict(rounds=1))
    with pytest.raises(ValueError, match="digest_target must be one of"):
        run_fedmd(parties, public, *test, FedMDSettings(subset_size=10), digest_target="labels")
    with pytest.raises(ValueError, match="logits must have shape \\(parties, samples, classes\\)"):
        compute_consensus(torch.zeros(3, 16))
    with pytest.raises(ValueError, match="2 models but 3 private sets"):
        make_parties([("a", make_mlp(num_classes=16))] * 2, letters.private)


def test_runs_together_equal_the_same_runs_one_by_one(small_world):
    parties, public, letters = small_world  # no dropout: the runs draw nothing from torch's global stream
    variants = [dict(digest_target="consensus", seed=1), dict(digest_target="none", seed=1),
                dict(digest_target="own logits", subset_size=30, seed=2),
                dict(kind="probabilities", temperature=3.0, seed=3)]
    def rounds_of(variant):
        return FedMDSettings(**{"rounds": 2, "subset_size": 60,
                                **{k: v for k, v in variant.items() if k != "digest_target"}})

    runs = [fedmd.FedMDRun(parties, letters.test_images, letters.test_labels, rounds_of(v),
                           digest_target=v.get("digest_target", "consensus")) for v in variants]
    together = fedmd.run_fedmd_together(runs, public, progress=False)
    for variant, joint in zip(variants, together):
        alone = run_fedmd(parties, public, letters.test_images, letters.test_labels, rounds_of(variant),
                          digest_target=variant.get("digest_target", "consensus"), progress=False)
        np.testing.assert_array_equal(joint.accuracy, alone.accuracy)
        for a, b in zip(joint.parties, alone.parties):
            for x, y in zip(a.model.parameters(), b.model.parameters()):
                torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
        assert joint.settings["digest_target"] == variant.get("digest_target", "consensus")


def test_run_settings_are_checked():
    with pytest.raises(ValueError, match="digest_target must be one of"):
        fedmd.FedMDRun([object()], torch.zeros(1), torch.zeros(1), digest_target="mean")
    with pytest.raises(ValueError, match="parties: FedMD needs at least one party"):
        fedmd.FedMDRun([], torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="runs: give at least one FedMDRun"):
        fedmd.run_fedmd_together([], torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="settings must be a FedMDSettings"):
        fedmd.FedMDRun([object()], torch.zeros(1), torch.zeros(1), {"rounds": 2})


def test_runs_in_lockstep_must_share_their_rounds_and_epochs(small_world):
    parties, public, letters = small_world
    test = (letters.test_images, letters.test_labels)
    runs = [fedmd.FedMDRun(parties, *test, FedMDSettings(rounds=r, subset_size=20)) for r in (2, 3)]
    with pytest.raises(ValueError, match=r"runs\[1\].settings.rounds is 3 but runs\[0\]'s is 2"):
        fedmd.run_fedmd_together(runs, public, progress=False)


# ---- robust consensus rules and a party that tampers with its scores (lesson 6) ----

@pytest.mark.parametrize("parties", [1, 2, 5, 6, 10])
def test_median_consensus_is_numpys_coordinate_wise_median(parties):
    logits = torch.randn(parties, 7, 16, generator=torch.Generator().manual_seed(parties))
    expected = torch.from_numpy(np.median(logits.numpy(), axis=0))  # even m: the mean of the two middle values
    torch.testing.assert_close(compute_consensus(logits, rule="median"), expected)


@pytest.mark.parametrize("parties, trim", [(10, 0.1), (10, 0.25), (7, 0.2), (3, 0.4), (4, 0.0)])
def test_trimmed_mean_consensus_is_scipys_trim_mean(parties, trim):
    from scipy import stats

    logits = torch.randn(parties, 5, 16, generator=torch.Generator().manual_seed(3 * parties))
    expected = torch.from_numpy(stats.trim_mean(logits.numpy(), trim, axis=0)).float()
    torch.testing.assert_close(compute_consensus(logits, rule="trimmed mean", trim=trim), expected)


def test_robust_probability_consensus_stays_a_distribution():
    logits = torch.randn(4, 6, 16)
    probabilities = torch.softmax(logits / 2.0, dim=-1).numpy()
    median = np.median(probabilities, axis=0)
    expected = torch.from_numpy(median / median.sum(axis=-1, keepdims=True))
    got = compute_consensus(logits, "probabilities", 2.0, rule="median")
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.sum(dim=-1), torch.ones(6))


def test_one_extreme_party_moves_the_mean_but_not_the_median():
    honest = torch.randn(9, 4, 16)
    poisoned = torch.cat([honest, -100 * torch.ones(1, 4, 16)])
    assert (compute_consensus(poisoned) - compute_consensus(honest)).abs().min() > 9  # 100/10 minus spread
    lower, upper = honest.min(dim=0).values, honest.max(dim=0).values
    for rule in ("median", "trimmed mean"):
        robust = compute_consensus(poisoned, rule=rule)  # stays within the honest parties' range
        assert bool(((robust >= lower - 1e-6) & (robust <= upper + 1e-6)).all())


def test_consensus_rule_and_trim_are_checked():
    with pytest.raises(ValueError, match="rule must be one of"):
        compute_consensus(torch.zeros(2, 3, 16), rule="mode")
    with pytest.raises(ValueError, match=r"trim must be a number in \[0, 0.5\), got 0.5"):
        compute_consensus(torch.zeros(2, 3, 16), rule="trimmed mean", trim=0.5)
    with pytest.raises(ValueError, match="rule must be one of"):
        FedMDSettings(rule="max")
    with pytest.raises(ValueError, match="tamper must be None or callable"):
        fedmd.FedMDRun([object()], torch.zeros(1), torch.zeros(1), tamper=3)


def test_the_server_aggregates_what_tamper_returns_by_the_runs_rule(small_world, monkeypatch):
    parties, public, letters = small_world
    seen = []
    original = fedmd.compute_consensus

    def spy(scores, *args):
        seen.append((scores.clone(), args))
        return original(scores, *args)

    monkeypatch.setattr(fedmd, "compute_consensus", spy)

    def flip_first(scores):
        scores = scores.clone()
        scores[0] = -5 * scores[0]
        return scores

    run = fedmd.FedMDRun(parties, letters.test_images, letters.test_labels,
                         FedMDSettings(rounds=1, subset_size=20, rule="median"), tamper=flip_first)
    fedmd.run_fedmd_together([run], public, progress=False)
    (received, args), = seen
    indices = torch.randperm(len(public), generator=torch.Generator().manual_seed(0))[:20]
    honest = torch.stack([party_logits(p, public, indices) for p in parties])  # the parties before the round
    torch.testing.assert_close(received[0], -5 * honest[0])
    torch.testing.assert_close(received[1:], honest[1:])
    assert args == ("logits", 1.0, "median", 0.1)


def test_without_tamper_and_with_the_mean_a_run_is_unchanged(small_world):
    parties, public, letters = small_world
    test = (letters.test_images, letters.test_labels)
    rounds = FedMDSettings(rounds=2, subset_size=40, seed=4)
    plain = fedmd.run_fedmd_together([fedmd.FedMDRun(parties, *test, rounds)], public, progress=False)[0]
    explicit = fedmd.run_fedmd_together([fedmd.FedMDRun(parties, *test, replace(rounds, rule="mean"),
                                                         tamper=lambda scores: scores)], public, progress=False)[0]
    np.testing.assert_array_equal(plain.accuracy, explicit.accuracy)


# ---- one source of truth: the settings and the subset draw that lesson 6's Flower apps use too ----

def test_settings_go_to_flowers_run_config_and_back():
    settings = FedMDSettings(rounds=3, subset_size=40, kind="probabilities", temperature=2.0, rule="median", seed=5)
    config = settings.to_run_config()
    assert config["digest-batch-size"] == 64 and config["subset-size"] == 40 and config["rule"] == "median"
    assert FedMDSettings.from_run_config({**config, "result-dir": "/tmp"}) == settings  # other keys ignored
    # Flower's run-config may carry an integer where a float is meant ("temperature = 2")
    assert FedMDSettings.from_run_config({**config, "temperature": 2}).temperature == 2.0
    with pytest.raises(ValueError, match=r"the run-config lacks FedMD's settings \['trim'\]"):
        FedMDSettings.from_run_config({k: v for k, v in config.items() if k != "trim"})


@pytest.mark.parametrize("change, message", [
    (dict(rounds=-1), "rounds must be an integer >= 0, got -1"),
    (dict(subset_size=0), "subset_size must be an integer >= 1, got 0"),
    (dict(digest_epochs=1.5), "digest_epochs must be an integer >= 0, got 1.5"),
    (dict(revisit_epochs=-2), "revisit_epochs must be an integer >= 0"),
    (dict(digest_batch_size=0), "digest_batch_size must be an integer >= 1"),
    (dict(kind="median"), "kind must be one of 'logits', 'probabilities', got 'median'"),
    (dict(temperature=0.0), "temperature must be a finite number > 0, got 0.0"),
    (dict(rule="mode"), "rule must be one of 'mean', 'median', 'trimmed mean', got 'mode'"),
    (dict(trim=0.5), r"trim must be a number in \[0, 0.5\), got 0.5"),
    (dict(seed=-1), "seed must be an integer >= 0, got -1"),
])
def test_settings_reject_bad_values_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        FedMDSettings(**change)


def test_the_subset_draw_is_a_seeded_permutations_head():
    first = draw_public_subset(torch.Generator().manual_seed(7), 50, 10)
    again = draw_public_subset(torch.Generator().manual_seed(7), 50, 10)
    assert torch.equal(first, again) and len(set(first.tolist())) == 10 and int(first.max()) < 50
    # the same draw that lesson 5's exercise asks a learner to write
    torch.testing.assert_close(first, torch.randperm(50, generator=torch.Generator().manual_seed(7))[:10])
    with pytest.raises(ValueError, match="subset_size must be at most the public set's size 50, got 51"):
        draw_public_subset(torch.Generator(), 50, 51)
    with pytest.raises(ValueError, match="subset_size must be an integer >= 1, got 0"):
        draw_public_subset(torch.Generator(), 50, 0)


def test_a_round_draws_its_subset_with_the_shared_draw(small_world, monkeypatch):
    parties, public, letters = small_world
    drawn = []
    monkeypatch.setattr(fedmd, "draw_public_subset",
                        lambda server, size, subset: drawn.append((size, subset)) or torch.arange(subset))
    run_fedmd(parties, public, letters.test_images, letters.test_labels, FedMDSettings(rounds=2, subset_size=30),
              progress=False)
    assert drawn == [(len(public), 30)] * 2
