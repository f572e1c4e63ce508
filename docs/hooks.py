"""MkDocs hook: the `vaelab train` flag table, written from the settings themselves at build time.

A page that holds the marker below gets, in its place, `vaelab.config.flags_table` of every setting
in `SETTINGS` with `TrainConfig`'s defaults, so the documented flags are the parser's own. The
training guide must hold the marker: a build without the table fails instead of shipping none.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's vaelab, as mkdocstrings reads it
from vaelab.config import SETTINGS, TrainConfig, flags_table  # noqa: E402

MARKER = "<!-- vaelab: train flags -->"
FLAGS_PAGE = "guides/training.md"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        if page.file.src_uri == FLAGS_PAGE:
            raise PluginError(f"{FLAGS_PAGE} lost the marker {MARKER!r} where the flag table goes")
        return markdown
    return markdown.replace(MARKER, flags_table(SETTINGS, TrainConfig().to_dict()))
