"""The course as a static website, in English and Chinese, built from the stored notebooks.

    python -m fedkd_lessons.course.website OUTDIR      # then open OUTDIR/index.html

Two Sphinx builds (MyST-NB with execution off, the furo theme, MathJax from a local copy, API
pages from the package's docstrings), one per language: ``OUTDIR/en`` from ``notebooks/*.ipynb``
and ``README.md``, ``OUTDIR/zh`` from whichever ``notebooks/zh/*.ipynb`` and ``README.zh.md``
exist. Every page links to its counterpart in the other language; ``OUTDIR/index.html`` lets the
reader choose. Nothing is executed and nothing is downloaded.

The sources are first copied into a temporary folder (the Sphinx configuration from
``website/``, the notebooks, ``assets/``): nothing is written into ``notebooks/`` or the package.
Widgets would need ipywidgets' JavaScript from a CDN, so each widget is shown instead as a static
picture of the state the notebook stored: its image, its text, its sliders' values.
"""

import argparse
import html
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from fedkd_lessons.engine.validation import Each, Instance, OneOf, Optional, checked_arguments

REPO = Path(__file__).resolve().parents[2]
LANGUAGES = ("en", "zh")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
LESSON_NAME = re.compile(r"^\d\d_\w+\.ipynb$")
LANGUAGE = OneOf(*LANGUAGES)
FOLDER = Instance(Path)  # the functions join paths onto it with /
NOTEBOOK = Instance(nbformat.NotebookNode)  # as nbformat.read gives it
STRING = Instance(str)

TEXT = {
    "en": {
        "sphinx_language": "en",
        "title": "fedkd-lessons",
        "switch_label": "中文",
        "lesson_map": "Lesson map",
        "api": "API reference",
        "api_intro": "Generated from the docstrings of the helper package ``fedkd_lessons``: one page per module, a subpackage's modules on its page.",
        "widget_note": "An interactive widget in Jupyter; shown here as the notebook stored it.",
        "widget_missing": "(an interactive widget: run the notebook in Jupyter to use it)",
    },
    "zh": {
        "sphinx_language": "zh_CN",
        "title": "fedkd-lessons 中文版",
        "switch_label": "English",
        "lesson_map": "课程地图",
        "api": "API 参考",
        "api_intro": "以下各页由辅助包 ``fedkd_lessons`` 的文档字符串（英文）生成：每个模块一页，子包的各模块在同一页。",
        "widget_note": "交互控件：在 Jupyter 中可以操作，这里显示的是笔记本保存时的状态。",
        "widget_missing": "（交互控件：请在 Jupyter 中运行笔记本后使用）",
    },
}


# --- widgets: a static picture of the stored state ------------------------------------------

CONTROLS = {"FloatSliderModel", "IntSliderModel", "FloatLogSliderModel", "FloatRangeSliderModel",
            "IntRangeSliderModel", "SelectionSliderModel", "DropdownModel", "RadioButtonsModel",
            "ToggleButtonsModel", "SelectModel", "CheckboxModel", "ToggleButtonModel", "ButtonModel",
            "TextModel", "BoundedFloatTextModel", "BoundedIntTextModel", "FloatTextModel", "IntTextModel"}


def _format_number(value, fmt: str | None) -> str:
    try:
        return format(value, fmt or ".3g")
    except (TypeError, ValueError):
        return str(value)


def _widget_html(state: dict, model_id: str, seen: set) -> tuple[str, bool]:
    """HTML for one stored widget model and its children, and whether it holds a control."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return "", False
    seen = seen | {model_id}
    name, values = model.get("model_name", ""), model.get("state", {})
    if name in ("VBoxModel", "HBoxModel", "BoxModel", "GridBoxModel"):
        parts = [_widget_html(state, str(child).removeprefix("IPY_MODEL_"), seen) for child in values.get("children", [])]
        kind = "hbox" if name == "HBoxModel" else "vbox"
        return (f'<div class="fedkd-widget-{kind}">' + "".join(p for p, _ in parts) + "</div>",
                any(c for _, c in parts))
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="fedkd-widget-html">{values.get("value", "")}</div>', False
    if name == "LabelModel":
        return f'<div class="fedkd-widget-html">{html.escape(str(values.get("value", "")))}</div>', False
    if name == "ImageModel":
        data = next((b["data"] for b in model.get("buffers", []) if b.get("path") == ["value"]), None)
        if not data:
            return "", False
        fmt = values.get("format", "png")
        return f'<img class="fedkd-widget-image" alt="widget picture" src="data:image/{fmt};base64,{data}">', False
    if name in ("FloatProgressModel", "IntProgressModel"):
        low, high, value = values.get("min", 0), values.get("max", 100), values.get("value", 0)
        return f'<progress class="fedkd-widget-progress" max="{high - low}" value="{value - low}"></progress>', False
    if name == "OutputModel":
        return "".join(_output_html(output) for output in values.get("outputs", [])), False
    description = html.escape(str(values.get("description", "")))
    if "_options_labels" in values:
        index = values.get("index")
        labels = values["_options_labels"]
        shown = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else ""
    elif name == "ButtonModel":
        shown, description = "", f"[{description}]"
    elif "value" in values:
        shown = _format_number(values["value"], values.get("readout_format"))
    else:
        shown = ""
    text = f"{description} = {html.escape(str(shown))}" if description and shown != "" else description or html.escape(str(shown))
    return f'<span class="fedkd-widget-control">{text}</span>', name in CONTROLS


def _output_html(output: dict) -> str:
    data = output.get("data", {})
    if output.get("output_type") == "stream":
        return f'<pre>{html.escape("".join(output.get("text", "")))}</pre>'
    if "image/png" in data:
        return f'<img class="fedkd-widget-image" alt="output" src="data:image/png;base64,{data["image/png"]}">'
    if "text/html" in data:
        return "".join(data["text/html"])
    return f'<pre>{html.escape("".join(data.get("text/plain", "")))}</pre>'


@checked_arguments(state=Instance(dict), model_id=STRING, language=LANGUAGE)
def widget_view_html(state: dict, model_id: str, language: str) -> str | None:
    """A static HTML picture of the widget ``model_id`` from a notebook's stored widget state,
    or ``None`` if that state is not stored."""
    if model_id not in state:
        return None
    body, has_control = _widget_html(state, model_id, set())
    note = f'<div class="fedkd-widget-note">{html.escape(TEXT[language]["widget_note"])}</div>' if has_control else ""
    return f'<div class="fedkd-widget-static">{body}{note}</div>'


@checked_arguments(nb=NOTEBOOK, language=LANGUAGE)
def with_static_widgets(nb, language: str):
    """The notebook with every widget output replaced by static HTML and its widget state removed,
    so that no page asks for ipywidgets' JavaScript."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            picture = widget_view_html(state, data[WIDGET_VIEW].get("model_id", ""), language)
            if picture is None:
                picture = f'<p class="fedkd-widget-note">{html.escape(TEXT[language]["widget_missing"])}</p>'
            output["data"] = {"text/html": picture, "text/plain": TEXT[language]["widget_missing"]}
    nb.metadata.pop("widgets", None)
    return nb


# --- the source tree of one language ----------------------------------------------------------

@checked_arguments(repo=FOLDER, language=LANGUAGE)
def lesson_notebooks(repo: Path, language: str) -> list[Path]:
    folder = repo / "notebooks" if language == "en" else repo / "notebooks" / "zh"
    return sorted(p for p in folder.glob("*.ipynb") if LESSON_NAME.match(p.name)) if folder.is_dir() else []


@checked_arguments(repo=FOLDER, language=LANGUAGE)
def readme_path(repo: Path, language: str) -> Path:
    return repo / ("README.md" if language == "en" else "README.zh.md")


@checked_arguments(readme=Optional(STRING), lessons=Each(STRING, min_length=0), language=LANGUAGE)
def landing_page(readme: str | None, lessons: list[str], language: str) -> str:
    """The landing page: the README (its notebook names made links to the lessons), with the lesson
    map, a table of contents of the lessons, put before its first section."""
    text = TEXT[language]
    if readme is None:
        readme = f"# {text['title']}\n"
    # links to the notebook folders become links to the two sites' landing pages
    readme = re.sub(r"\[([^\]]*)\]\((?:\./)?notebooks/(zh/)?\)",
                    lambda m: f'<a href="../{"zh" if m.group(2) else "en"}/index.html">{m.group(1)}</a>', readme)
    readme = readme.replace("](notebooks/zh/", "](notebooks/")
    # and links to either README to that language's landing page
    readme = re.sub(r"\[([^\]]*)\]\((?:\./)?README(\.zh)?\.md\)",
                    lambda m: f'<a href="../{"zh" if m.group(2) else "en"}/index.html">{m.group(1)}</a>', readme)

    def link(match):
        name = match.group(1)
        return f"[`{name}.ipynb`](notebooks/{name}.ipynb)" if f"{name}.ipynb" in lessons else match.group(0)

    readme = re.sub(r"(?<!\[)`(\d\d_\w+)\.ipynb`(?!\])", link, readme)
    toctree = "\n".join(f"notebooks/{Path(name).stem}" for name in lessons)
    lesson_map = (f"## {text['lesson_map']}\n\n```{{toctree}}\n:maxdepth: 1\n:caption: {text['lesson_map']}\n\n"
                  f"{toctree}\n```\n\n")
    api = f"\n\n```{{toctree}}\n:hidden:\n:caption: API\n\napi/index\n```\n"
    first_section = re.search(r"^## ", readme, flags=re.MULTILINE)
    if first_section is None:
        return readme.rstrip() + "\n\n" + lesson_map + api
    return readme[:first_section.start()] + lesson_map + readme[first_section.start():].rstrip() + api


def package_modules() -> dict[str, list[str]]:
    """The package's public modules, each top-level one with its submodules (found without importing)."""
    import fedkd_lessons

    modules = {}
    for info in pkgutil.iter_modules(fedkd_lessons.__path__):
        if info.name.startswith("_"):
            continue
        name = f"fedkd_lessons.{info.name}"
        modules[name] = [name]
        if info.ispkg:
            folder = Path(fedkd_lessons.__path__[0]) / info.name
            modules[name] += sorted(f"{name}.{sub.name}" for sub in pkgutil.iter_modules([str(folder)])
                                    if not sub.name.startswith("_"))
    return dict(sorted(modules.items()))


def api_docnames() -> list[str]:
    return ["api/index", *(f"api/{name}" for name in package_modules())]


@checked_arguments(folder=FOLDER, language=LANGUAGE)
def api_pages(folder: Path, language: str) -> None:
    """One page per top-level module (a subpackage's modules on its page), and an index page that
    shows the package's own docstring."""
    folder.mkdir(parents=True)
    modules = package_modules()
    title = TEXT[language]["api"]
    lines = [title, "=" * (2 * len(title)), "", TEXT[language]["api_intro"], "", ".. automodule:: fedkd_lessons", "",
             ".. toctree::", "   :maxdepth: 1", "", *(f"   {name}" for name in modules)]
    (folder / "index.rst").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, members in modules.items():
        text = f"{name}\n{'=' * len(name)}\n\n.. automodule:: {name}\n   :members:\n"
        for sub in members[1:]:
            text += f"\n{sub}\n{'-' * len(sub)}\n\n.. automodule:: {sub}\n   :members:\n"
        (folder / f"{name}.rst").write_text(text, encoding="utf-8")


@checked_arguments(repo=FOLDER, language=LANGUAGE)
def page_names(repo: Path, language: str) -> list[str]:
    """The Sphinx page names of one language's site."""
    return ["index", *(f"notebooks/{path.stem}" for path in lesson_notebooks(repo, language)), *api_docnames()]


@checked_arguments(repo=FOLDER, language=LANGUAGE, folder=FOLDER)
def prepare_source(repo: Path, language: str, folder: Path) -> None:
    """Lay out one language's Sphinx source in ``folder``."""
    shutil.copytree(repo / "website", folder, ignore=shutil.ignore_patterns("__pycache__"))
    if (repo / "assets").is_dir():
        shutil.copytree(repo / "assets", folder / "assets")
    (folder / "notebooks").mkdir()
    lessons = []
    for path in lesson_notebooks(repo, language):
        nb = with_static_widgets(nbformat.read(path, as_version=4), language)
        if language == "zh":  # paths written for notebooks/zh/ point one folder too high here
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = cell.source.replace("../../assets/", "../assets/")
        nbformat.write(nb, folder / "notebooks" / path.name)
        lessons.append(path.name)
    readme = readme_path(repo, language)
    (folder / "index.md").write_text(
        landing_page(readme.read_text(encoding="utf-8") if readme.exists() else None, lessons, language),
        encoding="utf-8")
    api_pages(folder / "api", language)
    other = "zh" if language == "en" else "en"
    settings = {"language": language, "other_language": other, **TEXT[language],
                "other_docs": sorted(set(page_names(repo, other)) | {"genindex", "search", "py-modindex"})}
    (folder / "site.json").write_text(json.dumps(settings, ensure_ascii=False, indent=1), encoding="utf-8")


def choose_language_page() -> str:
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fedkd-lessons</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;line-height:1.6}
a{display:block;font-size:1.4em;margin:.5em 0}</style></head>
<body><h1>fedkd-lessons</h1>
<p>Personalised federated learning through knowledge distillation: a Jupyter course.<br>
<span lang="zh-CN">个性化联邦学习 · 知识蒸馏：一门 Jupyter 课程。</span></p>
<a href="en/index.html" hreflang="en">English</a>
<a href="zh/index.html" hreflang="zh-CN" lang="zh-CN">中文</a>
</body></html>
"""


@checked_arguments(outdir=Instance((str, os.PathLike)), repo=FOLDER, quiet=OneOf(True, False))
def build(outdir: Path, repo: Path = REPO, quiet: bool = True) -> Path:
    """Build both languages into ``outdir``; return the path of ``outdir/index.html``."""
    outdir = Path(outdir).resolve()
    for kept in (repo / "notebooks", Path(__file__).resolve().parents[1]):
        if outdir == kept.resolve() or kept.resolve() in outdir.parents:
            raise ValueError(f"outdir must not be inside {kept}, got {outdir}: the site is written, never the sources")
    with tempfile.TemporaryDirectory(prefix="fedkd-website-") as tmp:
        tmp = Path(tmp)
        for lang in LANGUAGES:
            prepare_source(repo, lang, tmp / "src" / lang)
        env = {**os.environ, "MPLBACKEND": "Agg", "FEDKD_PROGRESS": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        processes = {}
        for lang in LANGUAGES:  # the two languages at once, one process each
            command = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-j", "1", "-d", str(tmp / "doctrees" / lang),
                       str(tmp / "src" / lang), str(tmp / "out" / lang)]
            if quiet:
                command.insert(3, "-q")
            processes[lang] = subprocess.Popen(command, env=env, cwd=tmp, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)
        failed = []
        for lang, process in processes.items():
            log, _ = process.communicate()
            if log.strip():
                print(f"--- sphinx ({lang}) ---\n{log.rstrip()}", file=sys.stderr)
            if process.returncode:
                failed.append(lang)
        if failed:
            raise RuntimeError(f"sphinx-build failed for {', '.join(failed)}; its messages are above")
        outdir.mkdir(parents=True, exist_ok=True)
        for lang in LANGUAGES:  # MyST-NB also writes beside its output folder: copy only the site
            shutil.rmtree(tmp / "out" / lang / "_sources", ignore_errors=True)  # empty: no sources copied
            if (outdir / lang).exists():
                shutil.rmtree(outdir / lang)
            shutil.copytree(tmp / "out" / lang, outdir / lang)
    (outdir / "index.html").write_text(choose_language_page(), encoding="utf-8")
    return outdir / "index.html"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedkd_lessons.course.website", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path, help="where to write the site (OUTDIR/index.html, OUTDIR/en, OUTDIR/zh)")
    parser.add_argument("--verbose", action="store_true", help="show Sphinx's progress messages")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        index = build(args.outdir, quiet=not args.verbose)
    except ValueError as error:
        parser.error(str(error))
    print(f"built in {time.monotonic() - start:.0f} s: {index}", file=sys.stderr)
    print(index)


if __name__ == "__main__":
    main()
