"""The Chinese edition (中文版): complete and current catalogs, built files up to date, code and
outputs the English ones, the seed article's terms; the staleness detection itself on small
hand-made notebooks; and the Chinese student edition. Nothing here executes a notebook."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from test_classroom import assert_changes_only_the_answers, assert_no_solutions_and_no_outputs

from fedkd_lessons.course import classroom
from fedkd_lessons.course.translation import (BUILD_COMMAND, CHINESE_NOTEBOOK_FOLDER, CHINESE_README, README, accept,
                                              add_stubs, build_chinese_notebook, build_chinese_readme, built_files,
                                              catalog_path, check_catalogs, compare, load_catalog, main,
                                              markdown_cells, readme_block_id, readme_blocks, validate_catalog)

ROOT = Path(__file__).resolve().parents[2]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOURCES = [path.relative_to(ROOT) for path in LESSONS] + [README]
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")


def english_pairs(source: Path) -> list[tuple[str, str]]:
    if source == README:
        return readme_blocks((ROOT / README).read_text(encoding="utf-8"))
    return markdown_cells(nbformat.read(ROOT / source, as_version=4))


def catalog_of(source: Path) -> dict:
    path = catalog_path(ROOT, source)
    if not path.exists():
        pytest.fail(f"no catalog {path.relative_to(ROOT)}: run `python -m fedkd_lessons.course.translation stubs "
                    f"{source}` and translate it")
    return load_catalog(path)


# ---------------------------------------------------------------------------------------------
# The real catalogs and the built edition
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_every_markdown_cell_has_a_current_chinese_entry(source):
    report = compare(english_pairs(source), catalog_of(source), str(source),
                     str(catalog_path(ROOT, source).relative_to(ROOT)))
    current = not (report.missing or report.untranslated or report.stale)
    assert current, f"{report}\n(`python -m fedkd_lessons.course.translation check` lists these; `stubs` adds entries for new cells)"


def complete(source: Path) -> bool:
    path = catalog_path(ROOT, source)
    if not path.exists():
        return False
    report = compare(english_pairs(source), load_catalog(path), str(source))
    return not (report.missing or report.untranslated or report.stale)


@pytest.fixture(scope="module")
def builder_outputs() -> dict:
    """What `build` would write now: {path: text} of every source whose catalog is complete."""
    return built_files(ROOT)[0]


@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_the_built_chinese_file_is_what_the_builder_makes_now(source, builder_outputs):
    if not complete(source):
        pytest.skip(f"{source}'s catalog is incomplete (test_every_markdown_cell_has_a_current_chinese_entry)")
    built = ROOT / (CHINESE_README if source == README else CHINESE_NOTEBOOK_FOLDER / source.name)
    outputs = builder_outputs
    assert built.exists(), f"{built.relative_to(ROOT)} is missing: run `{BUILD_COMMAND}`"
    assert built.read_text(encoding="utf-8") == outputs[built], (
        f"{built.relative_to(ROOT)} is out of date (its English source or catalog changed since it was built): "
        f"run `{BUILD_COMMAND}`")


def test_notebooks_zh_holds_only_built_lessons():
    english = {path.name for path in LESSONS}
    for path in (ROOT / CHINESE_NOTEBOOK_FOLDER).glob("*.ipynb"):
        assert path.name in english, f"{path.relative_to(ROOT)} has no English notebook: delete it"


def chinese_lessons():
    return [path for path in LESSONS if (ROOT / CHINESE_NOTEBOOK_FOLDER / path.name).exists()]


def prose(markdown: str) -> str:
    """The words of ``markdown`` that a translation must translate: without fenced and inline code,
    maths, links' targets and HTML tags."""
    for pattern in (r"```.*?```", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$", r"\]\([^)]*\)", r"<[^>]+>", r"https?://\S+"):
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    return markdown


def needs_translation(english: str) -> bool:
    """The rule for which cells must contain Chinese: any English word of three letters or more
    outside code, maths, link targets and HTML. A cell of pure code or maths is exempt."""
    return bool(re.search(r"[A-Za-z]{3,}", prose(english)))


@pytest.mark.parametrize("english_path", chinese_lessons(), ids=lambda path: path.name)
def test_a_chinese_notebook_is_its_english_one_with_chinese_markdown(english_path):
    english = nbformat.read(english_path, as_version=4)
    chinese = nbformat.read(ROOT / CHINESE_NOTEBOOK_FOLDER / english_path.name, as_version=4)
    assert chinese.metadata.get("language") == "zh"
    assert {key: value for key, value in chinese.metadata.items() if key != "language"} == english.metadata, \
        f"{english_path.name}: the notebook metadata (widget state) differ from the English: run `{BUILD_COMMAND}`"
    same_length = len(chinese.cells) == len(english.cells)
    assert same_length, f"{english_path.name}: {len(chinese.cells)} cells, the English {len(english.cells)}: run `{BUILD_COMMAND}`"
    for ours, theirs in zip(english.cells, chinese.cells):
        assert (theirs.cell_type, theirs.get("id")) == (ours.cell_type, ours.get("id"))
        if ours.cell_type == "markdown":
            assert {**theirs, "source": ""} == {**ours, "source": ""}, f"{ours.id}: only the text may differ"
            if needs_translation(ours.source):
                assert CJK.search(theirs.source), f"{english_path.name} {ours.id} has no Chinese: {theirs.source[:80]!r}"
        else:
            assert theirs == ours, (f"{english_path.name} {ours.get('id')}: a code cell or its outputs differ from the "
                                    f"English notebook's: run `{BUILD_COMMAND}`")


def markdown_skeleton(markdown: str) -> dict:
    """What a translation must keep: heading levels in order, code spans, maths, link targets (but
    in-page #anchors, which follow the translated headings), <details> blocks and table rows."""
    no_fences = re.sub(r"```.*?```", "", markdown, flags=re.S)

    def spans(pattern):  # a span may be wrapped over two lines; compare it on one
        return sorted({re.sub(r"\s+", " ", span) for span in re.findall(pattern, no_fences, flags=re.S)})

    return {"headings": [len(line) - len(line.lstrip("#")) for line in no_fences.splitlines() if line.startswith("#")],
            "code": spans(r"`[^`]+`"),
            "maths": spans(r"\$\$.+?\$\$|\$[^$]+\$"),
            # in-page anchors follow the translated headings (test_readme_anchors_lead_to_headings checks them)
            "links": sorted(set(re.findall(r"\]\(([^)#][^)]*)\)", no_fences))),
            "details": no_fences.count("<details"),
            "table rows": sum(line.lstrip().startswith("|") for line in no_fences.splitlines())}


def translated_entries(source):
    """The catalog file of ``source`` and its entries that have a translation (skip if no catalog)."""
    catalog_file = catalog_path(ROOT, source)
    if not catalog_file.exists():
        pytest.skip(f"no catalog {catalog_file.relative_to(ROOT)} yet")
    return catalog_file, [entry for entry in load_catalog(catalog_file)["entries"] if entry["zh"].strip()]


@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_translations_keep_code_maths_links_and_structure(source):
    catalog_file, entries = translated_entries(source)
    problems = []
    for entry in entries:
        english, chinese = markdown_skeleton(entry["en"]), markdown_skeleton(entry["zh"])
        for part, kept in english.items():
            if isinstance(kept, list) and part != "headings":
                lost = [item for item in kept if item not in chinese[part]]
                if lost:
                    problems.append(f"{entry['id']}: {part} not kept: {lost}")
            elif kept != chinese[part]:
                problems.append(f"{entry['id']}: {part}: English {kept}, Chinese {chinese[part]}")
    assert not problems, f"{catalog_file.relative_to(ROOT)}:\n" + "\n".join(problems)


# The seed article's terms (and the README glossary's): wherever the English prose says the term,
# the Chinese says it. Lowercase and case-sensitive, so paper titles in Title Case are not matched.
GLOSSARY = {
    r"knowledge distillation": "知识蒸馏",
    r"\btemperatures?\b": "温度",
    r"\bsoft targets?\b": "软目标",
    r"\bhard targets?\b": "硬目标",
    r"\bteachers?\b": "教师",
    r"\bstudents?\b": "学生",
    r"federated learning": "联邦学习",
    r"global model": "全局模型",
    r"local adaptation": "本地适应",
    r"\bfine-tun": "微调",
    r"\boverfit": "过拟合",
    r"public dataset": "公开数据集",
    r"\bconsensus\b": "共识",
    r"\bpersonali[sz]": "个性化",
    r"multi-task learning": "多任务学习",
    r"\bentropy\b": "熵",
}


@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_translations_use_the_seed_articles_terms(source):
    catalog_file, entries = translated_entries(source)
    problems = []
    for entry in entries:
        english = prose(entry["en"])
        for term, chinese in GLOSSARY.items():
            if re.search(term, english) and chinese not in entry["zh"]:
                problems.append(f"{entry['id']}: the English says {re.search(term, english).group()!r}, "
                                f"the Chinese lacks {chinese}")
    assert not problems, f"{catalog_file.relative_to(ROOT)}:\n" + "\n".join(problems)


def test_the_glossary_test_can_fail():
    entry = {"id": "cell-01", "en": "A student learns from the teacher's soft targets.", "zh": "学生向老师学习。"}
    english = prose(entry["en"])
    missing = [chinese for term, chinese in GLOSSARY.items() if re.search(term, english) and chinese not in entry["zh"]]
    assert missing == ["软目标", "教师"]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (CJK kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lstrip("#").strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("readme", [README, CHINESE_README], ids=str)
def test_readme_anchors_lead_to_headings(readme):
    if not (ROOT / readme).exists():
        pytest.skip(f"{readme} is not built yet")
    text = (ROOT / readme).read_text(encoding="utf-8")
    anchors = {github_anchor(heading) for _, block in readme_blocks(text) for heading in block.splitlines()[:1]}
    broken = [link for link in re.findall(r"\]\(#([^)]+)\)", text) if link not in anchors]
    assert not broken, f"{readme}: links to #{broken}, but its headings' anchors are {sorted(anchors)}"


def test_readme_links_to_the_chinese_edition():
    head = (ROOT / README).read_text(encoding="utf-8").splitlines()[:5]
    assert any("README.zh.md" in line and "notebooks/zh" in line for line in head)


# ---------------------------------------------------------------------------------------------
# The tooling, on small hand-made sources
# ---------------------------------------------------------------------------------------------

def small_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Lesson 9\n\nThe temperature $T$.", id="cell-00"),
                nbformat.v4.new_code_cell("print(1 + 1)", id="cell-01", execution_count=1,
                                          outputs=[nbformat.v4.new_output("stream", text="2\n")]),
                nbformat.v4.new_markdown_cell("Knowledge distillation, `distillation_loss`.", id="cell-02")]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2,
                                                                             "version_minor": 0}}
    return nb


def small_catalog(nb) -> dict:
    chinese = {"cell-00": "# 第 9 课\n\n温度 $T$。", "cell-02": "知识蒸馏，`distillation_loss`。"}
    return {"source": "notebooks/09_small.ipynb",
            "entries": [{"id": cell.id, "en": cell.source, "zh": chinese[cell.id]}
                        for cell in nb.cells if cell.cell_type == "markdown"]}


def test_a_complete_catalog_builds_a_notebook_with_the_same_code_and_outputs():
    nb = small_notebook()
    chinese = build_chinese_notebook(nb, small_catalog(nb))
    assert [cell.source for cell in chinese.cells] == ["# 第 9 课\n\n温度 $T$。", "print(1 + 1)",
                                                      "知识蒸馏，`distillation_loss`。"]
    assert chinese.cells[1] == nb.cells[1]
    assert chinese.metadata["language"] == "zh" and chinese.metadata["widgets"] == nb.metadata["widgets"]
    assert "language" not in nb.metadata and nb.cells[0].source.startswith("# Lesson 9")  # the English is untouched


def test_a_changed_english_cell_makes_its_entry_stale():
    nb = small_notebook()
    catalog = small_catalog(nb)
    nb.cells[2].source = "Knowledge distillation, `distillation_loss`.\nA new line."
    report = compare(markdown_cells(nb), catalog)
    assert report.stale == {"cell-02": "line 2 added: 'A new line.'"} and not report.missing
    nb.cells[0].source = "# Lesson 9\n\nThe temperature $T > 0$."
    assert compare(markdown_cells(nb), catalog).stale["cell-00"] == \
        "line 3 was 'The temperature $T$.', now 'The temperature $T > 0$.'"
    with pytest.raises(ValueError, match=r"stale \['cell-00', 'cell-02'\]") as error:
        build_chinese_notebook(nb, catalog)
    assert "cell-02: line 2 added" in str(error.value)


def test_a_new_cell_is_missing_and_an_empty_translation_untranslated():
    nb = small_notebook()
    catalog = small_catalog(nb)
    nb.cells.append(nbformat.v4.new_markdown_cell("## Exercises", id="cell-03"))
    catalog["entries"][0]["zh"] = " "
    report = compare(markdown_cells(nb), catalog)
    assert report.missing == ["cell-03"] and report.untranslated == ["cell-00"] and not report.stale
    with pytest.raises(ValueError, match=r"missing \['cell-03'\]; untranslated \['cell-00'\]"):
        build_chinese_notebook(nb, catalog)


def test_an_entry_of_a_deleted_cell_is_stale():
    nb = small_notebook()
    catalog = small_catalog(nb)
    del nb.cells[2]
    assert compare(markdown_cells(nb), catalog).stale == {"cell-02": "no longer in the source"}


def test_a_malformed_catalog_is_refused_by_name():
    with pytest.raises(ValueError, match="catalog: entry 1 needs the string fields"):
        validate_catalog({"source": "x", "entries": [{"id": "a", "en": "", "zh": ""}, {"id": "b", "en": ""}]})
    with pytest.raises(ValueError, match="catalog: id 'a' has two entries"):
        validate_catalog({"source": "x", "entries": [{"id": "a", "en": "", "zh": ""}] * 2})
    with pytest.raises(ValueError, match="expected an object"):
        validate_catalog([])



def test_arguments_of_the_wrong_kind_are_refused_by_name():
    nb = small_notebook()
    with pytest.raises(ValueError, match="^catalog: entry 0 needs the string fields"):
        build_chinese_notebook(nb, {"source": "x", "entries": [{"id": "cell-00", "en": "# Lesson 9"}]})
    with pytest.raises(ValueError, match="^catalog: expected an object"):
        compare(markdown_cells(nb), None)
    with pytest.raises(ValueError, match="^english_nb must be a NotebookNode, got 'notebooks/01_x.ipynb'"):
        markdown_cells("notebooks/01_x.ipynb")
    with pytest.raises(ValueError, match="^readme_text must be a str, got None"):
        readme_blocks(None)

README_TEXT = """# Course

Intro line.

## Quick start

```bash
# a comment, not a heading
pip install -r requirements.txt
```

## References

- Hinton 2015.
"""


def test_readme_blocks_start_at_headings_outside_code_fences():
    blocks = readme_blocks(README_TEXT)
    assert [text.splitlines()[0] for _, text in blocks] == ["# Course", "## Quick start", "## References"]
    assert "".join(text for _, text in blocks) == README_TEXT
    assert blocks[0][0] == readme_block_id("# Course\n\nIntro line.\n\n") and blocks[0][0].startswith("readme-")
    assert len(blocks[0][0]) == len("readme-") + 12
    assert readme_blocks("Preamble.\n# Title\n")[0][1] == "Preamble.\n"


def test_the_chinese_readme_keeps_the_blocks_apart_and_an_edited_block_goes_stale():
    blocks = readme_blocks(README_TEXT)
    chinese = ["# 课程\n\n引言。", "## 快速开始\n\n```bash\n# 注释\npip install -r requirements.txt\n```\n\n\n",
               "## 参考文献\n\n- Hinton 2015。"]
    catalog = {"source": "README.md", "entries": [{"id": block_id, "en": text, "zh": zh}
                                                  for (block_id, text), zh in zip(blocks, chinese)]}
    assert build_chinese_readme(README_TEXT, catalog) == (
        "# 课程\n\n引言。\n\n## 快速开始\n\n```bash\n# 注释\npip install -r requirements.txt\n```\n\n"
        "## 参考文献\n\n- Hinton 2015。\n")
    edited = README_TEXT.replace("Intro line.", "Intro line, edited.")
    report = compare(readme_blocks(edited), catalog)
    new_id = readme_blocks(edited)[0][0]
    assert report.missing == [new_id]
    assert report.stale[blocks[0][0]].startswith(f"no longer in the source; probably now {new_id} (line 3 was")
    with pytest.raises(ValueError, match=re.escape(f"missing ['{new_id}']")):
        build_chinese_readme(edited, catalog)


@pytest.fixture()
def small_repo(tmp_path):
    """A repository with one lesson and a README, both fully translated but not yet built."""
    (tmp_path / "notebooks").mkdir()
    nb = small_notebook()
    nbformat.write(nb, tmp_path / "notebooks" / "09_small.ipynb")
    (tmp_path / "README.md").write_text(README_TEXT, encoding="utf-8")
    catalogs = tmp_path / "translations" / "zh"
    catalogs.mkdir(parents=True)
    (catalogs / "09_small.json").write_text(json.dumps(small_catalog(nb), ensure_ascii=False), encoding="utf-8")
    readme = {"source": "README.md", "entries": [{"id": block_id, "en": text, "zh": "中文 " + text}
                                                 for block_id, text in readme_blocks(README_TEXT)]}
    (catalogs / "README.json").write_text(json.dumps(readme, ensure_ascii=False), encoding="utf-8")
    return tmp_path


def test_the_command_line_checks_builds_and_finds_an_outdated_build(small_repo, capsys):
    root = ["--root", str(small_repo)]
    assert main(root + ["check"]) == 1
    assert f"notebooks/zh/09_small.ipynb is out of date: run `{BUILD_COMMAND}`" in capsys.readouterr().out
    assert main(root + ["build"]) == 0
    assert (small_repo / "README.zh.md").read_text(encoding="utf-8").startswith("中文 # Course")
    assert nbformat.read(small_repo / "notebooks" / "zh" / "09_small.ipynb", as_version=4).cells[0].source == \
        "# 第 9 课\n\n温度 $T$。"
    assert main(root + ["check"]) == 0
    assert all(report.ok for report in check_catalogs(small_repo))
    # the lead re-executes the English notebook: new outputs, same markdown
    nb = nbformat.read(small_repo / "notebooks" / "09_small.ipynb", as_version=4)
    nb.cells[1].outputs[0].text = "2 (again)\n"
    nbformat.write(nb, small_repo / "notebooks" / "09_small.ipynb")
    assert main(root + ["check"]) == 1
    assert "out of date" in capsys.readouterr().out
    main(root + ["build"])
    assert main(root + ["check"]) == 0


def test_build_writes_the_complete_sources_and_names_the_others(small_repo, capsys):
    nb = nbformat.read(small_repo / "notebooks" / "09_small.ipynb", as_version=4)
    nb.cells[2].source += " Edited."
    nbformat.write(nb, small_repo / "notebooks" / "09_small.ipynb")
    assert main(["--root", str(small_repo), "build"]) == 1
    assert "stale ['cell-02']" in capsys.readouterr().err
    assert (small_repo / "README.zh.md").exists() and not (small_repo / "notebooks" / "zh").exists()
    reports = check_catalogs(small_repo)
    assert list(reports[0].stale) == ["cell-02"] and reports[1].ok


def test_stubs_add_missing_entries_and_keep_stale_ones_and_accept_takes_the_new_english(small_repo):
    path = small_repo / "notebooks" / "09_small.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = "# Lesson 9, edited"
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("A new cell.", id="cell-new"))
    nbformat.write(nb, path)
    catalog_file = small_repo / "translations" / "zh" / "09_small.json"
    before = load_catalog(catalog_file)["entries"]
    assert add_stubs(small_repo, ["notebooks/09_small.ipynb"]) == [catalog_file]
    entries = load_catalog(catalog_file)["entries"]
    assert [entry["id"] for entry in entries] == ["cell-00", "cell-new", "cell-02"]
    assert entries[0] == before[0]  # stale: old English and old Chinese kept, so `check` shows the change
    assert entries[1] == {"id": "cell-new", "en": "A new cell.", "zh": ""}
    assert add_stubs(small_repo, ["notebooks/09_small.ipynb"]) == []  # nothing more to add
    with pytest.raises(ValueError, match="only: \\['10_other.ipynb'\\] are not lesson notebooks"):
        add_stubs(small_repo, ["notebooks/10_other.ipynb"])
    accept(small_repo, "notebooks/09_small.ipynb", ["cell-00"])
    report = check_catalogs(small_repo)[0]
    assert not report.stale and report.untranslated == ["cell-new"]
    with pytest.raises(ValueError, match="ids: 'cell-01' is not a markdown cell"):
        accept(small_repo, "notebooks/09_small.ipynb", ["cell-01"])


def test_stubs_start_a_catalog_and_move_vanished_entries_to_the_end(small_repo):
    (small_repo / "translations" / "zh" / "09_small.json").unlink()
    add_stubs(small_repo)
    entries = load_catalog(small_repo / "translations" / "zh" / "09_small.json")["entries"]
    assert [(entry["id"], entry["zh"]) for entry in entries] == [("cell-00", ""), ("cell-02", "")]
    (small_repo / "README.md").write_text(README_TEXT.replace("Intro line.", "Intro."), encoding="utf-8")
    add_stubs(small_repo, ["README.md"])
    entries = load_catalog(small_repo / "translations" / "zh" / "README.json")["entries"]
    assert [entry["zh"][:9] for entry in entries] == ["", "中文 ## Qui", "中文 ## Ref", "中文 # Cour"]


# ---------------------------------------------------------------------------------------------
# The Chinese student edition
# ---------------------------------------------------------------------------------------------

def test_the_chinese_student_edition_differs_from_the_chinese_reference_only_in_its_answers(tmp_path, monkeypatch):
    lessons = chinese_lessons()
    if not lessons:
        pytest.skip(f"notebooks/zh is not built yet: run `{BUILD_COMMAND}`")
    monkeypatch.chdir(ROOT)  # --language zh reads notebooks/zh from the repository root
    classroom.main(["student-edition", str(tmp_path), "--language", "zh"])
    assert sorted(path.name for path in tmp_path.glob("*.ipynb")) == [path.name for path in lessons]
    for path in lessons:
        reference = nbformat.read(ROOT / CHINESE_NOTEBOOK_FOLDER / path.name, as_version=4)
        student = nbformat.read(tmp_path / path.name, as_version=4)
        assert_no_solutions_and_no_outputs(reference, student, f"zh/{path.name}")
        assert_changes_only_the_answers(reference, student, f"zh/{path.name}")
        markdown = [cell.source for cell in student.cells if cell.cell_type == "markdown"]
        assert markdown == [cell.source for cell in reference.cells if cell.cell_type == "markdown"]
        assert any(CJK.search(text) for text in markdown) and student.metadata["language"] == "zh"
