"""`vaelab explore`: the endpoints' numbers against the model's, bad requests, and the page in a real browser
(a grey run, and a colour run whose canvases show its colours and whose page turns the drawing pad off)."""

import base64
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("starlette", reason="the explore extra is not installed (make install installs it)")

from starlette.testclient import TestClient  # noqa: E402

from vaelab import inference  # noqa: E402
from vaelab.cli import main  # noqa: E402
from vaelab.explore import session  # noqa: E402
from vaelab.explore.server import MAX_BODY, build_app  # noqa: E402
from vaelab.models import decoder_mean  # noqa: E402

from .colour_runs import train_flags, write_colour_npz  # noqa: E402
from .progress import HANG_GUARD, wait_until  # noqa: E402

PAGE_GUARD = 600  # seconds: a page that has not updated by then never will (it takes well under one)


@pytest.fixture(scope="module")
def explored(small_run):
    return session.explore_runs([small_run, small_run], device="cpu")


@pytest.fixture(scope="module")
def client(explored):
    return TestClient(build_app(explored), raise_server_exceptions=False)


def _decoded(explored_run, z, label):
    """What the model's decoder gives for z under label, as the page must show it (uint8)."""
    model = explored_run.run.model
    with torch.no_grad():
        means = decoder_mean(model.decoder(torch.as_tensor(z, dtype=torch.float32)[None],
                                           torch.tensor([label])))
    return np.round(means[0, 0].numpy() * 255)


@pytest.mark.slow
def test_runs_are_described(client, explored):
    runs = client.get("/api/runs").json()["runs"]
    assert [run["name"] for run in runs] == [explored[0].name, explored[0].name + "'"]
    assert runs[0]["classes"] == [str(c) for c in range(10)] and runs[0]["latent_dim"] == 8


@pytest.mark.slow
def test_sliders_move_the_units_of_z_from_the_most_active(client, explored):
    run = explored[0]
    assert np.allclose(run.directions @ run.directions.T, np.eye(len(run.scales)), atol=1e-8)  # orthonormal
    np.testing.assert_array_equal(run.directions, np.eye(run.mean.shape[0])[run.units])  # each slider a unit of z
    assert np.all(np.diff(run.scales) <= 1e-12)  # the largest spread first
    np.testing.assert_array_equal(run.active, run.scales ** 2 > 0.01)  # Burda et al.'s activity, greyed where off
    described = client.get("/api/runs").json()["runs"][0]
    assert described["units"] == run.units.tolist() and described["active"] == run.active.tolist()
    values = [0.0] * len(run.scales)
    values[0] = 2.0
    answer = client.post("/api/decode", json={"run": 0, "sliders": values, "label": 3}).json()
    z = np.asarray(answer["z"][0])
    np.testing.assert_allclose(z, run.mean + 2 * run.scales[0] * run.directions[0], atol=1e-9)
    np.testing.assert_array_equal(np.asarray(answer["images"][0]), _decoded(run, z, 3))


@pytest.mark.slow
def test_interpolation_random_and_a_drawn_digit(client, explored, mnist_raw):
    strip = client.post("/api/interpolate", json={"run": 0, "first": 0, "last": 7, "steps": 5, "label": 2}).json()
    assert len(strip["images"]) == 5
    z = np.asarray(strip["z"])
    np.testing.assert_allclose(z[2], (z[0] + z[4]) / 2, atol=1e-9)  # a straight line in z
    first = client.post("/api/random", json={"run": 0, "seed": 4, "label": 1}).json()
    again = client.post("/api/random", json={"run": 0, "seed": 4, "label": 1}).json()
    assert first == again
    run = explored[0]
    digit = run.test_x[1]  # a real test image, as if drawn
    analysis = client.post("/api/analyse", json={"run": 0, "image": digit[0].tolist()}).json()
    # the Bayes rule p(y | x) ~ pi_y p(x | y), log p(x | y) by importance sampling (seed 0)
    per_class = inference.log_likelihood_per_class(run.run.model, digit[None], session.POSTERIOR_SAMPLES,
                                                    torch.Generator().manual_seed(0))[0]
    expected = torch.softmax(per_class + run.run.model.class_log_prior(), 0)
    np.testing.assert_allclose(analysis["posterior"], expected.detach().numpy(), atol=1e-5)
    assert analysis["label"] == int(np.argmax(analysis["posterior"])) and len(analysis["style"]) == 10
    named = [client.post("/api/analyse", json={"run": 0, "image": run.test_x[i, 0].tolist()}).json()["label"]
             for i in range(30)]
    assert np.mean(np.asarray(named) == run.test_y[:30].numpy()) > 0.5  # far above chance (0.1)
    np.testing.assert_array_equal(np.asarray(analysis["reconstruction"]),
                                  _decoded(explored[0], analysis["z"], analysis["label"]))


@pytest.mark.slow
@pytest.mark.parametrize("path, body, status, message", [
    ("/api/decode", {"run": 9}, 400, "run must be a whole number from 0 to 1"),
    ("/api/decode", {"run": 0, "z": "abc"}, 400, "z must be an array"),
    ("/api/decode", {"run": 0, "z": [1.0] * 7}, 400, "shape [8]"),
    ("/api/decode", {"run": 0, "z": [[1.0] * 8] * 65}, 400, "at most 64 codes"),
    ("/api/decode", {"run": 0, "z": [1e9] * 8}, 400, "between"),
    ("/api/decode", '{"run": 0, "sliders": [NaN, 0, 0, 0, 0, 0, 0, 0]}', 400, "must be JSON"),
    ("/api/decode", {"run": 0, "z": [0.0] * 8, "label": 10}, 400, "label must be"),
    ("/api/decode", {"run": 0, "z": [0.0] * 8, "label": True}, 400, "label must be"),
    ("/api/decode", [1, 2], 400, "JSON object"),
    ("/api/interpolate", {"run": 0, "first": 0, "last": 10_000}, 400, "last must be"),
    ("/api/interpolate", {"run": 0, "first": 0, "last": 1, "steps": 1000}, 400, "steps must be"),
    ("/api/random", {"run": 0, "seed": -1}, 400, "seed must be"),
    ("/api/analyse", {"run": 0, "image": [[0.5] * 28] * 27}, 400, "shape [28, 28]"),
    ("/api/analyse", {"run": 0, "image": [[2.0] * 28] * 28}, 400, "between 0 and 1"),
])
def test_bad_requests_get_a_4xx_with_a_short_json_error(client, path, body, status, message):
    answer = client.post(path, content=body, headers={"content-type": "application/json"}) if isinstance(body, str) \
        else client.post(path, json=body)
    assert answer.status_code == status and message in answer.json()["error"]
    assert "Traceback" not in answer.text and len(answer.text) < 300


@pytest.mark.slow
def test_not_json_oversized_bodies_wrong_methods_and_paths_outside_the_static_folder(client):
    assert client.post("/api/decode", content=b"{not json").status_code == 400
    huge = client.post("/api/analyse", content=b"[" + b"0," * MAX_BODY + b"0]",
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "at most" in huge.json()["error"]
    assert client.get("/api/decode").status_code == 405
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py",
                 "/static//etc/passwd", "/static/%2e%2e/%2e%2e/cli.py", "/../vaelab/cli/commands.py", "/nothing"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert "import" not in answer.text
    assert client.get("/static/app.js").status_code == 200


def test_explore_without_the_extra_says_what_to_install(monkeypatch, capsys, tmp_path):
    import builtins

    real_import = builtins.__import__

    def without_starlette(name, *args, **kwargs):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_starlette)
    assert main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'vaelab[explore]'" in err and len(err.strip().splitlines()) == 1


def test_explore_on_a_busy_port_or_a_missing_run_is_one_line(capsys, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        assert main(["explore", str(tmp_path), "--port", str(busy.getsockname()[1])]) == 2
    assert "pass another --port" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "none"), "--port", str(_free_port())]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---- the page in a real browser ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("Chromium and its driver are not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@contextlib.contextmanager
def _explorer(paths):
    """`vaelab explore PATHS` in a process of its own; yields its URL, stops it with Ctrl-C."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "vaelab", "explore", *map(str, paths),
                               "--port", str(port), "--device", "cpu"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_until(listening, server, f"the explorer listened on port {port}")
    yield f"http://127.0.0.1:{port}/"
    server.send_signal(__import__("signal").SIGINT)  # Ctrl-C: a clean stop
    out, err = server.communicate(timeout=HANG_GUARD)
    assert server.returncode in (0, 130), err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def served(small_run):
    with _explorer([small_run, small_run]) as url:
        yield url


def _shown(driver, element_id, colour=False):
    """The pixels of a canvas on the page (its own resolution): gray values [H, W], or [H, W, 3] RGB."""
    data = driver.execute_script(
        "const c = document.getElementById(arguments[0]);"
        "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
        element_id)
    width, height, rgba = data
    pixels = np.asarray(rgba, dtype=np.float64).reshape(height, width, 4)
    return pixels[..., :3] if colour else pixels[..., 0]


def _wait(driver, condition):
    """Until the page shows what `condition` asks for (its requests answered, its canvases drawn)."""
    wait_until(condition, None, "the page updated", hang_guard=PAGE_GUARD)


@pytest.mark.slow
def test_the_page_shows_what_the_decoder_gives(browser, served, explored):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(served)
    _wait(browser, lambda: browser.find_element(By.ID, "status").text == "ready")
    # click a class, move a slider
    browser.find_element(By.CSS_SELECTOR, "#classes button[data-label='7']").click()
    slider = browser.find_element(By.CSS_SELECTOR, "#sliders input[data-k='0']")
    browser.execute_script("arguments[0].value = 1.5; arguments[0].dispatchEvent(new Event('input'));", slider)
    run = explored[0]
    z = run.mean + 1.5 * run.scales[0] * run.directions[0]
    expected = _decoded(run, z, 7)
    _wait(browser, lambda: np.abs(_shown(browser, "view-0") - expected).max() <= 1)
    assert np.abs(_shown(browser, "view-1") - expected).max() <= 1  # the second run, the same z
    # draw a stroke: the reconstruction and the class posterior appear
    pad = browser.find_element(By.ID, "draw")
    ActionChains(browser).move_to_element_with_offset(pad, -40, -100).click_and_hold() \
        .move_by_offset(20, 60).move_by_offset(20, 60).move_by_offset(10, 60).release().perform()
    _wait(browser, lambda: browser.find_element(By.ID, "analysis").get_attribute("data-state") == "done"
          and len(browser.find_elements(By.CSS_SELECTOR, "#analysis .bar")) == 20)  # the last stroke's analysis
    drawn = browser.execute_script("return drawnImage(state.runs[0]);")
    assert np.asarray(drawn).max() > 0.5  # the stroke reached the model's image
    analysis = session.analyse(run, np.asarray(drawn))
    shown = _shown(browser, browser.execute_script(
        "const c = document.querySelector('#analysis canvas.reconstruction'); c.id = 'shown-reconstruction';"
        "return c.id;"))
    assert np.abs(shown - analysis["reconstruction"]).max() <= 1
    from PIL import Image

    screenshot = Image.open(io.BytesIO(base64.b64decode(browser.get_screenshot_as_base64())))
    assert screenshot.size[0] >= 1000
    if os.environ.get("VAELAB_SCREENSHOT"):  # how docs/images/explorer.png is made (see docs/guides/explorer.md)
        screenshot.save(os.environ["VAELAB_SCREENSHOT"])


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A CVAE on a small 3-channel dataset (`colour_runs.py`), 2 epochs."""
    root = tmp_path_factory.mktemp("colour")
    assert main(train_flags(write_colour_npz(root / "rgb.npz"), root / "run", "--model", "cvae")) == 0
    return root / "run"


@pytest.mark.slow
def test_the_page_draws_a_colour_run_in_colour_and_turns_the_drawing_pad_off(browser, colour_run):
    from selenium.webdriver.common.by import By

    run = session.explore_runs([colour_run], device="cpu")[0]
    with torch.no_grad():  # the page starts at the sliders' centre, z = the test posteriors' mean
        means = decoder_mean(run.run.model.decoder(torch.as_tensor(run.mean, dtype=torch.float32)[None],
                                                   torch.tensor([2])))
    expected = np.round(255 * means[0].numpy().transpose(1, 2, 0))  # [H, W, RGB]
    with _explorer([colour_run]) as url:
        browser.get(url)
        _wait(browser, lambda: browser.find_element(By.ID, "status").text == "ready")
        browser.find_element(By.CSS_SELECTOR, "#classes button[data-label='2']").click()
        _wait(browser, lambda: np.abs(_shown(browser, "view-0", colour=True) - expected).max() <= 1)
        assert np.abs(expected[..., 0] - expected[..., 2]).max() > 5  # a test that grey could not pass
        assert not browser.find_element(By.ID, "draw").is_displayed()  # one grey channel: no use to this run
        note = browser.find_element(By.ID, "draw-note")
        assert note.is_displayed() and "draws one grey channel" in note.text and "run (3 channels)" in note.text


@pytest.fixture(scope="module")
def other_families(tmp_path_factory, mnist_raw):
    """A 2-D VAE (no classes: the manifold) and an M2 (its classifier names a drawing), 1 epoch each."""
    from vaelab.config import make_config
    from vaelab.training import train

    root = tmp_path_factory.mktemp("families")
    small = dict(hidden=(64,), limit_train=1000, batch_size=100, epochs=1, compile="off", sample_epochs=(1,))
    train(make_config(dict(small, model="vae", latent_dim=2)), root / "vae", log=lambda _: None, progress=False)
    train(make_config(dict(small, model="m2", latent_dim=4, labels=100)), root / "m2", log=lambda _: None,
          progress=False)
    return root


@pytest.mark.slow
def test_every_family_explores_and_nothing_is_written(other_families):
    before = {path: path.stat().st_mtime_ns for path in other_families.rglob("*")}
    vae, m2 = session.explore_runs([other_families / "vae", other_families / "m2"], device="cpu")
    client = TestClient(build_app([vae, m2]), raise_server_exceptions=False)
    runs = client.get("/api/runs").json()["runs"]
    assert runs[0]["classes"] == [] and runs[0]["directions"] == 2 and len(runs[1]["classes"]) == 10
    # the 2-D VAE: a point of the manifold is its code, no label
    answer = client.post("/api/decode", json={"run": 0, "z": [1.5, -0.5]}).json()
    with torch.no_grad():
        expected = decoder_mean(vae.run.model.decoder(torch.tensor([[1.5, -0.5]]), None))[0, 0].numpy()
    np.testing.assert_array_equal(np.asarray(answer["images"][0]), np.round(expected * 255))
    assert client.post("/api/decode", json={"run": 0, "z": [0, 0], "label": 1}).status_code == 400
    drawn = vae.test_x[0, 0].numpy().tolist()
    analysis = client.post("/api/analyse", json={"run": 0, "image": drawn}).json()
    assert analysis["posterior"] == [] and analysis["label"] is None and "style" not in analysis
    # the M2: q(y | x) is the posterior of a drawing, read as drawn (its q reads gray levels)
    analysis = client.post("/api/analyse", json={"run": 1, "image": drawn}).json()
    with torch.no_grad():
        expected = m2.run.model.classifier(torch.tensor(drawn)[None, None]).probs[0].numpy()
    np.testing.assert_allclose(analysis["posterior"], expected, atol=1e-6)
    assert len(analysis["style"]) == 10
    assert {path: path.stat().st_mtime_ns for path in other_families.rglob("*")} == before


def test_serving_beyond_the_loopback_warns(monkeypatch):
    from vaelab.explore import server

    said = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)
    server.serve([], "0.0.0.0", 8765, log=said.append)
    assert "warning" in said[0] and "not the loopback" in said[0]
    said.clear()
    server.serve([], "127.0.0.1", 8765, log=said.append)
    assert not any("warning" in line for line in said)
