"""A Sphinx math renderer that writes MathML into the page at build time.

Sphinx's default renderer loads MathJax from a CDN when the page opens, which needs the
network; every current browser draws MathML itself. latex2mathml converts the course's
LaTeX (``$...$`` and ``$$...$$`` in the notebooks); a formula it cannot convert is shown
as its LaTeX source, so the build never fails on math.
"""

from __future__ import annotations

import html

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx


def to_mathml(latex: str, display: str) -> str:
    """``latex`` as a ``<math>`` element (``display`` "inline" or "block"), or as code."""
    try:
        return convert(latex.strip(), display=display)
    except Exception:  # latex2mathml raises many kinds; the page still shows the formula
        return f"<code>{html.escape(latex)}</code>"


def visit_math(self, node: nodes.math) -> None:
    self.body.append(self.starttag(node, "span", "", CLASS="math"))
    self.body.append(to_mathml(node.astext(), "inline") + "</span>")
    raise nodes.SkipNode


def visit_math_block(self, node: nodes.math_block) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math"))
    self.body.append(to_mathml(node.astext(), "block") + "</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, object]:
    app.add_html_math_renderer("mathml", (visit_math, None), (visit_math_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
