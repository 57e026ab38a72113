"""Teaching with the course: the student edition and an nbgrader source folder.

    python -m fedkd_lessons.course.classroom student-edition OUTDIR   # solutions -> stubs, outputs cleared
    python -m fedkd_lessons.course.classroom student-edition OUTDIR --language zh   # the same from notebooks/zh
    python -m fedkd_lessons.course.classroom nbgrader-source COURSEDIR   # for nbgrader's own workflow

Exercise convention (every lesson): the answer sits between nbgrader's ``### BEGIN SOLUTION`` and
``### END SOLUTION`` inside a function; the next cell calls a checker from
``fedkd_lessons.exercises``. The cells are given nbgrader's cell metadata here, so the reference
notebooks stay plain and nbgrader's own preprocessors (``ClearSolutions``, ``ClearOutput``,
``LockCells``) do the work, exactly as ``nbgrader generate_assignment`` would.

Autograding: each check cell is an nbgrader *autograded test* cell worth ``POINTS_PER_CHECK``
points. nbgrader gives a test cell its points when it runs without error; our checkers raise
(``fedkd_lessons.exercises.feedback.NotPassed``) when nbgrader is grading and the answer does not
pass, so ``nbgrader autograde`` gives a solved exercise full points and an unsolved or wrong one zero.
"""

import argparse
import copy
import os
import re
from pathlib import Path

import nbformat
from nbgrader.preprocessors import ClearOutput, ClearSolutions, LockCells

from fedkd_lessons.engine.validation import Instance, checked_arguments

BEGIN_SOLUTION = "### BEGIN SOLUTION"
SOURCES = {"en": "notebooks", "zh": "notebooks/zh"}  # the reference notebooks of each language
CHECK_CALL = re.compile(r"\bcheck_\w+\(")
POINTS_PER_CHECK = 1  # every exercise counts alike: a lesson's total is its number of exercises
PATH = Instance((str, os.PathLike))
NOTEBOOK = Instance(nbformat.NotebookNode)  # as nbformat.read gives it


def is_solution_cell(cell) -> bool:
    return cell.cell_type == "code" and BEGIN_SOLUTION in cell.source


def is_check_cell(cell) -> bool:
    return cell.cell_type == "code" and BEGIN_SOLUTION not in cell.source and bool(CHECK_CALL.search(cell.source))


@checked_arguments(nb=NOTEBOOK, stem=Instance(str))
def with_nbgrader_metadata(nb, stem: str):
    """A copy of ``nb`` whose exercise cells carry nbgrader metadata: answer cells are solution
    cells, check cells are read-only autograded tests worth ``POINTS_PER_CHECK`` points each.
    Raises ``ValueError`` if an answer has no check cell after it."""
    nb = copy.deepcopy(nb)
    exercise = 0
    for index, cell in enumerate(nb.cells):
        if is_solution_cell(cell):
            exercise += 1
            following = nb.cells[index + 1] if index + 1 < len(nb.cells) else None
            if following is None or not is_check_cell(following):
                raise ValueError(f"{stem}: exercise {exercise} (cell {index}) is not followed by a check cell")
            cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                         "grade_id": f"{stem}-exercise-{exercise}", "schema_version": 3}
            following.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                              "points": POINTS_PER_CHECK, "grade_id": f"{stem}-check-{exercise}",
                                              "schema_version": 3}
    return nb


@checked_arguments(nb=NOTEBOOK, stem=Instance(str))
def student_version(nb, stem: str):
    """``nb`` with every solution replaced by ``raise NotImplementedError()``, all outputs and
    widget state cleared, and the check cells locked (nbgrader's preprocessors)."""
    nb = with_nbgrader_metadata(nb, stem)
    resources = {}
    for preprocessor in (ClearSolutions(), ClearOutput(), LockCells()):
        nb, resources = preprocessor.preprocess(nb, resources)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # nbconvert's run timestamps
    return nb


@checked_arguments(source=PATH)
def notebooks_in(source) -> list[Path]:
    paths = sorted(Path(source).glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ValueError(f"no lesson notebooks (NN_name.ipynb) found in {source}")
    return paths


@checked_arguments(source=PATH, outdir=PATH)
def write_student_edition(source, outdir) -> list[Path]:
    """Write the student edition of every notebook in ``source`` into ``outdir``; return the paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks_in(source):
        try:
            nb = student_version(nbformat.read(path, as_version=4), path.stem)
        except RuntimeError as error:  # nbgrader's own message, e.g. an unclosed solution region
            raise ValueError(f"{path.name}: {error}") from error
        nbformat.validate(nb)
        nbformat.write(nb, outdir / path.name)
        written.append(outdir / path.name)
    return written


@checked_arguments(source=PATH, course_dir=PATH)
def write_nbgrader_source(source, course_dir) -> list[Path]:
    """Lay the reference notebooks out as nbgrader expects, ``COURSEDIR/source/lessonNN/NN_name.ipynb``,
    with nbgrader cell metadata, ready for ``nbgrader generate_assignment lessonNN``."""
    written = []
    for path in notebooks_in(source):
        target = Path(course_dir) / "source" / f"lesson{path.name[:2]}" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(with_nbgrader_metadata(nbformat.read(path, as_version=4), path.stem), target)
        written.append(target)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedkd_lessons.course.classroom", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    student = commands.add_parser("student-edition", help="notebooks without solutions or outputs")
    student.add_argument("outdir")
    grader = commands.add_parser("nbgrader-source", help="reference notebooks in nbgrader's source/ layout")
    grader.add_argument("course_dir")
    for command in (student, grader):
        command.add_argument("--language", choices=sorted(SOURCES), default="en",
                             help="build from the English notebooks or the Chinese edition (notebooks/zh)")
        command.add_argument("--source", help="folder of the reference notebooks (default: the language's, "
                                              + ", ".join(f"{language}: {folder}" for language, folder in SOURCES.items()) + ")")
    args = parser.parse_args(argv)
    args.source = args.source or SOURCES[args.language]
    if args.command == "student-edition":
        paths = write_student_edition(args.source, args.outdir)
    else:
        paths = write_nbgrader_source(args.source, args.course_dir)
    for path in paths:
        print("wrote", path)


if __name__ == "__main__":
    main()
