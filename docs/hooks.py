"""MkDocs hook: the `vaelab train` flag tables, written from the settings and the parser at build time.

A page's `SETTINGS_MARKER` becomes `vaelab.config.flags_table` of every setting in `SETTINGS` with
`TrainConfig`'s defaults; its `MODEL_MARKER` the model settings of every family and network
(`vaelab.config.model_flags_table`); its `RUN_FLAGS_MARKER` becomes a table of the train flags that are not
settings (--out, --resume, ...), read from `vaelab.cli.arguments.build_parser`. So the documented flags
are the parser's own. The training guide must hold both markers: a build without the tables fails
instead of shipping none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this tree's vaelab, as mkdocstrings reads it
from vaelab.cli.arguments import build_parser, model_setting_names  # noqa: E402
from vaelab.config import SETTINGS, TrainConfig, flags_table, model_flags_table  # noqa: E402

SETTINGS_MARKER = "<!-- vaelab: train flags -->"
MODEL_MARKER = "<!-- vaelab: model flags -->"
RUN_FLAGS_MARKER = "<!-- vaelab: train run flags -->"
FLAGS_PAGE = "guides/training.md"


def run_flags_table() -> str:
    """The `vaelab train` flags that are not settings, as a Markdown table: flag (and value), help."""
    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    rows = ["| flag | what |", "|---|---|"]
    for action in commands.choices["train"]._actions:
        if action.dest in SETTINGS or action.dest in model_setting_names() or action.dest == "help":
            continue
        value = "" if action.nargs == 0 else " " + (action.metavar or action.dest.upper())
        what = action.help.replace("|", "\\|") + (" (required)" if action.required else "")
        rows.append(f"| `{', '.join(action.option_strings)}{value}` | {what} |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri == FLAGS_PAGE:
        for marker in (SETTINGS_MARKER, MODEL_MARKER, RUN_FLAGS_MARKER):
            if marker not in markdown:
                raise PluginError(f"{FLAGS_PAGE} lost the marker {marker!r} where a flag table goes")
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, flags_table(SETTINGS, TrainConfig().to_dict()))
    if MODEL_MARKER in markdown:
        markdown = markdown.replace(MODEL_MARKER, model_flags_table())
    if RUN_FLAGS_MARKER in markdown:
        markdown = markdown.replace(RUN_FLAGS_MARKER, run_flags_table())
    return markdown
