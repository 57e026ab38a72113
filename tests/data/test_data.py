import numpy as np
import pytest
import torch

from fedkd_lessons.data.digits import load_digits_split, stratified_indices


def test_digits_split_shapes_ranges_and_determinism(digits):
    assert digits.train_images.shape == (1437, 1, 8, 8) and digits.test_images.shape == (360, 1, 8, 8)
    assert digits.train_images.dtype == torch.float32 and digits.train_labels.dtype == torch.long
    assert 0.0 == digits.train_images.min() and digits.train_images.max() == 1.0
    again = load_digits_split()
    assert torch.equal(again.test_labels, digits.test_labels)
    assert "train=1437" in repr(digits)


def test_split_is_stratified_and_disjoint(digits):
    train_share = np.bincount(digits.train_labels.numpy()) / len(digits.train_labels)
    test_share = np.bincount(digits.test_labels.numpy()) / len(digits.test_labels)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    train_rows = {tuple(x) for x in digits.train_images.flatten(1).tolist()}
    test_rows = [tuple(x) for x in digits.test_images.flatten(1).tolist()]
    # load_digits holds a few exact duplicate images; nearly every test image is unseen
    assert sum(row in train_rows for row in test_rows) < 5


def test_stratified_indices_cover_everything_once():
    labels = np.repeat(np.arange(4), 25)
    kept, held = stratified_indices(labels, 0.2, seed=0)
    assert len(held) == 20 and np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
    assert np.all(np.bincount(labels[held]) == 5)


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_bad_fraction_is_rejected(bad):
    with pytest.raises(ValueError, match="fraction"):
        stratified_indices(np.arange(10) % 2, bad, seed=0)


# --- partitions among clients (lesson 3) -------------------------------------------------------

from fedkd_lessons.data.partition import (class_mix_distances, class_skew, client_datasets, dirichlet_partition,
                                          iid_partition, local_train_test_split)


def balanced_labels(per_class=100, num_classes=10):
    return np.repeat(np.arange(num_classes), per_class)


def assert_disjoint_cover(parts, n):
    joined = np.concatenate(parts)
    assert len(joined) == n and np.array_equal(np.sort(joined), np.arange(n))


def test_iid_partition_is_disjoint_cover_of_near_equal_sizes():
    parts = iid_partition(balanced_labels(), 7, seed=0)
    assert_disjoint_cover(parts, 1000)
    assert {len(p) for p in parts} == {142, 143}
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid_partition(balanced_labels(), 7, seed=0)))


@pytest.mark.parametrize("concentration", [100.0, 1.0, 0.1])
def test_dirichlet_partition_disjoint_cover_min_samples_and_seeded(concentration):
    labels = balanced_labels()
    parts = dirichlet_partition(labels, 20, concentration, seed=3, min_samples=10)
    assert len(parts) == 20
    assert_disjoint_cover(parts, len(labels))
    assert min(len(p) for p in parts) >= 10
    again = dirichlet_partition(labels, 20, concentration, seed=3, min_samples=10)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = dirichlet_partition(labels, 20, concentration, seed=4, min_samples=10)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_large_concentration_is_near_the_global_mix_and_small_concentration_is_skewed():
    labels = balanced_labels()
    skews = {concentration: np.mean([class_skew([labels[p] for p in dirichlet_partition(labels, 10, concentration, seed=s)], 10)
                             for s in range(5)])
             for concentration in (1000.0, 1.0, 0.05)}
    # 100 examples per client and class shares ~ Dir(1000): only sampling noise remains
    assert skews[1000.0] < 0.1
    assert 0.2 < skews[1.0] < 0.6
    assert skews[0.05] > 0.7  # most clients hold one or two classes (0.9 = a single class)
    # the largest class share of a typical client at small concentration is far above the pooled 10 %
    parts = dirichlet_partition(labels, 10, 0.05, seed=0)
    top_share = np.median([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])
    assert top_share > 0.4  # four times the pooled share


def test_class_mix_distances_hand_computed():
    # pooled mix of [0,0,1,1] and [0,0,0,0] is 6/8 class 0, 2/8 class 1
    d = class_mix_distances([[0, 0, 1, 1], [0, 0, 0, 0]], 2)
    np.testing.assert_allclose(d, [0.25, 0.25])
    assert class_skew([[0, 1], [1, 0]], 2) == 0.0
    assert class_skew([[c] * 5 for c in range(10)], 10) == pytest.approx(0.9)


def test_class_mix_distances_reject_empty_clients_and_out_of_range_labels():
    with pytest.raises(ValueError, match=r"^client_labels\[1\] must have at least 1 row\(s\), got shape \(0,\)"):
        class_mix_distances([[0, 1], []], 2)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        class_mix_distances([[0, 2]], 2)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_dirichlet_rejects_a_concentration_not_positive_finite(bad):
    with pytest.raises(ValueError, match="concentration must be a finite number > 0"):
        dirichlet_partition(balanced_labels(), 5, bad, seed=0)


def test_more_clients_than_samples_is_rejected():
    with pytest.raises(ValueError, match="num_clients must be at most the number of samples \\(10\\)"):
        dirichlet_partition(np.arange(10) % 2, 11, 1.0, seed=0)
    with pytest.raises(ValueError, match="num_clients"):
        iid_partition(np.arange(10) % 2, 11, seed=0)
    with pytest.raises(ValueError, match="num_clients"):
        iid_partition(np.arange(10) % 2, 0, seed=0)


def test_min_samples_unreachable_after_retries_says_so():
    # 30 clients at concentration 0.01: almost every draw leaves many clients empty
    with pytest.raises(ValueError, match="after 5 draws some client still held fewer than min_samples=20"):
        dirichlet_partition(balanced_labels(), 30, 0.01, seed=0, min_samples=20, max_retries=5)
    with pytest.raises(ValueError, match="needs 1100 samples"):
        dirichlet_partition(balanced_labels(), 11, 1.0, seed=0, min_samples=100)


def test_local_split_sizes_disjoint_and_minimum_test_size():
    parts = [np.arange(0, 40), np.arange(40, 52), np.arange(52, 152)]
    train_parts, test_parts = local_train_test_split(parts, test_share=0.25, min_test=5, seed=0)
    assert [len(t) for t in test_parts] == [10, 5, 25]  # 12 * 0.25 = 3 is raised to min_test = 5
    for part, train_part, test_part in zip(parts, train_parts, test_parts):
        assert not set(train_part) & set(test_part)
        assert np.array_equal(np.sort(np.concatenate([train_part, test_part])), part)
    again = local_train_test_split(parts, test_share=0.25, min_test=5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(test_parts, again[1]))


def test_local_split_rejects_clients_too_small_and_bad_share():
    with pytest.raises(ValueError, match="client 1 holds 6 examples"):
        local_train_test_split([np.arange(50), np.arange(6)], test_share=0.2, min_test=6)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="test_share"):
            local_train_test_split([np.arange(50)], test_share=bad)


def test_client_datasets_slices_images_and_labels(digits):
    sets = client_datasets(digits.train_images, digits.train_labels, [np.array([0, 5]), np.array([7])])
    assert torch.equal(sets[0][0], digits.train_images[[0, 5]]) and torch.equal(sets[1][1], digits.train_labels[[7]])


def test_make_federation_keeps_clients_disjoint_and_matches_the_indices(digits):
    from fedkd_lessons.data.partition import make_federation

    federation = make_federation(digits.train_images, digits.train_labels, 12, concentration=0.5, seed=1, min_test=8)
    every = np.concatenate(federation.train_indices + federation.test_indices)
    assert np.array_equal(np.sort(every), np.arange(len(digits.train_labels)))
    assert min(len(labels) for _, labels in federation.test) >= 8
    images, labels = federation.test[3]
    assert torch.equal(labels, digits.train_labels[federation.test_indices[3]])
    assert torch.equal(images, digits.train_images[federation.test_indices[3]])
    assert "12 clients" in repr(federation)
    iid = make_federation(digits.train_images, digits.train_labels, 12, concentration=None)
    assert max(len(y) for _, y in iid.train) - min(len(y) for _, y in iid.train) <= 2
