"""The course's website (``python -m fedkd_lessons.course.website``), built once and opened page by page.

Every HTML page of both languages is opened in headless Chromium, served from 127.0.0.1, with
every request to another host aborted and recorded: no such request, no console error, every
image loaded, every internal link (and its #anchor) found, maths typeset by the local MathJax,
Chinese text on the Chinese pages and each language switch leading to the same page in the other
language. Screenshots are kept in ``test-artifacts/website/``. Skipped where Chromium is not
installed, except under CI, where it must run.
"""

import re
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_chromium, wait_until_answering

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "website"
LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
CJK = re.compile(r"[\u4e00-\u9fff]")
SCREENSHOTS = {  # page -> file name
    "index.html": "choose_language.png",
    "en/index.html": "en_landing.png",
    "zh/index.html": "zh_landing.png",
    "en/notebooks/01_temperature_softmax.html": "en_lesson1.png",
    "zh/notebooks/01_temperature_softmax.html": "zh_lesson1.png",
    "en/api/fedkd_lessons.distillation.html": "en_api_distillation.png",
}

pytestmark = pytest.mark.website


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built into a temporary folder and served on 127.0.0.1; the server stopped by its PID."""
    require_chromium()
    root = tmp_path_factory.mktemp("website")
    command = [sys.executable, "-m", "fedkd_lessons.course.website", str(root / "site")]  # the README's command
    offline = shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0
    if offline:  # in a network namespace of its own: no network at all while building
        command = ["unshare", "-rn", *command]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    print(f"website built in {time.monotonic() - start:.0f} s" + (" with no network" if offline else ""))
    assert result.returncode == 0, f"the build failed:\n{result.stderr[-4000:]}"
    index = Path(result.stdout.strip().splitlines()[-1])
    assert index == root / "site" / "index.html" and index.exists()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(index.parent)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/index.html", server, 20, lambda: "the site's http.server did not start")
        yield index.parent, url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset:
    text = path.read_text(encoding="utf-8")
    return frozenset(re.findall(r'\b(?:id|name)="([^"]+)"', text))


def target_file(folder: Path, url_path: str) -> Path:
    path = folder / unquote(url_path).lstrip("/")
    return path / "index.html" if url_path.endswith("/") or path.is_dir() else path


PAGE_SCRIPT = """() => {
    const math = Array.from(document.querySelectorAll('.math'));
    const main = document.querySelector('article') || document.body;
    const clone = main.cloneNode(true);
    clone.querySelectorAll('pre, code, script, .highlight').forEach(e => e.remove());
    return {
        lang: document.documentElement.lang,
        text: clone.innerText,
        brokenImages: Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)
                           .map(i => i.src.slice(0, 120)),
        images: document.images.length,
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
        externalResources: Array.from(document.querySelectorAll('script[src], link[href][rel~="stylesheet"], img[src], iframe[src]'))
            .map(e => e.src || e.href).filter(u => /^(https?:)?\\/\\//.test(u) && !/^https?:\\/\\/(127\\.0\\.0\\.1|localhost)[:/]/.test(u)),
        mathElements: math.length,
        mathTypeset: math.filter(e => e.querySelector('mjx-container')).length,
        switchHref: (document.querySelector('a.fedkd-lang-link') || {}).href || null,
    };
}"""


async def open_pages(url: str, pages: list[str], tabs: int = 3):
    """Open every page, ``tabs`` at a time, with requests to other hosts aborted and recorded.
    Returns what each page shows, the external requests and the problems (console errors,
    page errors, HTTP errors) by page."""
    import asyncio

    from playwright.async_api import async_playwright

    external, problems, seen = [], [], {}
    queue = list(reversed(pages))

    async def route(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            await route.continue_()
        else:
            external.append(route.request.url)
            await route.abort()

    async def tab(context):
        page = await context.new_page()
        current = {"page": None}
        page.on("console", lambda msg: msg.type == "error"
                and problems.append(f"{current['page']}: console error: {msg.text}"))
        page.on("pageerror", lambda error: problems.append(f"{current['page']}: page error: {error}"))
        page.on("response", lambda response: response.status >= 400
                and problems.append(f"{current['page']}: {response.status} for {response.url}"))
        while queue:
            name = current["page"] = queue.pop()
            await page.goto(f"{url}/{name}", wait_until="load")
            if await page.evaluate("() => document.querySelector('.math') !== null"):
                await page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                             timeout=20_000)
                await page.evaluate("() => MathJax.startup.promise")
            seen[name] = await page.evaluate(PAGE_SCRIPT)
            if name in SCREENSHOTS:
                await page.screenshot(path=str(ARTIFACTS / SCREENSHOTS[name]))
        await page.close()

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = await browser.new_context(viewport={"width": 1300, "height": 900})
            await context.route("**/*", route)
            await asyncio.gather(*(tab(context) for _ in range(tabs)))
        finally:
            await browser.close()
    return seen, external, problems


def test_every_page_works_offline(site):
    import asyncio

    folder, url = site
    pages = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html") if "_static" not in p.parts)
    assert {"index.html", "en/index.html", "zh/index.html", "en/api/index.html"} <= set(pages)
    lessons_en = sorted(p.name for p in (folder / "en" / "notebooks").glob("*.html"))
    assert len(lessons_en) == len(list((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))) >= 6
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    start = time.monotonic()
    seen, external, problems = asyncio.run(open_pages(url, pages))
    print(f"{len(pages)} pages opened in {time.monotonic() - start:.0f} s")

    failures = [f"request to another host: {u}" for u in sorted(set(external))] + problems
    for name, info in seen.items():
        if info["externalResources"]:
            failures.append(f"{name} loads from other hosts: {info['externalResources']}")
        if info["brokenImages"]:
            failures.append(f"{name}: images not loaded: {info['brokenImages']}")
        if info["mathTypeset"] != info["mathElements"]:
            failures.append(f"{name}: {info['mathElements'] - info['mathTypeset']} of {info['mathElements']} formulas not typeset")
        if "$$" in info["text"] or "\\(" in info["text"] or re.search(r"\$[^$\s][^$]*\$", info["text"]):
            failures.append(f"{name}: raw TeX left in the text")
        for link in info["links"]:
            parts = urlsplit(link)
            if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
                continue
            target = target_file(folder, parts.path)
            if not target.exists():
                failures.append(f"{name} links to a missing page: {parts.path}")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in anchors(target):
                failures.append(f"{name} links to a missing anchor: {link}")
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures[:30])

    # maths typeset by the local MathJax on the lessons and the API
    assert seen["en/notebooks/02_knowledge_distillation.html"]["mathElements"] >= 10
    assert seen["en/api/fedkd_lessons.distillation.html"]["mathTypeset"] >= 1
    # the landing page of each language carries the lesson map: a link to every lesson
    for language in ("en", "zh"):
        lessons = sorted(p.name for p in (folder / language / "notebooks").glob("*.html")) if (folder / language / "notebooks").exists() else []
        linked = {urlsplit(link).path for link in seen[f"{language}/index.html"]["links"]}
        missing = [lesson for lesson in lessons if f"/{language}/notebooks/{lesson}" not in linked]
        assert not missing, f"{language}/index.html does not link to {missing}"
    # every lesson shows its figures
    for lesson in lessons_en:
        assert seen[f"en/notebooks/{lesson}"]["images"] >= 1, f"lesson {lesson} shows no picture"

    # the Chinese half: Chinese text, marked as Chinese; each switch leads to the same page
    zh_pages = [name for name in pages if name.startswith("zh/")]
    lessons_zh = sorted(p.name for p in (folder / "zh" / "notebooks").glob("*.html")) if (folder / "zh" / "notebooks").exists() else []
    assert len(lessons_zh) == len(list((REPO / "notebooks" / "zh").glob("[0-9][0-9]_*.ipynb")))
    for name in ["zh/index.html", *(f"zh/notebooks/{lesson}" for lesson in lessons_zh)]:
        assert seen[name]["lang"] == "zh-CN", f"{name} is not marked as Chinese: {seen[name]['lang']!r}"
        assert len(CJK.findall(seen[name]["text"])) >= 50, f"{name} shows little Chinese text"
    for name in zh_pages:
        assert seen[name]["lang"] == "zh-CN"
    for name, info in seen.items():
        if name == "index.html":
            continue
        language, page_name = name.split("/", 1)
        other = "zh" if language == "en" else "en"
        expected = page_name if (folder / other / page_name).exists() else "index.html"
        assert info["switchHref"] == f"{url}/{other}/{expected}", f"{name}: language switch goes to {info['switchHref']}"


def test_chinese_font_installed():
    """Chromium shows Chinese with a CJK font from Debian (fonts-noto-cjk), not as boxes."""
    require_chromium()
    fonts = subprocess.run(["fc-list", ":lang=zh-cn", "family"], capture_output=True, text=True).stdout
    assert fonts.strip(), "no Chinese font: apt-get install fonts-noto-cjk (.ci/run does)"


def test_widgets_become_static_pictures_of_their_stored_state():
    """A slider, a dropdown, an image and a progress bar, as ipywidgets stores them in a notebook."""
    import nbformat

    from fedkd_lessons.course.website import with_static_widgets

    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_pick", "IPY_MODEL_t", "IPY_MODEL_img", "IPY_MODEL_bar"]}},
        "pick": {"model_name": "DropdownModel", "state": {"description": "digit", "_options_labels": ["#4 (label 1)", "#7 (label 3)"], "index": 1}},
        "t": {"model_name": "FloatLogSliderModel", "state": {"description": "T", "value": 4.0, "readout_format": ".3g"}},
        "img": {"model_name": "ImageModel", "state": {"format": "png"}, "buffers": [{"path": ["value"], "data": png, "encoding": "base64"}]},
        "bar": {"model_name": "FloatProgressModel", "state": {"min": 0, "max": 20, "value": 20}},
    }
    nb = nbformat.v4.new_notebook(metadata={"widgets": {"application/vnd.jupyter.widget-state+json": {"state": state}}})
    view = {"model_id": "box", "version_major": 2, "version_minor": 0}
    nb.cells = [nbformat.v4.new_code_cell("w", outputs=[
        nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": view, "text/plain": "VBox(...)"}),
        nbformat.v4.new_output("display_data", {"application/vnd.jupyter.widget-view+json": {"model_id": "gone"}, "text/plain": "x"}),
    ])]
    static = with_static_widgets(nb, "en")
    shown, missing = (output["data"] for output in static.cells[0].outputs)
    assert "widgets" not in static.metadata
    assert set(shown) == {"text/html", "text/plain"}
    assert "digit = #7 (label 3)" in shown["text/html"] and "T = 4" in shown["text/html"]
    assert f'src="data:image/png;base64,{png}"' in shown["text/html"]
    assert '<progress class="fedkd-widget-progress" max="20" value="20">' in shown["text/html"]
    assert "shown here as the notebook stored it" in shown["text/html"]
    assert "run the notebook in Jupyter" in missing["text/html"]


def test_the_build_is_configured_offline(tmp_path):
    """No notebook is executed, no intersphinx inventory fetched, no widget JavaScript from a CDN."""
    import json
    import runpy
    import shutil

    from fedkd_lessons.course.website import TEXT

    shutil.copy(REPO / "website" / "conf.py", tmp_path / "conf.py")
    (tmp_path / "site.json").write_text(json.dumps({**TEXT["zh"], "language": "zh", "other_language": "en", "other_docs": []}))
    conf = runpy.run_path(str(tmp_path / "conf.py"))
    assert conf["nb_execution_mode"] == "off"
    assert not any("intersphinx" in extension for extension in conf["extensions"])
    assert conf["nb_ipywidgets_js"] == {}
    assert conf["language"] == "zh_CN"


def test_the_site_is_never_written_into_the_sources():
    from fedkd_lessons.course.website import build

    for inside in (REPO / "notebooks" / "site", REPO / "fedkd_lessons" / "site"):
        with pytest.raises(ValueError, match="outdir must not be inside"):
            build(inside)
        assert not inside.exists()


def test_arguments_of_the_wrong_kind_are_refused_by_name():
    from fedkd_lessons.course.website import build, landing_page, lesson_notebooks

    with pytest.raises(ValueError, match="^language must be one of 'en', 'zh', got 'fr'"):
        landing_page(None, [], "fr")
    with pytest.raises(ValueError, match="^repo must be a Path, got '.'"):
        lesson_notebooks(".", "en")
    with pytest.raises(ValueError, match="^outdir must be a str or a PathLike, got None"):
        build(None)
