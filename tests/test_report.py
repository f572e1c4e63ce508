"""The report: HTML that parses with every image decodable at its stated size, every title, name and
caption escaped, a PDF with the expected pages and the metrics in its text, and a comparison of two
runs of different latent size."""

import base64
import html.parser
import io
import json
import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pypdf
import pytest

from vaelab.cli import main
from vaelab.config import make_config
from vaelab.report import Figure, Report, RunSection, Table, pdf_page_count, render_html, write_report
from vaelab.pictures.grids import (CHANNEL_GAP_VALUE, COLOUR_PADDING, grid_figure, image_stack, mosaic, png_bytes, save_sample_grid)
from vaelab.runs import RunDir
from vaelab.training import train

VOID = {"meta", "img", "br", "hr", "link", "input"}


class _Checker(html.parser.HTMLParser):
    """Collects images and checks that every non-void element is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
        else:
            self.stack.pop()


class _Text(html.parser.HTMLParser):
    """The text of every element of a page, by tag, as a reader sees it (entities decoded)."""

    def __init__(self):
        super().__init__()
        self.open, self.text = [], {}

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)

    def handle_endtag(self, tag):
        self.open.pop()

    def handle_data(self, data):
        if self.open:
            self.text.setdefault(self.open[-1], []).append(data)


def images_drawn_on(page) -> list:
    """The images a PDF page's content draws (PIL images). matplotlib's pages share one resource
    dictionary, so `page.images` lists every page's; the page's own are those its `Do` operators name."""
    names = re.findall(rb"/([A-Za-z0-9_.]+) Do\b", page.get_contents().get_data())
    available = set(page.images.keys())
    return [page.images[f"/{name.decode()}"].image for name in names if f"/{name.decode()}" in available]


def _png() -> bytes:
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, np.zeros((3, 4)), format="png")
    return buffer.getvalue()


HOSTILE = '<script>alert("x")</script> & <b>bold</b>'


def test_titles_names_and_captions_are_escaped_in_the_html():
    def section(name):
        figures = [Figure(kind, f"{kind} caption {HOSTILE}", _png()) for kind in ("curves", "samples", "latent")]
        return RunSection(name=name, path=Path("runs") / name, equations=[f"a < b & c {HOSTILE}"],
                          tables=[Table(f"caption {HOSTILE}", ["metric", HOSTILE], [[HOSTILE, "1.00"]])],
                          figures=figures, notes=[f"note {HOSTILE}"])

    report = Report(title=f"Report {HOSTILE}", runs=[section(f"run one {HOSTILE}"), section("run & two")],
                    comparison_tables=[Table("side by side", ["metric", "a & b"], [["x < y", "2"]])],
                    comparison_figures=[Figure("comparison_curves", f"curves {HOSTILE}", _png())])
    page = render_html(report)

    assert "<script" not in page and "<b>" not in page  # nothing from the content became markup
    assert "&lt;script&gt;alert(" in page and "&amp; &lt;b&gt;bold&lt;/b&gt;" in page and "run &amp; two" in page
    checker, text = _Checker(), _Text()
    checker.feed(page)
    text.feed(page)
    assert not checker.errors and checker.stack == []
    assert text.text["title"] == text.text["h1"] == [f"Report {HOSTILE}"]  # shown as written
    assert f"run one {HOSTILE}" in text.text["a"] and "run & two" in text.text["h2"]
    assert f"note {HOSTILE}" in text.text["p"] and HOSTILE in text.text["td"] and HOSTILE in text.text["th"]
    assert all(image["alt"].endswith(HOSTILE) for image in checker.images)


def test_image_grids_are_row_major_whatever_the_images_shape():
    images = np.arange(3 * 2 * 3, dtype=np.float32).reshape(3, 2, 3)  # three 2 x 3 images
    canvas = mosaic(images, columns=2, pad=1)
    assert canvas.shape == (2 * 3 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(canvas[0:2, 0:3], images[0])
    np.testing.assert_array_equal(canvas[0:2, 4:7], images[1])
    np.testing.assert_array_equal(canvas[3:5, 0:3], images[2])
    np.testing.assert_array_equal(canvas[3:5, 4:7], 0)  # no fourth image: blank
    np.testing.assert_array_equal(mosaic(images[:, None], columns=2, pad=1), canvas)  # [n, 1, H, W]


def test_colour_grids_hold_each_images_own_red_green_and_blue_on_a_neutral_padding():
    images = np.random.default_rng(0).random((3, 3, 2, 3)).astype(np.float32)  # three RGB 2 x 3 images
    canvas = mosaic(images, columns=2, pad=1)
    assert canvas.shape == (2 * 3 - 1, 2 * 4 - 1, 3)
    for index, (top, left) in enumerate([(0, 0), (0, 4), (3, 0)]):
        for channel in range(3):  # red, green, blue: channel c of image i is colour c of its cell
            np.testing.assert_array_equal(canvas[top : top + 2, left : left + 3, channel], images[index, channel])
    np.testing.assert_array_equal(canvas[2], np.float32(COLOUR_PADDING))  # padding between the rows
    np.testing.assert_array_equal(canvas[:2, 3], np.float32(COLOUR_PADDING))  # ... and the columns
    np.testing.assert_array_equal(canvas[3:5, 4:7], np.float32(COLOUR_PADDING))  # no fourth image: padding
    assert image_stack(images).shape == (3, 2, 3, 3)


@pytest.mark.parametrize("channels", [2, 4])
def test_other_channel_counts_are_drawn_channel_by_channel_side_by_side(channels):
    images = np.random.default_rng(channels).random((2, channels, 2, 3)).astype(np.float32)
    stack = image_stack(images)
    assert stack.shape == (2, 2, channels * 4 - 1)  # C grey images of width 3 and C - 1 gaps of 1
    for channel in range(channels):
        np.testing.assert_array_equal(stack[:, :, 4 * channel : 4 * channel + 3], images[:, channel])
    for gap in range(3, channels * 4 - 1, 4):
        np.testing.assert_array_equal(stack[:, :, gap], CHANNEL_GAP_VALUE)
    canvas = mosaic(images, columns=2, pad=2)
    assert canvas.shape == (2, 2 * stack.shape[2] + 2)
    np.testing.assert_array_equal(canvas[:, stack.shape[2] + 2 :], stack[1])
    with pytest.raises(ValueError, match="shape"):
        image_stack(np.zeros((2, 3)))


def _png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int64)


def _has_colour(pixels: np.ndarray, colour) -> bool:
    """Whether some pixel of an RGB image (0..255) is `colour` (0..255) to 1/255."""
    return bool((np.abs(pixels - np.asarray(colour)).max(-1) <= 1).any())


def test_a_saved_colour_grid_shows_every_images_true_colour_and_a_grey_grid_black_ink_on_white(tmp_path):
    colours = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 1.0], [0.5, 0.5, 0.0]], np.float32)
    images = np.broadcast_to(colours[:, :, None, None], (4, 3, 6, 6)).copy()  # each image one colour
    save_sample_grid(tmp_path / "colour.png", images, 2, None, (), "colour")
    pixels = _png_pixels((tmp_path / "colour.png").read_bytes())
    for colour in colours:
        assert _has_colour(pixels, np.round(255 * colour)), colour  # not inverted, not greyed
        assert not _has_colour(pixels, np.round(255 * (1 - colour)))
    assert _has_colour(pixels, [round(255 * COLOUR_PADDING)] * 3)
    grey = np.array([0.0, 0.25, 0.6, 1.0], np.float32)[:, None, None, None] * np.ones((4, 1, 6, 6), np.float32)
    save_sample_grid(tmp_path / "grey.png", grey, 2, None, (), "grey")
    pixels = _png_pixels((tmp_path / "grey.png").read_bytes())
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()  # no colour
    for value in grey[:, 0, 0, 0]:
        assert _has_colour(pixels, [round(255 * (1 - value))] * 3)  # inverted: ink 1.0 is black
    assert _has_colour(pixels, [0, 0, 0]) and _has_colour(pixels, [255, 255, 255])


def test_drawing_leaves_the_callers_matplotlib_backend_and_pyplot_alone(tmp_path):
    import subprocess
    import sys

    script = f"""
import sys, matplotlib
matplotlib.use("svg")  # a caller's own backend, as a notebook has
import numpy as np
from vaelab import pictures
from vaelab.report.pdf import render_pdf
from vaelab.report import Report
pictures.save_sample_grid(r"{tmp_path / 'grid.png'}", np.zeros((4, 3, 5, 5)), 2, None, (), "t")
pictures.png_bytes(pictures.curves_figure([dict(epoch=1, train_elbo=-1.0, valid_elbo=-1.0, valid_recon=-1.0,
                                           valid_kl=0.5)], "train_elbo", "ELBO", dict(recon="r", kl="k")))
pictures.png_bytes(pictures.manifold_figure(np.zeros((9, 1, 4, 4)), np.linspace(-1, 1, 3), "m"))
render_pdf(Report("t", [], [], []))
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "matplotlib.pyplot" not in sys.modules, "pyplot was imported"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    import matplotlib.pyplot as plt  # and where pyplot is in use, drawing adds no figure to it

    before = plt.get_fignums()
    png_bytes(grid_figure(np.zeros((4, 3, 5, 5)), 2, "t"))
    assert plt.get_fignums() == before


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_run, mnist_raw):
    """The small CVAE (d = 8) and a VAE with d = 2, both evaluated with a few importance samples."""
    vae = tmp_path_factory.mktemp("runs") / "vae-k2"
    train(make_config(dict(model="vae", latent_dim=2, hidden=(128,), limit_train=2000, epochs=2, batch_size=100)),
          vae, log=lambda _: None, progress=False)
    for path in (small_run, vae):
        assert main(["evaluate", str(path), "--iw-samples", "5", "--no-progress"]) == 0
    return [small_run, vae]


@pytest.mark.slow
def test_report_html_and_pdf(two_runs, tmp_path):
    report = write_report(two_runs, tmp_path / "report.html", tmp_path / "report.pdf", title=f"Test {HOSTILE}")

    checker, page = _Checker(), (tmp_path / "report.html").read_text()
    checker.feed(page)
    assert not checker.errors and checker.stack == []
    assert "<script" not in page and "<title>Test &lt;script&gt;alert(" in page  # the title, escaped
    assert len(checker.images) >= 12
    for image in checker.images:
        assert image["src"].startswith("data:image/png;base64,")  # self-contained: nothing to fetch
        pixels = matplotlib.image.imread(io.BytesIO(base64.b64decode(image["src"].split(",", 1)[1])), format="png")
        assert (pixels.shape[1], pixels.shape[0]) == (int(image["width"]), int(image["height"]))
        assert image["alt"]

    names = {f.name for f in report.runs[0].figures}
    assert {"curves", "samples", "reconstructions", "latent", "style_transfer", "samples_epoch_001"} <= names
    vae_names = {f.name for f in report.runs[1].figures}
    assert "manifold" in vae_names and "style_transfer" not in vae_names  # d = 2, unconditional
    for run in two_runs:
        for name in ("curves", "samples", "reconstructions", "latent"):
            stored = RunDir(run).path / "figures" / f"{name}.png"
            assert matplotlib.image.imread(stored).ndim == 3

    pdf = pypdf.PdfReader(tmp_path / "report.pdf")
    assert len(pdf.pages) == pdf_page_count(report) == 1 + 4 * 2 + 1
    text = " ".join(page.extract_text() for page in pdf.pages)
    evaluation = json.loads(RunDir(two_runs[0]).eval.read_text())
    assert "test ELBO" in text and f"{evaluation['elbo']:.2f}" in text
    assert f"{evaluation['log_likelihood']:.2f}" in text and "epoch" in text
    first = pdf.pages[0].extract_text()  # the first page carries the results: the comparison and the curves
    assert "The runs side by side" in first and "Images show Bernoulli means" in first
    for run in two_runs:
        assert f"{json.loads(RunDir(run).eval.read_text())['log_likelihood']:.2f}" in first
    assert len(images_drawn_on(pdf.pages[0])) == 1


@pytest.mark.slow
def test_report_comparison_has_both_runs(two_runs, tmp_path):
    write_report(two_runs, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    assert "Comparison" in page and "d = 8" in page and "d = 2" in page
    for run in two_runs:
        evaluation = json.loads(RunDir(run).eval.read_text())
        assert f"{evaluation['log_likelihood']:.2f}" in page


def test_report_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none"), "-o", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_study_command_runs_end_to_end(tmp_path, mnist_raw, capsys):
    code = main(["study", "--out", str(tmp_path / "study"), "--latent-dims", "2,5", "--epochs", "1",
                 "--limit-train", "1000", "--iw-samples", "3", "--no-progress"])
    assert code == 0
    for d in (2, 5):
        assert json.loads((tmp_path / "study" / f"vae-k{d}" / "eval.json").read_text())["iw_samples"] == 3
    page = (tmp_path / "study" / "report.html").read_text()
    assert "k = 2 vs k = 5" in page
    pdf = pypdf.PdfReader(tmp_path / "study" / "report.pdf")
    assert len(pdf.pages) == 1 + 4 * 2 + 1
    text = " ".join(pdf_page.extract_text() for pdf_page in pdf.pages)
    assert "VAE on binarised MNIST: latent size k = 2 vs k = 5" in text and "The runs side by side" in text
    for d in (2, 5):
        evaluation = json.loads((tmp_path / "study" / f"vae-k{d}" / "eval.json").read_text())
        assert f"vae-k{d}: VAE, d = {d}" in text
        for key in ("elbo", "kl", "log_likelihood"):
            assert f"{evaluation[key]:.2f}" in text
        assert f"{-evaluation['recon']:.2f}" in text  # the reconstruction term, -E_q[log p(x|z)]
