import matplotlib
import pytest
import torch

from fedkd_lessons.data.letters import LETTERS, WRITERS, make_letter_parties, make_letters, render_letter
from fedkd_lessons.figures.lesson5_fedmd import letters_grid_figure

matplotlib.use("Agg")


def test_render_letter_is_an_8x8_image_in_unit_range():
    image = render_letter("a", WRITERS[0])
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.sum() > 3


def test_holes_stay_empty_and_letters_differ():
    # The bowl of b is hollow (even-odd fill), so the glyph is not a filled blob.
    fine = render_letter("b", WRITERS[4])
    assert (fine > 0.5).float().mean() < 0.6
    images = torch.stack([render_letter(letter, WRITERS[0]) for letter in LETTERS])
    distances = torch.cdist(images.flatten(1), images.flatten(1))
    assert distances[~torch.eye(6, dtype=bool)].min() > 0.5


def test_writers_differ_in_hand():
    first, second = render_letter("a", WRITERS[0]), render_letter("a", WRITERS[3])
    assert (first - second).abs().sum() > 2.0
    assert len({w.font for w in WRITERS}) == len(WRITERS) == 10


def test_make_letters_is_seeded_and_labelled_10_to_15():
    images, labels = make_letters(WRITERS[1], per_class=3, seed=7)
    again, _ = make_letters(WRITERS[1], per_class=3, seed=7)
    other, _ = make_letters(WRITERS[1], per_class=3, seed=8)
    assert images.shape == (18, 1, 8, 8) and labels.tolist() == [c for c in range(10, 16) for _ in range(3)]
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert not torch.equal(images[0], images[1])  # per-sample jitter


def test_parties_and_evaluation_sets_cover_every_writer():
    data = make_letter_parties(num_parties=3, per_class=2, evaluation_per_class=1, seed=0)
    assert len(data.private) == 3 and all(len(labels) == 12 for _, labels in data.private)
    assert len(data.test_labels) == len(data.validation_labels) == 3 * 6
    assert not torch.equal(data.test_images, data.validation_images)
    assert torch.equal(data.private[1][0], make_letter_parties(3, 2, 1, seed=0).private[1][0])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_parties": 11}, r"num_parties must be an integer in \[1, 10\], got 11"),
    ({"num_parties": 0}, r"num_parties must be an integer in \[1, 10\], got 0"),
    ({"per_class": 0}, "per_class must be an integer >= 1"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_letter_parties(**kwargs)


def test_unknown_letter_is_rejected():
    with pytest.raises(ValueError, match="letter must be one of 'a', 'b', 'c', 'd', 'e', 'f', got 'g'"):
        render_letter("g", WRITERS[0])


def test_grid_has_one_row_per_writer():
    data = make_letter_parties(num_parties=2, per_class=1, evaluation_per_class=1)
    fig = letters_grid_figure(data, samples_per_letter=1)
    assert len(fig.axes) == 2 * 6
    assert "sans bold" in fig.axes[6].get_ylabel()
    matplotlib.pyplot.close(fig)
