"""The README's pictures: the folder they are written into is declared."""

import pytest

from fedkd_lessons.course.assets import write_assets


def test_a_folder_that_is_no_path_is_refused_by_name_before_any_drawing():
    with pytest.raises(ValueError, match="^folder must be a str or a PathLike, got 3"):
        write_assets(3)
