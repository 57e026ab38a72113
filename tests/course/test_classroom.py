"""The student edition and the nbgrader source folder, built from the real lesson notebooks."""

import math
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI
from traitlets.config import Config

from fedkd_lessons.exercises import check_entropy
from fedkd_lessons.exercises.feedback import NotPassed

from fedkd_lessons.course.classroom import (BEGIN_SOLUTION, POINTS_PER_CHECK, is_check_cell, is_solution_cell, main,
                                            with_nbgrader_metadata, write_nbgrader_source, write_student_edition)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def solution_lines(nb) -> list[str]:
    """The non-trivial lines of every reference answer (between the markers)."""
    lines = []
    for cell in nb.cells:
        if is_solution_cell(cell):
            inside = cell.source.split(BEGIN_SOLUTION, 1)[1].split("### END SOLUTION", 1)[0]
            lines += [line.strip() for line in inside.splitlines() if len(line.strip()) > 12]
    return lines


@pytest.fixture(scope="module")
def student_edition(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("student")
    main(["student-edition", str(outdir), "--source", str(NOTEBOOKS)])
    return {path.name: nbformat.read(path, as_version=4) for path in sorted(outdir.glob("*.ipynb"))}, outdir


def test_every_lesson_has_two_to_four_checked_exercises():
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        count = sum(is_solution_cell(cell) for cell in nb.cells)
        assert 2 <= count <= 4, f"{path.name} has {count} exercises"
        checks = [cell for cell in nb.cells if is_check_cell(cell)]
        assert len(checks) == count
        for cell in checks:  # the reference answers pass their own checkers
            shown = "".join(output.get("data", {}).get("text/plain", "") for output in cell.outputs)
            assert shown.startswith("✅ Correct"), f"{path.name}: a check cell shows {shown[:80]!r}"


def assert_no_solutions_and_no_outputs(reference, student, name: str) -> None:
    """The student edition of one notebook has stubs instead of answers, and no outputs or widget state."""
    nbformat.validate(student)
    text = "\n".join(cell.source for cell in student.cells)
    assert BEGIN_SOLUTION not in text and "raise NotImplementedError()" in text
    for line in solution_lines(reference):
        assert line not in text, f"{name}: solution line {line!r} survived"
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert "widgets" not in student.metadata


def test_student_edition_has_no_solutions_and_no_outputs(student_edition):
    notebooks, _ = student_edition
    assert sorted(notebooks) == [path.name for path in LESSONS]
    for path in LESSONS:
        assert_no_solutions_and_no_outputs(nbformat.read(path, as_version=4), notebooks[path.name], path.name)


def answer_names(nb) -> set[str]:
    """The functions the exercises ask for, as their answer cells define them."""
    return {name for cell in nb.cells if is_solution_cell(cell) for name in re.findall(r"^def (\w+)\(", cell.source, re.M)}


def assert_changes_only_the_answers(reference, student, name: str) -> None:
    """Every cell of the student edition but the answer cells is the reference's to the letter."""
    assert len(student.cells) == len(reference.cells), name
    for ours, theirs in zip(reference.cells, student.cells):
        assert ours.cell_type == theirs.cell_type
        if is_solution_cell(ours):
            assert "raise NotImplementedError()" in theirs.source
        else:
            assert theirs.source == ours.source, f"{name}: a cell changed: {ours.source[:60]!r}"


def test_student_edition_changes_only_the_answers(student_edition):
    # Every other cell is the reference's to the letter, and nbval runs those; so what is left to
    # run in the student edition is its answer cells and the check cells that call them.
    notebooks, _ = student_edition
    for path in LESSONS:
        assert_changes_only_the_answers(nbformat.read(path, as_version=4), notebooks[path.name], path.name)


def test_only_check_cells_call_the_answers():
    # A student who skips an exercise can still run the rest: no lesson cell uses an answer.
    for path in LESSONS:
        nb = nbformat.read(path, as_version=4)
        names = answer_names(nb)
        assert names, path.name
        for cell in nb.cells:
            if cell.cell_type == "code" and not is_solution_cell(cell) and not is_check_cell(cell):
                used = {name for name in names if re.search(rf"\b{name}\b", cell.source)}
                assert not used, f"{path.name}: {sorted(used)} used outside its check cell: {cell.source[:60]!r}"


def exercises_only(path: Path) -> nbformat.NotebookNode:
    """The student notebook's setup cell (its first code cell: imports, seed) followed by its answer
    stubs and check cells, executed in a fresh kernel."""
    nb = nbformat.read(path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    stubs = [cell for cell in code if "raise NotImplementedError()" in cell.source]
    nb.cells = [code[0]] + [cell for cell in code[1:] if cell in stubs or is_check_cell(cell)]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


@pytest.mark.slow  # runs every lesson's exercise cells in a kernel
def test_student_exercises_say_not_solved(student_edition):
    _, outdir = student_edition
    # two kernels of one torch thread each: the two cores, never oversubscribed
    with ThreadPoolExecutor(max_workers=2) as pool:
        executed = dict(zip([path.name for path in LESSONS],
                            pool.map(exercises_only, [outdir / path.name for path in LESSONS])))
    for name, nb in executed.items():
        checks = [cell for cell in nb.cells if is_check_cell(cell)]
        assert checks, name
        for cell in checks:
            shown = "".join(output.get("data", {}).get("text/plain", "") for output in cell.outputs)
            assert "Not solved yet" in shown, f"{name}: a check cell shows {shown[:120]!r}"
        errors = [output for cell in nb.cells for output in cell.get("outputs", []) if output.output_type == "error"]
        assert not errors, f"{name}: {errors[0]['ename']}"


def nbgrader_api(course: Path) -> NbGraderAPI:
    """nbgrader's own Python API on the course folder ``course`` (offline: it reads and writes only there)."""
    config = Config()
    config.CourseDirectory.root = str(course)
    return NbGraderAPI(config=config)


def succeeded(outcome: dict) -> bool:
    assert outcome["success"], outcome.get("error") or outcome.get("log")
    return True


@pytest.fixture(scope="module")
def lesson1_course(tmp_path_factory):
    """A course folder holding lesson 1 only, its assignment generated by ``nbgrader generate_assignment``."""
    lesson = LESSONS[0]
    source = tmp_path_factory.mktemp("reference")
    shutil.copy(lesson, source / lesson.name)
    course = tmp_path_factory.mktemp("course")
    [reference] = write_nbgrader_source(source, course)
    assert succeeded(nbgrader_api(course).generate_assignment("lesson01"))
    return course, reference, course / "release" / "lesson01" / lesson.name


def test_every_check_cell_is_an_autograded_test_with_points():
    for path in LESSONS:
        nb = with_nbgrader_metadata(nbformat.read(path, as_version=4), path.stem)
        tests = [cell.metadata["nbgrader"] for cell in nb.cells if is_check_cell(cell)]
        assert tests and all(meta["grade"] and meta["locked"] and not meta["solution"] for meta in tests), path.name
        assert all(meta["points"] == POINTS_PER_CHECK for meta in tests), path.name


@pytest.mark.nbgrader
def test_nbgrader_generates_the_assignment_from_our_source_folder(tmp_path, lesson1_course):
    written = write_nbgrader_source(NOTEBOOKS, tmp_path)
    assert written[0] == tmp_path / "source" / "lesson01" / LESSONS[0].name
    assert len(written) == len(LESSONS)
    _, _, released_path = lesson1_course
    released = nbformat.read(released_path, as_version=4)
    assert BEGIN_SOLUTION not in "\n".join(cell.source for cell in released.cells)
    graded = [cell.metadata["nbgrader"]["grade_id"] for cell in released.cells if "nbgrader" in cell.metadata]
    assert graded[:2] == [f"{LESSONS[0].stem}-exercise-1", f"{LESSONS[0].stem}-check-1"]


def test_a_check_that_does_not_pass_raises_only_while_nbgrader_grades(monkeypatch):
    def unsolved(probs):
        raise NotImplementedError()

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert check_entropy(unsolved).status == "not solved"  # the learner sees a sentence, no traceback
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    with pytest.raises(NotPassed, match="Not solved yet"):
        check_entropy(unsolved)
    with pytest.raises(NotPassed, match="natural log"):
        check_entropy(lambda q: -torch.special.xlogy(q, q).sum(-1) / math.log(2))
    assert check_entropy(lambda q: -torch.special.xlogy(q, q).sum(-1)).passed


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader's own session handling
@pytest.mark.nbgrader
def test_nbgrader_autograde_gives_full_marks_when_solved_and_zero_when_not(lesson1_course):
    # Lesson 1, the quickest to run: the reference answers are the solved submission, the released
    # stubs the unsolved one; nbgrader autograde runs each in a fresh kernel and records the scores.
    course, reference, released = lesson1_course
    api = nbgrader_api(course)
    for student, notebook in (("solved", reference), ("unsolved", released)):
        (course / "submitted" / student / "lesson01").mkdir(parents=True)
        shutil.copy(notebook, course / "submitted" / student / "lesson01" / notebook.name)
        assert succeeded(api.autograde("lesson01", student))
    exercises = sum(is_solution_cell(cell) for cell in nbformat.read(LESSONS[0], as_version=4).cells)
    with Gradebook(api.coursedir.db_url) as gradebook:
        solved, unsolved = (gradebook.find_submission("lesson01", student) for student in ("solved", "unsolved"))
        assert solved.max_score == exercises * POINTS_PER_CHECK
        assert solved.score == solved.max_score
        assert unsolved.score == 0


def test_an_exercise_without_a_check_cell_is_refused():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"),
                                         nbformat.v4.new_code_cell("print(f())")])
    with pytest.raises(ValueError, match="exercise 1 .* is not followed by a check cell"):
        with_nbgrader_metadata(nb, "lesson")


def test_an_unclosed_solution_is_named(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1"),
                                         nbformat.v4.new_code_cell("check_f(f)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "01_broken.ipynb")
    with pytest.raises(ValueError, match=re.escape("01_broken.ipynb: no end solution")):
        write_student_edition(tmp_path, tmp_path / "out")


def test_an_empty_source_folder_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no lesson notebooks"):
        write_student_edition(tmp_path, tmp_path / "out")


def test_a_notebook_or_folder_of_the_wrong_kind_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"^nb must be a NotebookNode, got 'NOTEBOOKS/01_x.ipynb'"):
        with_nbgrader_metadata("NOTEBOOKS/01_x.ipynb", "lesson")
    with pytest.raises(ValueError, match=r"^stem must be a str, got 1"):
        with_nbgrader_metadata(nbformat.v4.new_notebook(), 1)
    with pytest.raises(ValueError, match=r"^outdir must be a str or a PathLike, got None"):
        write_student_edition(tmp_path, None)
