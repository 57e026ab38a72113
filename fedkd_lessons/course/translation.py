"""The Chinese edition (中文版): per-cell translation catalogs, their check, and the build.

The English notebooks and ``README.md`` are the one source. Each has a catalog,
``translations/zh/<notebook stem>.json`` or ``translations/zh/README.json``::

    {"source": "notebooks/01_temperature_softmax.ipynb",
     "entries": [{"id": "cell-03", "en": "<English markdown, exactly>", "zh": "<中文 Markdown>"}, ...]}

- A notebook's entries are its markdown cells, by cell id, in notebook order.
- ``README.md`` is cut into blocks: one starts at every line beginning with ``#`` (a heading;
  ``#`` lines inside ``` fences do not count) and runs to the next; any text before the first
  heading is a block too. A block's id is ``"readme-"`` + the first 12 hex digits of the sha256 of
  its text (every line of it, newlines and trailing blank lines included).

An entry is **stale** when its ``en`` is no longer the English source of its id: the cell's text
changed, or no cell/block has that id any more (a README block whose text changed gets a new id, so
its old entry is stale and the block itself is missing). A cell or block with no entry is
**missing**; an entry whose ``zh`` is blank is **untranslated**. ``build`` writes every source whose
catalog has none of the three, and names the ids of the others.

Command line, from the repository root::

    python -m fedkd_lessons.course.translation check   # missing, untranslated and stale entries, and
                                                # built files that are out of date; exit 1 if any
    python -m fedkd_lessons.course.translation build   # notebooks/zh/NN_name.ipynb and README.zh.md
    python -m fedkd_lessons.course.translation stubs [SOURCE...]   # add {"zh": ""} entries for missing cells
    python -m fedkd_lessons.course.translation accept notebooks/01_temperature_softmax.ipynb cell-03

``stubs`` never drops or rewrites a translation: entries are put in source order, a missing
cell/block gets an entry with ``"zh": ""`` for a translator to fill, and a stale entry is kept
exactly as it was (old ``en``, old ``zh``) so that ``check`` keeps showing how the English changed.
Entries whose id has disappeared (a deleted cell, an edited README block) are moved to the end of
the catalog; reuse their ``zh`` in the new entry, then delete them. Once a stale notebook entry's
``zh`` says what the new English says, ``accept SOURCE ID...`` copies the current English into its
``en`` (README entries need no ``accept``: their new block has its own new entry).

The built Chinese notebook is the English one with each markdown cell's source replaced by its
``zh``: code cells, outputs, cell ids and metadata, and widget state are untouched, and the
notebook metadata gets ``"language": "zh"``. Relative links need no rewriting: lesson markdown
links only to the web, and README.zh.md sits beside README.md.
"""

import argparse
import copy
import difflib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from fedkd_lessons.engine.validation import Constraint, Each, Instance, Optional, checked_arguments

LANGUAGE = "zh"
CATALOG_FOLDER = Path("translations") / LANGUAGE
NOTEBOOK_FOLDER = Path("notebooks")
CHINESE_NOTEBOOK_FOLDER = NOTEBOOK_FOLDER / LANGUAGE
README = Path("README.md")
CHINESE_README = Path(f"README.{LANGUAGE}.md")
BUILD_COMMAND = "python -m fedkd_lessons.course.translation build"
PATH = Instance((str, os.PathLike))
NOTEBOOK = Instance(nbformat.NotebookNode)  # as nbformat.read gives it
TEXT = Instance(str)


# ---------------------------------------------------------------------------------------------
# Sources: (id, English text) pairs in source order
# ---------------------------------------------------------------------------------------------

@checked_arguments(english_nb=NOTEBOOK)
def markdown_cells(english_nb) -> list[tuple[str, str]]:
    """``[(cell id, source), ...]`` of the notebook's markdown cells, in order.
    Raises ``ValueError`` if a markdown cell has no id or two share one."""
    pairs = []
    for index, cell in enumerate(english_nb.cells):
        if cell.cell_type != "markdown":
            continue
        cell_id = cell.get("id")
        if not cell_id:
            raise ValueError(f"english_nb: markdown cell {index} has no id (nbformat >= 4.5 gives every cell one)")
        pairs.append((cell_id, cell.source))
    ids = [cell_id for cell_id, _ in pairs]
    duplicates = sorted({cell_id for cell_id in ids if ids.count(cell_id) > 1})
    if duplicates:
        raise ValueError(f"english_nb: markdown cell ids used twice: {duplicates}")
    return pairs


@checked_arguments(block=TEXT)
def readme_block_id(block: str) -> str:
    """``"readme-"`` + the first 12 hex digits of sha256(block, UTF-8)."""
    return "readme-" + hashlib.sha256(block.encode("utf-8")).hexdigest()[:12]


@checked_arguments(readme_text=TEXT)
def readme_blocks(readme_text: str) -> list[tuple[str, str]]:
    """``[(block id, block text), ...]``: the README cut before every heading line (a line starting
    with ``#`` outside ``` or ~~~ fences). Joining the texts gives ``readme_text`` back."""
    blocks, current, fenced = [], [], False
    for line in readme_text.splitlines(keepends=True):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if line.startswith("#") and not fenced and current:
            blocks.append("".join(current))
            current = []
        current.append(line)
    if current:
        blocks.append("".join(current))
    return [(readme_block_id(block), block) for block in blocks]


# ---------------------------------------------------------------------------------------------
# Catalogs
# ---------------------------------------------------------------------------------------------

@checked_arguments(repo_root=PATH, source=PATH)
def catalog_path(repo_root, source) -> Path:
    """``translations/zh/<stem>.json`` for ``notebooks/<stem>.ipynb``; ``.../README.json`` for README.md."""
    return Path(repo_root) / CATALOG_FOLDER / f"{Path(source).stem}.json"


def validate_catalog(catalog, name: str = "catalog") -> dict:
    """Check the catalog's shape: ``{"source": str, "entries": [{"id", "en", "zh"}: str, ...]}``
    with unique ids. Returns it; raises ``ValueError`` naming ``name`` and the bad entry."""
    if not isinstance(catalog, dict) or not isinstance(catalog.get("entries"), list):
        raise ValueError(f"{name}: expected an object {{'source': ..., 'entries': [...]}}, got {type(catalog).__name__}")
    seen = set()
    for index, entry in enumerate(catalog["entries"]):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) for key in ("id", "en", "zh")):
            raise ValueError(f"{name}: entry {index} needs the string fields 'id', 'en' and 'zh', got {entry!r:.120}")
        if entry["id"] in seen:
            raise ValueError(f"{name}: id {entry['id']!r} has two entries")
        seen.add(entry["id"])
    return catalog


@checked_arguments(path=PATH)
def load_catalog(path) -> dict:
    """Read and validate one catalog file (UTF-8 JSON)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no catalog {path} (`python -m fedkd_lessons.course.translation stubs` starts one)")
    try:
        catalog = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    return validate_catalog(catalog, str(path))


class Catalog(Constraint):
    """A catalog of the shape :func:`validate_catalog` checks (the declared check of a catalog argument)."""

    description = "a catalog {'source': ..., 'entries': [{'id', 'en', 'zh'}, ...]}"

    def check(self, value, name: str):
        return validate_catalog(value, name)

    def bad_examples(self) -> list:
        return [[], {"source": "x", "entries": [{"id": "a", "en": ""}]}]


CATALOG = Catalog()


@checked_arguments(path=PATH, catalog=CATALOG)
def write_catalog(path, catalog) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Comparing a catalog with its source
# ---------------------------------------------------------------------------------------------

@checked_arguments(old=TEXT, new=TEXT)
def first_difference(old: str, new: str) -> str:
    """A one-line hint: the first line where ``old`` and ``new`` differ."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    for number, (was, now) in enumerate(zip(old_lines, new_lines), start=1):
        if was != now:
            return f"line {number} was {was[:70]!r}, now {now[:70]!r}"
    number = min(len(old_lines), len(new_lines)) + 1
    if len(old_lines) != len(new_lines):
        longer, which = (old_lines, "removed") if len(old_lines) > len(new_lines) else (new_lines, "added")
        return f"line {number} {which}: {longer[number - 1][:70]!r}"
    return "whitespace at the end differs"


@dataclass
class SourceReport:
    """What a catalog lacks against its source. ``stale`` maps id -> a one-line hint."""
    source: str
    catalog: str
    missing: list[str] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)
    outdated_build: str | None = None  # the built file, if it differs from what `build` makes now
    first_lines: dict[str, str] = field(default_factory=dict)  # id -> its English's first line, for display

    @property
    def ok(self) -> bool:
        return not (self.missing or self.untranslated or self.stale or self.outdated_build)

    def __str__(self) -> str:
        if self.ok:
            return f"{self.source}: ok"
        counts = [f"{len(items)} {name}" for name, items in
                  (("missing", self.missing), ("untranslated", self.untranslated), ("stale", self.stale)) if items]
        lines = [f"{self.source} ({self.catalog}): " + (", ".join(counts) or "translations complete")]
        lines += [f"  missing       {entry_id}  {self.first_lines.get(entry_id, '')[:60]!r}" for entry_id in self.missing]
        lines += [f"  untranslated  {entry_id} (its zh is empty)" for entry_id in self.untranslated]
        lines += [f"  stale         {entry_id}: {hint}" for entry_id, hint in self.stale.items()]
        if self.outdated_build:
            lines.append(f"  {self.outdated_build} is out of date: run `{BUILD_COMMAND}`")
        return "\n".join(lines)


@checked_arguments(sources=Each(Instance(tuple), min_length=0), catalog=CATALOG, source=TEXT,
                   catalog_name=TEXT)
def compare(sources: list[tuple[str, str]], catalog, source: str = "", catalog_name: str = "") -> SourceReport:
    """Check ``catalog`` against ``sources`` (``[(id, English text), ...]``)."""
    report = SourceReport(source, catalog_name)
    entries = {entry["id"]: entry for entry in catalog["entries"]}
    current = dict(sources)
    for entry_id, english in sources:
        entry = entries.get(entry_id)
        if entry is None:
            report.missing.append(entry_id)
            report.first_lines[entry_id] = next((line for line in english.splitlines() if line.strip()), "")
        elif entry["en"] != english:
            report.stale[entry_id] = first_difference(entry["en"], english)
        elif not entry["zh"].strip():
            report.untranslated.append(entry_id)
    for entry_id, entry in entries.items():
        if entry_id not in current:
            hint = "no longer in the source"
            unclaimed = [(i, text) for i, text in sources if i not in entries]
            if unclaimed:  # the nearest new cell/block: most likely the same text, edited
                ratio, nearest, text = max((difflib.SequenceMatcher(None, entry["en"], text).ratio(), i, text)
                                           for i, text in unclaimed)
                if ratio > 0.5:
                    hint += f"; probably now {nearest} ({first_difference(entry['en'], text)})"
            report.stale[entry_id] = hint
    return report


@checked_arguments(report=Instance(SourceReport), argument=TEXT)
def require_complete(report: SourceReport, argument: str) -> None:
    problems = [f"missing {report.missing}" if report.missing else "",
                f"untranslated {report.untranslated}" if report.untranslated else "",
                f"stale {sorted(report.stale)}" if report.stale else ""]
    problems = [problem for problem in problems if problem]
    if problems:
        details = "\n".join(f"  {entry_id}: {hint}" for entry_id, hint in report.stale.items())
        raise ValueError(f"{argument} does not translate {report.source or 'the source'}: " + "; ".join(problems)
                         + ("\n" + details if details else "")
                         + "\nFill them in (`python -m fedkd_lessons.course.translation stubs` adds empty entries), "
                         "then run `python -m fedkd_lessons.course.translation check`.")


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------

@checked_arguments(english_nb=NOTEBOOK, catalog=CATALOG, source=TEXT)
def build_chinese_notebook(english_nb, catalog, source: str = ""):
    """A copy of ``english_nb`` (an nbformat v4 notebook) whose markdown cells carry the catalog's
    Chinese; code cells, outputs, cell ids, cell and notebook metadata and widget state are
    unchanged, and ``metadata["language"] = "zh"``. Raises ``ValueError`` listing the missing,
    untranslated and stale cell ids."""
    require_complete(compare(markdown_cells(english_nb), catalog, source), "catalog")
    chinese = {entry["id"]: entry["zh"] for entry in catalog["entries"]}
    nb = copy.deepcopy(english_nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = chinese[cell.id]
    nb.metadata["language"] = LANGUAGE
    nbformat.validate(nb)
    return nb


@checked_arguments(readme_text=TEXT, catalog=CATALOG)
def build_chinese_readme(readme_text: str, catalog) -> str:
    """``readme_text`` with each block replaced by its catalog Chinese. Each block keeps the English
    block's trailing blank lines, so blocks stay apart however the translator ended them.
    Raises ``ValueError`` listing the missing, untranslated and stale block ids."""
    blocks = readme_blocks(readme_text)
    require_complete(compare(blocks, catalog, str(README)), "catalog")
    chinese = {entry["id"]: entry["zh"] for entry in catalog["entries"]}
    parts = []
    for block_id, english in blocks:
        ending = english[len(english.rstrip("\n")):]
        parts.append(chinese[block_id].rstrip("\n") + ending)
    return "".join(parts)


@checked_arguments(nb=NOTEBOOK)
def notebook_text(nb) -> str:
    """The notebook as ``nbformat.write`` stores it."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


@checked_arguments(repo_root=PATH)
def english_notebooks(repo_root) -> list[Path]:
    return sorted((Path(repo_root) / NOTEBOOK_FOLDER).glob("[0-9][0-9]_*.ipynb"))


@checked_arguments(repo_root=PATH)
def built_files(repo_root) -> tuple[dict[Path, str], list[str]]:
    """``({output path: text}, [error, ...])``: every Chinese file the catalogs can build now, and
    for each source they cannot, why (missing, untranslated or stale ids)."""
    root = Path(repo_root)
    outputs, errors = {}, []
    for path in english_notebooks(root):
        try:
            catalog = load_catalog(catalog_path(root, path))
            nb = build_chinese_notebook(nbformat.read(path, as_version=4), catalog, str(path.relative_to(root)))
            outputs[root / CHINESE_NOTEBOOK_FOLDER / path.name] = notebook_text(nb)
        except (ValueError, FileNotFoundError) as error:
            errors.append(str(error))
    try:
        catalog = load_catalog(catalog_path(root, README))
        outputs[root / CHINESE_README] = build_chinese_readme((root / README).read_text(encoding="utf-8"), catalog)
    except (ValueError, FileNotFoundError) as error:
        errors.append(str(error))
    return outputs, errors


@checked_arguments(repo_root=PATH)
def build(repo_root) -> tuple[list[Path], list[str]]:
    """Write ``notebooks/zh/*.ipynb`` and ``README.zh.md`` for every source whose catalog is
    complete; return the paths written and, for the others, why not."""
    outputs, errors = built_files(repo_root)
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(outputs), errors


# ---------------------------------------------------------------------------------------------
# Checking and stubs
# ---------------------------------------------------------------------------------------------

@checked_arguments(repo_root=PATH)
def sources_of(repo_root) -> list[tuple[str, list[tuple[str, str]], Path, Path]]:
    """``[(source name, [(id, English)], catalog path, built path), ...]`` for every notebook and README."""
    root = Path(repo_root)
    found = []
    for path in english_notebooks(root):
        found.append((str(path.relative_to(root)), markdown_cells(nbformat.read(path, as_version=4)),
                      catalog_path(root, path), root / CHINESE_NOTEBOOK_FOLDER / path.name))
    found.append((str(README), readme_blocks((root / README).read_text(encoding="utf-8")),
                  catalog_path(root, README), root / CHINESE_README))
    return found


@checked_arguments(repo_root=PATH)
def check_catalogs(repo_root) -> list[SourceReport]:
    """One ``SourceReport`` per source (the lesson notebooks, then README.md): missing,
    untranslated and stale entries, and whether the built Chinese file is what ``build`` makes now."""
    root = Path(repo_root)
    reports = []
    for source, pairs, catalog_file, built in sources_of(root):
        relative = str(catalog_file.relative_to(root))
        if not catalog_file.exists():
            report = compare(pairs, {"source": source, "entries": []}, source, f"{relative}: no such file")
        else:
            report = compare(pairs, load_catalog(catalog_file), source, relative)
        if not (report.missing or report.untranslated or report.stale):
            if source == str(README):
                expected = build_chinese_readme((root / README).read_text(encoding="utf-8"), load_catalog(catalog_file))
            else:
                expected = notebook_text(build_chinese_notebook(nbformat.read(root / source, as_version=4),
                                                                load_catalog(catalog_file), source))
            if not built.exists() or built.read_text(encoding="utf-8") != expected:
                report.outdated_build = str(built.relative_to(root))
        reports.append(report)
    return reports


@checked_arguments(repo_root=PATH, only=Optional(Each(PATH, min_length=0)))
def add_stubs(repo_root, only=None) -> list[Path]:
    """Add ``{"id", "en", "zh": ""}`` for every missing cell/block, entries in source order, stale
    entries kept as they are, entries of vanished ids moved to the end. ``only``: source paths
    (e.g. ``["notebooks/01_temperature_softmax.ipynb", "README.md"]``) to limit it to; default all.
    Returns the catalogs changed."""
    root = Path(repo_root)
    wanted = None if not only else {Path(name).name for name in only}
    known = {Path(source).name for source, *_ in sources_of(root)}
    unknown = sorted((wanted or set()) - known)
    if unknown:
        raise ValueError(f"only: {unknown} are not lesson notebooks or README.md; known: {sorted(known)}")
    changed = []
    for source, pairs, catalog_file, _ in sources_of(root):
        if wanted is not None and Path(source).name not in wanted:
            continue
        catalog = load_catalog(catalog_file) if catalog_file.exists() else {"source": source, "entries": []}
        entries = {entry["id"]: entry for entry in catalog["entries"]}
        current = dict(pairs)
        ordered = [entries.get(entry_id, {"id": entry_id, "en": english, "zh": ""}) for entry_id, english in pairs]
        ordered += [entry for entry_id, entry in entries.items() if entry_id not in current]
        updated = {"source": source, "entries": ordered}
        if updated != catalog or not catalog_file.exists():
            write_catalog(catalog_file, updated)
            changed.append(catalog_file)
    return changed


@checked_arguments(repo_root=PATH, source=PATH, ids=Each(TEXT))
def accept(repo_root, source, ids) -> Path:
    """Mark stale notebook entries as translated from the current English: copy the cell's current
    source into each entry's ``en``. Use it after updating their ``zh``. Returns the catalog path."""
    root = Path(repo_root)
    source = Path(source)
    if source.name == README.name:
        raise ValueError("source: README entries need no accept; an edited block has a new id and its own entry "
                         "(run `stubs`), reuse the old entry's zh there and delete the old entry")
    path = source if source.is_absolute() else root / source
    if not path.exists():
        raise ValueError(f"source: no notebook {path}")
    current = dict(markdown_cells(nbformat.read(path, as_version=4)))
    catalog_file = catalog_path(root, path)
    catalog = load_catalog(catalog_file)
    entries = {entry["id"]: entry for entry in catalog["entries"]}
    for entry_id in ids:
        if entry_id not in current:
            raise ValueError(f"ids: {entry_id!r} is not a markdown cell of {source}")
        if entry_id not in entries:
            raise ValueError(f"ids: {entry_id!r} has no entry in {catalog_file} (run `stubs` and translate it)")
        entries[entry_id]["en"] = current[entry_id]
    write_catalog(catalog_file, catalog)
    return catalog_file


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedkd_lessons.course.translation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="list missing, untranslated and stale entries and outdated builds")
    commands.add_parser("build", help="write notebooks/zh/*.ipynb and README.zh.md")
    stubbing = commands.add_parser("stubs", help='add {"zh": ""} entries for cells and blocks that have none')
    stubbing.add_argument("sources", nargs="*", help="only these notebooks / README.md (default: all)")
    accepting = commands.add_parser("accept", help="take the current English as the en of updated entries")
    accepting.add_argument("source", help="an English notebook, e.g. notebooks/01_temperature_softmax.ipynb")
    accepting.add_argument("ids", nargs="+", help="cell ids whose zh now translates the current English")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not (root / README).exists() or not (root / NOTEBOOK_FOLDER).is_dir():
        parser.error(f"--root: {root.resolve()} has no README.md and notebooks/; run from the repository root")
    if args.command == "check":
        reports = check_catalogs(root)
        for report in reports:
            print(report)
        if all(report.ok for report in reports):
            return 0
        print(f"\nTranslate in {CATALOG_FOLDER}/ (`stubs` adds empty entries), then run `{BUILD_COMMAND}`.")
        return 1
    if args.command == "build":
        paths, errors = build(root)
        for path in paths:
            print("wrote", path)
        for error in errors:
            print(f"\nnot built: {error}", file=sys.stderr)
        return 1 if errors else 0
    if args.command == "stubs":
        paths = add_stubs(root, args.sources)
    else:
        paths = [accept(root, args.source, args.ids)]
    for path in paths:
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
