"""Sphinx configuration of the course website (`make book`, see tooling/book.py).

The source folder is not this one: tooling/book.py assembles the pages (the README, the
executed notebooks without their solutions, the teacher's guide, the API reference) in
build/book/src and runs Sphinx there with this folder as its configuration directory.
Nothing here reaches the network: notebooks are rendered from their stored outputs, math
is turned into MathML at build time (_ext/mathml.py), and no widget JavaScript is loaded.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "mnist-adversarial-defense"
author = "the course authors"
copyright = "the course authors, MIT licence"
html_title = "Adversarial ML on MNIST"

extensions = [
    "myst_nb",  # MyST Markdown and notebooks (it loads myst_parser itself)
    "sphinx.ext.autodoc",  # the API reference, from the helpers' docstrings
    "sphinx.ext.napoleon",  # their Google-style "Args:" / "Returns:" sections
    "sphinx.ext.viewcode",  # each documented module's source, one click away
    "mathml",  # $...$ as MathML, rendered by the browser: no MathJax download
]
html_math_renderer = "mathml"

root_doc = "index"
exclude_patterns = ["**.ipynb_checkpoints"]

# Notebooks: show the outputs stored by the executed run, never execute anything.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget manager from a CDN (tooling/book.py replaces widgets)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3  # README-style links to sections (#the-epsilon-explorer)

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "sphinx_book_theme"
html_theme_options = {
    "home_page_in_toc": True,
    "show_toc_level": 2,
    "use_download_button": True,  # the page's notebook (without solutions) or Markdown
    "use_fullscreen_button": False,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
html_copy_source = True
