"""The documentation: the README fits a screen, the site builds with `mkdocs build --strict`, its flag
table is the settings table, its API reference holds the docstrings, and nothing points outside the
repository or speaks of commits and old versions."""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.cli.arguments import model_setting_names
from vaelab.config import SETTINGS, Setting, TrainConfig, flag, flags_table, model_flags_table

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# What a user's documentation must not hold: links to files outside the repository, the project's
# own history, and commit hashes (7-40 hex digits, with a digit and a letter, standing alone: a
# 64-digit SHA-256 of a data file is not one, and neither is an English word such as "decade").
FORBIDDEN = ("../shared", "REFERENCE.md", "vaelab 0.1")
COMMIT_HASH = re.compile(r"(?<![0-9A-Za-z_.-])(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![0-9A-Za-z_-])")


def problems_in(text: str) -> list[str]:
    found = [word for word in FORBIDDEN if word in text]
    return found + [f"commit-like {match.group()!r}" for match in COMMIT_HASH.finditer(text)]


def table_rows(table: str) -> list[list[str]]:
    """A Markdown table's rows as cells (escaped pipes stay inside their cell)."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in table.splitlines()]


# --- the flag table (pure, fast) ---

def test_flags_table_has_one_row_per_setting_with_its_default_and_resume_rule():
    rows = table_rows(flags_table(SETTINGS, TrainConfig().to_dict()))
    header, rule, body = rows[0], rows[1], rows[2:]
    assert header == ["flag", "default", "allowed", "what", "may change on `--resume`"]
    assert set("".join(rule)) == {"-"}
    assert [row[0].split("`")[1] for row in body] == [flag(name) for name in SETTINGS]
    assert all(len(row) == len(header) for row in body)
    by_flag = {row[0].split("`")[1]: row for row in body}
    assert by_flag["--lr"][1] == "`0.001`"
    assert by_flag["--batch-size"][1] == "`128`; `200` with `--model m2, adgm, sdgm`"
    assert by_flag["--labels"][1] == "not set"
    assert by_flag["--tensorboard"][0] == "`--tensorboard` / `--no-tensorboard`"
    assert by_flag["--tensorboard"][1] == "off"
    assert [row[-1] for row in body] == ["yes" if s.changes_on_resume else "no" for s in SETTINGS.values()]


def test_the_model_flags_table_has_a_row_per_model_setting_with_who_takes_it_and_each_default():
    rows = table_rows(model_flags_table())
    assert rows[0] == ["flag", "taken by", "default", "allowed", "what"]
    by_flag = {row[0].split("`")[1]: row for row in rows[2:]}
    assert by_flag["--latent-dim"][1:4] == ["`--model vae, cvae, m2, adgm, sdgm`", "`40` (vae, cvae); `50` (m2, adgm, sdgm)",
                                            "a whole number from 1 to 10,000"]
    # a family's defaults for its network's settings (M2's recipe) are named with it
    assert by_flag["--hidden"][1:3] == ["`--model adgm, sdgm` and `--network mlp`",
                                        "`500` (adgm, sdgm); `500,500` (mlp); `500` with `--model m2`"]
    assert by_flag["--depth"][2] == "`1` (conv); `2` (resnet)"
    assert by_flag["--alpha"][2] == "not set"
    assert "--encoder" not in by_flag  # modules handed to vaelab.train have no flags
    assert set(by_flag) == {flag(name) for name in model_setting_names()}


def test_a_new_setting_gets_a_row_and_a_pipe_in_its_help_splits_no_cell():
    settings = dict(SETTINGS, gamma=Setting(float, 1.0, "weight of KL(q(z | x) || p(z))", minimum=0.0, maximum=100.0,
                                            changes_on_resume=True))
    rows = table_rows(flags_table(settings, dict(TrainConfig().to_dict(), gamma=1.0)))
    assert rows[-1] == ["`--gamma`", "`1`", "a finite number &gt; 0 and &lt;= 100",
                        r"weight of KL(q(z \| x) \|\| p(z))", "yes"]
    assert len(rows) == len(SETTINGS) + 3


# --- the README ---

def test_readme_fits_a_screen_and_starts_with_make_run_and_make_test():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 160
    commands = [line.split("#")[0].strip() for line in lines]
    assert "make run" in commands and "make test" in commands
    assert "pip install ." in text
    assert problems_in(text) == []


def test_readme_links_to_pages_that_exist():
    for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", README.read_text()):
        assert (ROOT / target).is_file(), target


def test_no_docs_source_points_outside_the_repository():
    for page in sorted(DOCS.rglob("*.md")):
        assert problems_in(page.read_text()) == [], page.relative_to(ROOT)


# --- the site ---

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site as `make docs` builds it, with --strict (every warning an error), into a tmp folder."""
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                            "-d", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """The text of a built page's article (no navigation, no asset names), tags removed, and the
    contents of its style and script elements (a notebook page inlines Jupyter's stylesheet)."""
    source = (site / page / "index.html").read_text()
    article = source[source.index("<article"):source.index("</article>")]
    article = re.sub(r"<(style|script)\b.*?</\1>", " ", article, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", article))


@pytest.mark.slow
def test_the_flag_table_page_lists_every_setting(site):
    source = (site / "guides" / "training" / "index.html").read_text()
    assert "vaelab: train flags" not in source  # the marker was replaced
    cells = re.findall(r"<td><code>(--[a-z-]+)</code>", source)
    for name, setting in SETTINGS.items():
        assert cells.count(flag(name)) == 1, flag(name)
        assert html.escape(setting.help, quote=False) in source, name


@pytest.mark.slow
def test_the_training_page_lists_every_train_flag_of_the_parser_once(site):
    import argparse

    from vaelab.cli.arguments import build_parser

    commands = next(action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction))
    options = [option for action in commands.choices["train"]._actions if action.dest != "help"
               for option in action.option_strings]
    source = (site / "guides" / "training" / "index.html").read_text()
    first_cells = " ".join(re.findall(r"<tr>\s*<td>(.*?)</td>", source, flags=re.S))
    listed = re.findall(r"<code>(--[a-z-]+)[^<]*</code>", first_cells)
    assert sorted(listed) == sorted(options)


@pytest.mark.slow
def test_the_api_reference_holds_the_docstrings(site):
    import vaelab.api
    import vaelab.inference

    def words(text: str) -> str:  # rendered code spans and line breaks aside
        return " ".join(re.findall(r"\w+", text))

    api = page_text(site, "reference/api")
    assert words(vaelab.api.load_run.__doc__) in words(api)
    assert words(vaelab.api.Run.encode.__doc__) in words(api)
    assert "def " not in api  # signatures, not source code
    assert words(vaelab.inference.elbo.__doc__) in words(page_text(site, "reference/inference"))


@pytest.mark.slow
def test_no_page_points_outside_the_repository_or_fetches_fonts(site):
    pages = sorted(site.rglob("index.html"))
    assert len(pages) >= 20
    for page in pages:
        folder = page.parent.relative_to(site).as_posix()
        text = page_text(site, folder if folder != "." else "")
        assert problems_in(text) == [], folder
        assert "fonts.googleapis" not in page.read_text(), folder


# --- the Python API guide runs as written ---

@pytest.mark.slow
def test_the_python_api_guide_runs_as_written(small_run, capsys, monkeypatch, tmp_path):
    import dataclasses

    import vaelab.api

    whole = vaelab.api.Run.test_data  # the guide's code as it is, on the first 500 test images (seconds, not a minute)

    def first_500(run):
        test = whole(run)
        return dataclasses.replace(test, x=test.x[:500], y=test.y[:500])

    monkeypatch.setattr(vaelab.api.Run, "test_data", first_500)
    guide = (DOCS / "guides" / "python-api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.S)
    assert len(blocks) >= 2 and "runs/cvae-mnist" in blocks[0]
    namespace = {}
    sketches = [block for block in blocks if "..." in block]  # with placeholders to fill: valid Python, not run
    for block in sketches:
        compile(block, "python-api.md", "exec")
    assert 1 <= len(sketches) < len(blocks) - 1
    for block in blocks:
        if block not in sketches:
            exec(block.replace('"runs/cvae-mnist"', repr(str(small_run)))
                 .replace('"runs/cvae-mnist/report.html"', repr(str(tmp_path / "report.html")))
                 .replace("vaelab.open_explorer([run])", f"vaelab.open_explorer([run], port={_free_port()})"),
                 namespace)
    run = namespace["run"]
    assert run.epoch == 4 and (tmp_path / "report.html").is_file()  # resumed: nothing left to train
    assert namespace["images"].shape == (40, *run.model.image_shape)
    assert namespace["means"].shape == (8, *run.model.image_shape)
    assert namespace["terms"].bound.shape == (100,)
    assert "log_likelihood" in capsys.readouterr().out


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- the public import paths are the package's own ---

def test_the_public_import_paths_page_lists_what_each_path_gives():
    """Every name the page lists imports from its path, and a path with `__all__` lists exactly that."""
    import importlib

    rows = re.findall(r"^\| `(vaelab[\w.]*)` \| [^|]+ \| (.+) \|$", (DOCS / "reference" / "public-api.md").read_text(),
                      flags=re.M)
    assert {path for path, _ in rows} >= {"vaelab", "vaelab.models", "vaelab.data", "vaelab.inference"}
    for path, names in rows:
        module = importlib.import_module(path)
        listed = set(re.findall(r"`(\w+)`", names))
        assert [name for name in sorted(listed) if not hasattr(module, name)] == [], path
        if hasattr(module, "__all__"):
            assert listed == set(module.__all__), path


def test_the_training_guide_shows_the_step_as_it_is():
    """The guide's listing of the step is the body of `train_step`, line for line."""
    import inspect
    import textwrap

    from vaelab.training.step import train_step

    source = inspect.getsource(train_step)
    body = textwrap.dedent(source.split('"""', 2)[2])
    guide = (DOCS / "guides" / "training.md").read_text()
    listing = re.search(r"as vaelab runs it,\n\n```python\n(.*?)```", guide, flags=re.S).group(1)
    assert listing.strip() == body.strip()
