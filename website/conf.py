"""Sphinx configuration of the course's website, one build per language.

Not run from here: ``python -m fedkd_lessons.course.website OUTDIR`` copies this folder, the notebooks and
``assets/`` into a temporary source tree, writes ``site.json`` (the language and the other
language's pages) beside this file and runs sphinx-build there, once per language.
Offline by design: notebooks are not executed, no intersphinx, MathJax served from a local copy,
no ipywidgets JavaScript (widgets are static pictures of their stored state).
"""

import json
from pathlib import Path

SITE = json.loads((Path(__file__).parent / "site.json").read_text(encoding="utf-8"))

project = SITE["title"]
author = "fedkd-lessons"
copyright = "fedkd-lessons authors"
language = SITE["sphinx_language"]

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static/mathjax; sets mathjax_path to it
]
exclude_patterns = ["_build", "site.json", "**/.ipynb_checkpoints"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_css_files = ["fedkd.css"]

# the notebooks are shown exactly as stored, never executed
nb_execution_mode = "off"
nb_merge_streams = True
nb_ipywidgets_js = {}  # its default loads require.js and the widget manager from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True  # $$...$$ inside a paragraph, as Jupyter shows it

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = SITE["title"]
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_context = {
    "lang_switch_label": SITE["switch_label"],
    "other_language": SITE["other_language"],
    "other_docs": SITE["other_docs"],
}
html_sidebars = {"**": ["sidebar/brand.html", "lang-switch.html", "sidebar/search.html",
                        "sidebar/scroll-start.html", "sidebar/navigation.html", "sidebar/scroll-end.html"]}
