"""The report: HTML that parses with every image decodable at its stated size, a PDF with the expected
pages and the metrics in its text, and a comparison of two runs of different latent size."""

import base64
import html.parser
import io
import json

import matplotlib.image
import pypdf
import pytest

from vaelab.cli import main
from vaelab.config import make_config
from vaelab.report import pdf_page_count, write_report
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


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, small_run, mnist_raw):
    """The small CVAE (d = 8) and a VAE with d = 2, both evaluated with a few importance samples."""
    vae = tmp_path_factory.mktemp("runs") / "vae-k2"
    train(make_config(dict(model="vae", latent_dim=2, hidden=(128,), limit_train=2000, epochs=2, batch_size=100)),
          vae, log=lambda _: None, progress=False)
    for path in (small_run, vae):
        assert main(["evaluate", str(path), "--iw-samples", "5", "--no-progress"]) == 0
    return [small_run, vae]


def test_report_html_and_pdf(two_runs, tmp_path):
    report = write_report(two_runs, tmp_path / "report.html", tmp_path / "report.pdf", title="Test report")

    checker = _Checker()
    checker.feed((tmp_path / "report.html").read_text())
    assert not checker.errors and checker.stack == []
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


def test_study_command_runs_end_to_end(tmp_path, mnist_raw, capsys):
    code = main(["study", "--out", str(tmp_path / "study"), "--latent-dims", "2,5", "--epochs", "1",
                 "--limit-train", "1000", "--iw-samples", "3", "--no-progress"])
    assert code == 0
    for d in (2, 5):
        assert json.loads((tmp_path / "study" / f"vae-k{d}" / "eval.json").read_text())["iw_samples"] == 3
    page = (tmp_path / "study" / "report.html").read_text()
    assert "k = 2 vs k = 5" in page and (tmp_path / "study" / "report.pdf").stat().st_size > 10_000
