"""Lesson 5's experiments module: the settings' validation, the private half chosen on the
validation letters (against a plain one-model loop), the headline's arithmetic by hand, the claims'
reading, and the plumbing that must build lesson 6's parties."""

import copy

import numpy as np
import pytest
import torch

from fedkd_lessons.engine.batched import ModelStack, StackedData, train_stack
from fedkd_lessons.data.digits import ImageSplit
from fedkd_lessons.experiments.intervals import paired_interval
from fedkd_lessons.experiments.lesson5_fedmd import (
    CHANCE, OverSeeds, Settings, ValidationChoice, claims, make_lesson_parties, make_letters, run_over_seeds,
    train_until_best_on_validation, transfer_learn, variant_run,
)
from fedkd_lessons.fedmd import FedMDHistory
from fedkd_lessons.engine.models import accuracy, make_fedmd_zoo


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be an integer >= 0"),
    ("parties", 1, r"parties must be an integer in \[2, 10\]"),
    ("parties", 11, r"parties must be an integer in \[2, 10\]"),
    ("letters_per_class", 0, "letters_per_class must be an integer >= 1"),
    ("evaluation_per_class", 0, "evaluation_per_class must be an integer >= 1"),
    ("public_epochs", -1, "public_epochs must be an integer >= 0"),
    ("private_epochs", 2.5, "private_epochs must be an integer >= 0"),
    ("pooled_epochs", 0, "pooled_epochs must be an integer >= 1"),
    ("rounds", 0, "rounds must be an integer >= 1"),
    ("subset_size", 0, "subset_size must be an integer >= 1"),
    ("digest_epochs", -1, "digest_epochs must be an integer >= 0"),
    ("revisit_epochs", True, "revisit_epochs must be an integer >= 0"),
    ("softened_temperature", 0.0, "softened_temperature must be a finite number > 0"),
    ("softened_temperature", float("nan"), "softened_temperature must be a finite number > 0"),
    ("max_private_epochs", 0, "max_private_epochs must be an integer >= 1"),
    ("validation_every", 0, "validation_every must be an integer >= 1"),
    ("validation_every", 7, r"max_private_epochs \(150\) must be a multiple of validation_every \(7\)"),
    ("seeds", 1, "seeds must be an integer >= 2"),
])
def test_settings_reject_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        Settings(**{field: value})


def test_seed_list_starts_at_the_seed():
    assert Settings(seed=4, seeds=3).seed_list == (4, 5, 6)


def test_validation_choice_reads_a_checkpoint():
    choice = ValidationChoice(np.array([0, 5, 10]), np.array([[0.1, 0.4, 0.3], [0.2, 0.2, 0.6]]), np.array([5, 10]))
    assert choice.at_epoch(5).tolist() == [0.4, 0.2]
    assert choice.best.tolist() == [0.4, 0.6]
    with pytest.raises(ValueError, match="epoch must be one of the checkpoints"):
        choice.at_epoch(7)


def tiny_parties(seed=0):
    settings = Settings(seed=seed, parties=3, letters_per_class=3, evaluation_per_class=2)
    letters = make_letters(settings)
    return letters, make_lesson_parties(settings, letters, image_size=8)


def test_the_best_checkpoint_is_kept_as_a_plain_loop_keeps_it():
    settings = Settings(parties=4, letters_per_class=3, evaluation_per_class=2)
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    del parties[2]  # mlp 128-64 has dropout, whose masks come from torch's global stream: not comparable alone
    for party in parties:
        party.batch_size = 4
    validation = [(letters.validation_images, letters.validation_labels)] * len(parties)
    copies = copy.deepcopy(parties)
    choice = train_until_best_on_validation(parties, validation, max_epochs=12, every=3)
    assert choice.checkpoints.tolist() == [0, 3, 6, 9, 12]
    for k, party in enumerate(copies):  # one model at a time, every checkpoint's weights kept, the best picked by hand
        stack = ModelStack.from_models([party.model])
        snapshots = {0: copy.deepcopy(party.model.state_dict())}
        scores = {0: accuracy(party.model, *validation[k])}

        def keep(epoch, trained, party=party, snapshots=snapshots, scores=scores, k=k):
            if epoch % 3 == 0:
                trained.write_to([party.model])
                snapshots[epoch] = copy.deepcopy(party.model.state_dict())
                scores[epoch] = accuracy(party.model, *validation[k])

        train_stack(stack, StackedData.from_sets([(party.private_images, party.private_labels)]), epochs=12,
                    lr=party.lr, batch_size=4, generators=[party.generator], epoch_end=keep, progress=False)
        best = max(scores, key=lambda epoch: (scores[epoch], -epoch))  # the highest score, the fewest epochs
        assert choice.epochs[k] == best
        assert np.allclose(choice.validation_accuracy[k], [scores[e] for e in (0, 3, 6, 9, 12)])
        for name, value in parties[k].model.state_dict().items():
            assert torch.allclose(value, snapshots[best][name], atol=1e-6), (k, name)


def test_train_until_best_rejects_bad_arguments():
    letters, parties = tiny_parties()
    validation = [(letters.validation_images, letters.validation_labels)] * len(parties)
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1"):
        train_until_best_on_validation(parties, validation, max_epochs=0, every=1)
    with pytest.raises(ValueError, match=r"max_epochs \(10\) must be a multiple of every \(3\)"):
        train_until_best_on_validation(parties, validation, max_epochs=10, every=3)
    with pytest.raises(ValueError, match=r"one \(images, labels\) set per party \(3\), got 1"):
        train_until_best_on_validation(parties, validation[:1], max_epochs=2, every=1)


def history(rows):
    rows = np.array(rows, dtype=float)
    return FedMDHistory(rows, tuple(f"p{k}" for k in range(rows.shape[1])), [], {})


def hand_made(fedmd_rows, control_rows, no_transfer, softened_rows=None, settings=Settings(seeds=2)):
    """An OverSeeds of two seeds and two parties, from (rounds + 1, parties) rows per seed."""
    checkpoints = np.array([0, 30, 60])
    transfer = ValidationChoice(checkpoints, np.array([[0.0, 0.3, 0.8], [0.1, 0.5, 0.7]] * 2), np.array([60] * 4))
    variants = {"softened": [history(rows) for rows in softened_rows]} if softened_rows else {}
    return OverSeeds(settings, (0, 1), ("p0", "p1"), np.ones((2, 2)), transfer, transfer, np.array(no_transfer),
                     [history(rows) for rows in fedmd_rows], [history(rows) for rows in control_rows], variants, {},
                     None, [])


def test_headline_arithmetic_by_hand():
    over = hand_made(fedmd_rows=[[[0.5, 0.7], [0.6, 0.6]], [[0.4, 0.8], [0.6, 0.9]]],
                     control_rows=[[[0.5, 0.7], [0.5, 0.7]], [[0.4, 0.8], [0.4, 0.8]]],
                     no_transfer=[[0.7, 0.7], [0.6, 0.8]])
    assert over.private_only.tolist() == [[0.5, 0.7], [0.4, 0.8]]
    assert np.allclose(over.party_gains(), [[0.1, -0.1], [0.2, 0.1]])
    assert over.parties_hurt() == {"p1": 1}
    headline = over.intervals()
    # seed means: FedMD 0.6, 0.75; private-only 0.6, 0.6; control 0.6, 0.6; no transfer 0.7, 0.7
    assert np.allclose(headline["FedMD - private-only"].differences, [0.0, 0.15])
    assert np.allclose(headline["FedMD - same-epochs control"].differences, [0.0, 0.15])
    assert np.allclose(headline["FedMD - private-only without the digits"].differences, [-0.1, 0.05])
    assert np.allclose(headline["private-only: without - with the digits"].differences, [0.1, 0.1])
    reference = paired_interval([0.6, 0.75], [0.6, 0.6])
    assert headline["FedMD - private-only"].low == pytest.approx(reference.low)
    assert over.validation_means(over.transfer).tolist() == [[0.05, 0.4, 0.75]] * 2


def test_claims_read_the_runs():
    over = hand_made(fedmd_rows=[[[0.5, 0.7], [0.6, 0.8]], [[0.4, 0.8], [0.5, 0.7]]],
                     control_rows=[[[0.5, 0.7], [0.5, 0.6]], [[0.4, 0.8], [0.4, 0.7]]],
                     no_transfer=[[0.7, 0.7], [0.7, 0.7]],
                     softened_rows=[[[0.5, 0.7], [0.8, 0.8]], [[0.4, 0.8], [0.7, 0.8]]])
    values = [c.value for c in claims(over)]
    # shortfall at epoch 30: best (0.8, 0.7) - at 30 (0.3, 0.5) -> 35 points on average
    assert values[0] == pytest.approx(35.0)
    assert values[1] == pytest.approx(100 * paired_interval([0.7, 0.6], [0.6, 0.6]).low)
    assert values[3] == pytest.approx(100 * np.mean([0.7 - 0.6, 0.7 - 0.6]))  # no digits minus private-only, mean
    assert values[5] == 1  # p1 on the second seed: 0.7 < 0.8
    assert values[6] == pytest.approx(100 * paired_interval([0.8, 0.75], [0.7, 0.6]).low)  # softened minus FedMD
    assert CHANCE == pytest.approx(1 / 6)


def test_parties_get_lesson_6s_initial_weights_and_letters():
    # lesson 6 seeds torch right before building the whole zoo; the parties must start from those weights
    settings = Settings(seed=3, parties=3, letters_per_class=1, evaluation_per_class=1)
    letters = make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    torch.manual_seed(3)
    zoo = make_fedmd_zoo(num_classes=16, image_size=8)
    assert [p.name for p in parties] == [name for name, _ in zoo[:3]]
    for party, (_, model) in zip(parties, zoo):
        for mine, theirs in zip(party.model.parameters(), model.parameters()):
            assert torch.equal(mine, theirs)
    assert len(parties[2].private_labels) == 6 and torch.equal(parties[2].private_images, letters.private[2][0])


def small_public():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, 8, 8, generator=generator)
    labels = torch.arange(40) % 10
    return ImageSplit(images[:30], labels[:30], images[30:], labels[30:])


def test_transfer_learn_leaves_the_parties_alone_when_it_measures_the_upper_bound():
    # three parties, so that one (mlp 128-64) has dropout, which draws from torch's global stream
    settings = Settings(parties=3, letters_per_class=2, evaluation_per_class=1, public_epochs=1, private_epochs=1,
                        pooled_epochs=1)
    public, letters = small_public(), make_letters(settings)
    parties = make_lesson_parties(settings, letters, image_size=8)
    transfer = transfer_learn(parties, public, letters, settings)
    assert transfer.digit_accuracy.shape == transfer.upper_bound.shape == (3,)
    again = make_lesson_parties(settings, letters, image_size=8)
    assert transfer_learn(again, public, letters, settings, with_upper_bound=False).upper_bound is None
    for party, twin in zip(parties, again):
        for mine, theirs in zip(party.model.parameters(), twin.model.parameters()):
            assert torch.equal(mine, theirs)


def test_run_over_seeds_plumbing():
    settings = Settings(parties=3, letters_per_class=2, evaluation_per_class=1, public_epochs=1, max_private_epochs=4,
                        validation_every=2, pooled_epochs=1, rounds=2, subset_size=8, seeds=2)
    over = run_over_seeds(settings, small_public(), variants={"soft": {"kind": "probabilities"}},
                          first_seed_variants={"own": {"digest_target": "own logits"}}, with_upper_bound=True,
                          progress=False)
    assert over.seeds == (0, 1) and len(over.party_names) == 3
    assert over.digit_accuracy.shape == over.no_transfer_accuracy.shape == over.private_only.shape == (2, 3)
    assert over.transfer.validation_accuracy.shape == (6, 3) and over.upper_bound.shape == (3,)
    assert set(over.first_seed) == {"own"} and len(over.variants["soft"]) == 2 and len(over.start) == 3
    for fedmd, control, soft in zip(over.fedmd, over.control, over.variants["soft"]):
        assert fedmd.accuracy.shape == (3, 3)
        assert np.array_equal(fedmd.accuracy[0], control.accuracy[0]) and np.array_equal(fedmd.accuracy[0], soft.accuracy[0])
    assert over.fedmd[0].settings["digest_target"] == "consensus" and over.control[0].settings["digest_target"] == "none"
    with pytest.raises(ValueError, match="need names of their own"):
        run_over_seeds(settings, small_public(), variants={"control": {}}, progress=False)


# --- Arguments that must agree: each rejection names the argument at fault ------------------------

def test_a_validation_set_with_labels_of_another_length_is_rejected_by_name():
    letters, parties = tiny_parties()
    validation = [(letters.validation_images, letters.validation_labels)] * len(parties)
    validation[1] = (letters.validation_images, letters.validation_labels[:-1])
    with pytest.raises(ValueError, match=r"^validation\[1\] must give one label per image \(\d+\), got \d+"):
        train_until_best_on_validation(parties, validation, max_epochs=2, every=1)


def test_a_validation_set_that_is_no_pair_is_rejected_by_name():
    letters, parties = tiny_parties()
    validation = [(letters.validation_images, letters.validation_labels)] * len(parties)
    validation[2] = (letters.validation_images,)
    with pytest.raises(ValueError, match=r"^validation\[2\] must be an \(images, labels\) pair, got 1 item\(s\)"):
        train_until_best_on_validation(parties, validation, max_epochs=2, every=1)


def test_a_variant_that_changes_no_setting_of_fedmd_is_rejected_by_name():
    letters, parties = tiny_parties()
    with pytest.raises(ValueError, match=r"^changes must name digest_target or fields of FedMDSettings, "
                                         r"got \['temp'\]"):
        variant_run(parties, letters, Settings().rounds_at(0), {"temp": 4.0})


def test_run_over_seeds_rejects_a_bad_variant_by_name_before_any_training():
    # at the lesson's settings: were anything trained first, this would take minutes
    with pytest.raises(ValueError, match=r"^first_seed_variants\['own'\] must name digest_target or fields of "):
        run_over_seeds(Settings(), small_public(), first_seed_variants={"own": {"target": "own logits"}},
                       progress=False)
