"""Colour images end to end: a 3-channel .npz trained on (`vaelab train`), sampled, reconstructed,
reported (HTML and PDF) and explored, each picture's pixels checked against the model's decoder
means channel by channel; the API's (n, C, H, W) round trip; and the report's words true of each
run: two runs in folders of the same name, with different likelihoods and priors."""

import base64
import io
import json
import re

import numpy as np
import pypdf
import pytest
import torch

from vaelab.api import load_run
from vaelab.cli import main
from vaelab.errors import VaelabError
from vaelab.models import decoder_mean
from vaelab import pictures
from vaelab.report import write_report
from vaelab.pictures import mosaic
from vaelab.runs import RunDir
from vaelab.training.samples import GRID_COLUMNS, grid_latents, grid_means

from .colour_runs import CLASSES, SIZE, canvas_in_png, train_flags, write_colour_npz
from .test_report import images_drawn_on


@pytest.fixture(scope="module")
def colour_npz(tmp_path_factory):
    return write_colour_npz(tmp_path_factory.mktemp("data") / "rgb.npz")


@pytest.fixture(scope="module")
def colour_runs(tmp_path_factory, colour_npz):
    """Two CVAEs with d = 2 in folders of the same name, a/run and b/run (so their sections' names
    collide): one Bernoulli under N(0, I), one Gaussian under the VampPrior; both evaluated with 5
    importance samples."""
    root = tmp_path_factory.mktemp("colour")
    cvae, vamp = root / "a" / "run", root / "b" / "run"
    assert main(train_flags(colour_npz, cvae, "--model", "cvae")) == 0
    assert main(train_flags(colour_npz, vamp, "--model", "cvae", "--prior", "vamp", "--pseudo-inputs", "10",
                            "--likelihood", "gaussian", "--binarize", "none")) == 0
    for run in (cvae, vamp):
        assert main(["evaluate", str(run), "--iw-samples", "5", "--no-progress"]) == 0
    return cvae, vamp


def _expected(means: np.ndarray, columns: int) -> np.ndarray:
    """A grid of decoder means as the figure must show it: true colours, 0..255."""
    return np.round(255 * mosaic(means, columns, pad=2))


def test_the_trainers_sample_grid_shows_the_decoder_means_in_their_colours(colour_runs):
    run = load_run(colour_runs[0], checkpoint="latest", device="cpu")  # the model the epoch-2 grid was drawn with
    assert run.model.image_shape == (3, SIZE, SIZE) and run.epoch == 2
    means, rows = grid_means(run.model, grid_latents(run.model, GRID_COLUMNS, run.config.seed), GRID_COLUMNS)
    assert means.shape == (CLASSES * GRID_COLUMNS, 3, SIZE, SIZE) and rows == [0, 1, 2]
    expected = _expected(means, GRID_COLUMNS)
    shown = canvas_in_png(RunDir(run.path).sample_grid(2).read_bytes(), expected.shape)
    assert np.abs(shown - expected).max() <= 1  # every pixel, red, green and blue, to 1/255
    assert np.abs(shown - np.round(255 * (1 - mosaic(means, GRID_COLUMNS)))).max() > 10  # not inverted


def test_sample_and_reconstruct_draw_the_decoder_means_in_colour(colour_runs, tmp_path, monkeypatch):
    cvae, vamp = colour_runs
    run = load_run(cvae, device="cpu")
    assert main(["sample", str(cvae), "-o", str(tmp_path / "samples.png")]) == 0
    images, labels = run.sample(per_class=8, seed=0)  # the command's defaults
    expected = _expected(images, 8)
    assert np.abs(canvas_in_png((tmp_path / "samples.png").read_bytes(), expected.shape) - expected).max() <= 1

    assert main(["reconstruct", str(cvae), "-o", str(tmp_path / "reconstructions.png"), "-n", "4"]) == 0
    test = run.test_data()
    pick = np.random.default_rng(0).choice(test.x.shape[0], size=4, replace=False)  # the command's choice
    x = test.x[pick].numpy()
    expected = _expected(np.concatenate([x, run.reconstruct(x, test.y[pick].numpy())]), 4)
    shown = canvas_in_png((tmp_path / "reconstructions.png").read_bytes(), expected.shape)
    assert np.abs(shown - expected).max() <= 1

    titles = []  # the titles name each run's own likelihood
    monkeypatch.setattr(pictures, "save_sample_grid", lambda path, *args, **named: titles.append(args[-1]))
    monkeypatch.setattr(pictures, "save_reconstructions", lambda path, *args: titles.append(args[-1]))
    for path in (cvae, vamp):
        assert main(["sample", str(path), "-o", str(tmp_path / "t.png")]) == 0
        assert main(["reconstruct", str(path), "-o", str(tmp_path / "t.png")]) == 0
    assert [("Bernoulli" in t, "Gaussian" in t) for t in titles] == [(True, False)] * 2 + [(False, True)] * 2
    assert "Gaussian means of p(x | z = E_q[z])" in titles[3]


def test_the_api_takes_and_gives_colour_images_as_n_c_h_w(colour_runs):
    run = load_run(colour_runs[1], device="cpu")
    test = run.test_data()
    x, y = test.x[:5].numpy(), test.y[:5].numpy()  # (5, 3, 12, 12) in [0, 1]
    z = run.encode(x, y)
    assert z.shape == (5, 2)
    with torch.no_grad():
        np.testing.assert_array_equal(z, run.model.code(torch.as_tensor(x), torch.as_tensor(y)).numpy())
    means = run.decode(z, y)
    assert means.shape == (5, 3, SIZE, SIZE) and 0 <= means.min() and means.max() <= 1
    with torch.no_grad():
        expected = decoder_mean(run.model.decoder(torch.as_tensor(z), torch.as_tensor(y))).numpy()
    np.testing.assert_array_equal(means, expected)
    np.testing.assert_array_equal(run.reconstruct(x.reshape(5, -1), y), run.reconstruct(x, y))  # flat rows, C-major
    images, labels = run.sample(per_class=2, seed=1)
    assert images.shape == (2 * CLASSES, 3, SIZE, SIZE) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(VaelabError, match=r"\(n, 3, 12, 12\)"):
        run.encode(x.transpose(0, 2, 3, 1), y)  # channels last is not the API's layout


def _first_page(pdf_path):
    page = pypdf.PdfReader(pdf_path).pages[0]
    return page.extract_text(), images_drawn_on(page)


def test_a_report_of_two_same_named_runs_tells_them_apart_and_says_what_each_shows(colour_runs, tmp_path,
                                                                                 monkeypatch):
    cvae, vamp = colour_runs
    curves = []
    drawn = pictures.comparison_curves_figure
    monkeypatch.setattr(pictures, "comparison_curves_figure", lambda named: curves.append(named) or drawn(named))
    report = write_report([cvae, vamp], tmp_path / "r.html", tmp_path / "r.pdf")

    names = [section.name for section in report.runs]
    assert names == [f"{cvae}: CVAE, d = 2", f"{vamp}: CVAE, d = 2"]  # both folders are called "run"
    assert [name for name, _ in curves[0]] == names  # the curves' labels
    assert report.comparison_tables[0].header == ["metric"] + names  # the table's column headings

    # each run's words: its likelihood's means, its prior's KL, its prior's quantiles
    cvae_section, vamp_section = report.runs
    assert "in closed form" in cvae_section.parts["kl"] and "Monte-Carlo" in vamp_section.parts["kl"]
    assert "closed form" not in vamp_section.parts["kl"]
    tables = {section.name: " ".join(str(cell) for table in section.tables for row in table.rows for cell in row)
              for section in report.runs}
    assert "in closed form" in tables[cvae_section.name] and "Monte-Carlo" in tables[vamp_section.name]
    for section, words, other in ((cvae_section, "Bernoulli means", "Gaussian"),
                                  (vamp_section, "Gaussian means", "Bernoulli")):
        captions = " ".join(f.caption for f in section.drawn_figures + section.samples_by_epoch)
        assert words in captions and other not in captions
    assert "estimated from 200,000 draws of p(z)" in vamp_section.figure("manifold_class_0").caption
    assert "draws" not in cvae_section.figure("manifold_class_0").caption  # N(0, I): exact quantiles
    config = dict(vamp_section.tables[0].rows)
    assert config["prior"] == "vamp" and "3 × 12 × 12 (RGB colour)" in config["dataset"]
    vamp_test = dict(vamp_section.test_table.rows)
    assert any("Monte-Carlo" in label for label in vamp_test) and not any("Monte" in label for label in
                                                                          dict(cvae_section.test_table.rows))
    assert f"{names[0]}: Bernoulli means" in report.image_note and f"{names[1]}: Gaussian means" in report.image_note
    page = (tmp_path / "r.html").read_text()
    assert "Images show Bernoulli means" not in page and "Images show each run&#39;s decoder means" in page

    # the figures are in colour
    from PIL import Image

    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    coloured = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB"), dtype=int) for s in sources]
    assert sum(bool((np.abs(p[..., 0] - p[..., 1]) > 60).any()) for p in coloured) >= 6

    # the first PDF page: the comparison table with both runs' test log-likelihoods, and the curves
    assert len(pypdf.PdfReader(tmp_path / "r.pdf").pages) == 1 + 4 * 2 + 1
    text, images = _first_page(tmp_path / "r.pdf")
    for path in (cvae, vamp):
        evaluation = json.loads(RunDir(path).eval.read_text())
        assert f"{evaluation['log_likelihood']:.2f}" in text
    assert "The runs side by side" in text and len(images) >= 1


def test_a_one_run_pdf_leads_with_its_test_table_and_samples(colour_runs, tmp_path):
    report = write_report([colour_runs[0]], tmp_path / "one.html", tmp_path / "one.pdf")
    assert len(pypdf.PdfReader(tmp_path / "one.pdf").pages) == 1 + 4
    evaluation = json.loads(RunDir(colour_runs[0]).eval.read_text())
    text, images = _first_page(tmp_path / "one.pdf")
    assert f"{evaluation['log_likelihood']:.2f}" in text and f"{evaluation['elbo']:.2f}" in text
    assert "Test set" in text and "Bernoulli means" in text
    assert len(images) == 1 and report.headline_figure is report.runs[0].figure("samples")
    shown = np.asarray(images[0].convert("RGB"), dtype=int)
    assert (np.abs(shown[..., 0] - shown[..., 2]) > 60).any()  # in colour


def test_the_explorer_serves_colour_images_and_refuses_a_drawing_for_them(colour_runs):
    pytest.importorskip("starlette", reason="the explore extra is not installed")
    from starlette.testclient import TestClient

    from vaelab.explore import session
    from vaelab.explore.server import build_app

    explored = session.explore_runs(list(colour_runs), device="cpu")
    client = TestClient(build_app(explored), raise_server_exceptions=False)
    runs = client.get("/api/runs").json()["runs"]
    assert [(r["name"], r["channels"], r["drawing"], r["image_shape"]) for r in runs] == \
        [("run", 3, False, [3, SIZE, SIZE]), ("run'", 3, False, [3, SIZE, SIZE])]
    z = [[0.5, -1.0], [1.5, 0.25]]
    answer = client.post("/api/decode", json={"run": 0, "z": z, "label": 2}).json()
    images = np.asarray(answer["images"])
    assert images.shape == (2, SIZE, SIZE, 3)  # [n, H, W, C]: red, green, blue last
    with torch.no_grad():
        means = decoder_mean(explored[0].run.model.decoder(torch.tensor(z), torch.tensor([2, 2]))).numpy()
    np.testing.assert_array_equal(images, np.round(255 * means.transpose(0, 2, 3, 1)))
    strip = client.post("/api/interpolate", json={"run": 1, "first": 0, "last": 3, "steps": 4}).json()
    assert np.asarray(strip["images"]).shape == (4, SIZE, SIZE, 3)
    refused = client.post("/api/analyse", json={"run": 1, "image": [[0.0] * SIZE] * SIZE})
    assert refused.status_code == 422 and "3-channel images" in refused.json()["error"]
    assert "Traceback" not in refused.text and len(refused.text) < 300
