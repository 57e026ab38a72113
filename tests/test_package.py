import importlib

import pytest

import fedkd_lessons


@pytest.mark.parametrize("name", fedkd_lessons.__all__)
def test_every_top_level_name_comes_from_its_module(name):
    home = importlib.import_module(f"fedkd_lessons.{fedkd_lessons._HOMES[name]}")
    assert getattr(fedkd_lessons, name) is getattr(home, name)


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'softmax'"):
        fedkd_lessons.softmax
