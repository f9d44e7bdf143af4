"""Sphinx configuration of the rulecast documentation (Markdown pages, MyST).

Build: ``make docs`` or ``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Document the checked-out package, not some other installed copy.
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "_ext"))

import rulecast  # noqa: E402

project = "rulecast"
author = "the rulecast authors"
copyright = "the rulecast authors"
release = rulecast.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "rulecast_reference",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# MyST: in-page anchors for the headings of every page (protocol.md#close-codes).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# Every reference must resolve, Python objects named in docstrings included.
nitpicky = True

autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}

# Every built-in condition and action factory has a docstring; a missing one fails
# the build.
rulecast_steps_require_docstring = True

try:
    import furo  # noqa: F401
    html_theme = "furo"
except ImportError:
    html_theme = "alabaster"
html_title = "rulecast %s" % release
html_static_path = ["_static"]
html_css_files = ["rulecast.css"]
