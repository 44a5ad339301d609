"""Showing the library's own code in a notebook, so the code a reader sees is the code that runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from IPython.display import Code


def show_source(*functions: Callable) -> Code:
    """The source of ``functions`` as highlighted Python, for a notebook cell to display."""
    return Code("\n\n".join(inspect.getsource(f) for f in functions), language="python")
