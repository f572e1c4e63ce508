"""Users' own images (--dataset FILE.npz or FOLDER): read, split, trained on, and refused when malformed."""

import json

import numpy as np
import pytest

from vaelab.data import get_spec, load_raw, make_splits
from vaelab.data.user import read_user_dataset
from vaelab.errors import DataError


def _images(n=40, shape=(9, 7), classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % classes


def _write_pngs(folder, images, labels, names, mode="L"):
    from PIL import Image

    for index, (image, label) in enumerate(zip(images, labels)):
        where = folder / names[label]
        where.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image if mode == "L" else np.stack([image] * 3, -1), mode=mode)
        picture.save(where / f"{index:03d}.png")


def test_an_npz_file_gives_a_dataset_with_its_shape_classes_and_splits(tmp_path):
    images, labels = _images()
    path = tmp_path / "mine.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["cat", "dog", "owl"]))
    spec = get_spec(str(path))
    assert spec.image_shape == (1, 9, 7) and spec.class_names == ("cat", "dog", "owl") and spec.valid_size == 4
    raw = load_raw(str(path))
    assert raw.train_images.shape == (36, 1, 9, 7) and raw.test_images.shape == (4, 1, 9, 7)
    # every image once, with its own label
    seen = np.concatenate([raw.train_images, raw.test_images]).reshape(40, -1)
    order = [int(np.flatnonzero((images.reshape(40, -1) == row).all(1))[0]) for row in seen]
    assert sorted(order) == list(range(40))
    np.testing.assert_array_equal(np.concatenate([raw.train_labels, raw.test_labels]), labels[order])
    splits = make_splits(raw, "dynamic")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (32, 4, 4)
    assert splits.valid.binary and set(np.unique(splits.test.images)) <= {0, 1}
    grayscale = make_splits(raw, "none")
    np.testing.assert_array_equal(grayscale.test.images, raw.test_images)


def test_a_folder_of_pngs_gives_the_same_images_with_class_names_from_the_folders(tmp_path):
    images, labels = _images(n=30, shape=(6, 5), classes=3)
    _write_pngs(tmp_path / "gray", images, labels, ["a-zero", "b-one", "c-two"])
    spec, read, read_labels = read_user_dataset(str(tmp_path / "gray"))
    assert spec.class_names == ("a-zero", "b-one", "c-two") and spec.image_shape == (1, 6, 5)
    by_class = np.concatenate([np.flatnonzero(labels == c) for c in range(3)])
    np.testing.assert_array_equal(read[:, 0], images[by_class])
    np.testing.assert_array_equal(read_labels, labels[by_class])  # files come class by class
    _write_pngs(tmp_path / "colour", images, labels, ["x", "y", "z"], mode="RGB")
    spec, read, _ = read_user_dataset(str(tmp_path / "colour"))
    assert spec.image_shape == (3, 6, 5)
    np.testing.assert_array_equal(read[:, 1], images[by_class])


def test_a_folder_of_rgb_pngs_is_read_in_colour_channel_by_channel(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (24, 6, 5, 3), dtype=np.uint8)  # [N, H, W, RGB], every channel its own
    labels = np.arange(24) % 2
    for index, (image, label) in enumerate(zip(images, labels)):
        (tmp_path / "rgb" / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="RGB").save(tmp_path / "rgb" / f"class{label}" / f"{index:02d}.png")
    spec, read, read_labels = read_user_dataset(str(tmp_path / "rgb"))
    assert spec.image_shape == (3, 6, 5) and read.shape == (24, 3, 6, 5) and read.dtype == np.uint8
    by_class = np.concatenate([np.flatnonzero(labels == c) for c in range(2)])
    np.testing.assert_array_equal(read, images[by_class].transpose(0, 3, 1, 2))  # red, green, blue in order
    assert read[0, :, 2, 3].tolist() == images[by_class[0], 2, 3].tolist()


def test_transparency_palettes_16_bit_grey_and_mixed_folders_follow_the_documented_rules(tmp_path):
    from PIL import Image

    def folder(name, pictures):
        for index, picture in enumerate(pictures):
            (tmp_path / name / f"c{index % 2}").mkdir(parents=True, exist_ok=True)
            picture.save(tmp_path / name / f"c{index % 2}" / f"{index:02d}.png")
        return read_user_dataset(str(tmp_path / name))[1]

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 255)  # opaque
    rgba[0, 1] = (200, 100, 50, 51)  # a fifth opaque: flattened onto black
    rgba[1, 0] = (255, 255, 255, 0)  # transparent white is black
    read = folder("rgba", [Image.fromarray(rgba, mode="RGBA")] * 20)
    assert read.shape == (20, 3, 2, 2)
    assert read[0, :, 0, 0].tolist() == [200, 100, 50] and read[0, :, 0, 1].tolist() == [40, 20, 10]
    assert read[0, :, 1, 0].tolist() == [0, 0, 0]

    palette = Image.new("P", (2, 2))
    palette.putpalette([10, 20, 30, 250, 0, 120] + [0] * 762)
    palette.putpixel((1, 0), 1)
    read = folder("palette", [palette] * 20)
    assert read.shape == (20, 3, 2, 2) and read[0, :, 0, 0].tolist() == [10, 20, 30]
    assert read[0, :, 0, 1].tolist() == [250, 0, 120]

    wide = Image.fromarray(np.array([[0, 257 * 100], [65535, 257 * 7]], np.uint16))  # 16-bit grey
    grey_alpha = Image.fromarray(np.dstack([np.full((2, 2), 90, np.uint8), np.full((2, 2), 170, np.uint8)]),
                                 mode="LA")
    read = folder("grey", [wide] * 10 + [grey_alpha] * 10)
    assert read.shape == (20, 1, 2, 2)
    assert read[0, 0].tolist() == [[0, 100], [255, 7]] and read[-1, 0].tolist() == [[60, 60], [60, 60]]

    grey = Image.fromarray(np.array([[3, 4], [5, 6]], np.uint8), mode="L")
    colour = Image.fromarray(np.full((2, 2, 3), (9, 8, 7), np.uint8), mode="RGB")
    read = folder("mixed", [grey] * 19 + [colour])  # one colour image makes the folder RGB
    assert read.shape == (20, 3, 2, 2)
    np.testing.assert_array_equal(read[0], np.stack([[[3, 4], [5, 6]]] * 3))  # a grey image: R = G = B
    assert read[-1, :, 0, 0].tolist() == [9, 8, 7]


@pytest.mark.parametrize("problem, message", [
    (lambda p: np.savez(p, images=np.zeros((40, 5, 5), np.float32), labels=np.zeros(40, int)), "uint8"),
    (lambda p: np.savez(p, pictures=np.zeros((40, 5, 5), np.uint8)), "no images or labels"),
    (lambda p: np.savez(p, images=np.zeros((40, 5, 5), np.uint8), labels=np.zeros(39, int)), "40 images but 39"),
    (lambda p: np.savez(p, images=np.zeros((40, 5, 5), np.uint8), labels=np.arange(40) % 3 * 2), "class 1"),
    (lambda p: np.savez(p, images=np.zeros((40, 5, 5), np.uint8), labels=-np.ones(40, int)), "negative"),
    (lambda p: np.savez(p, images=np.zeros((10, 5, 5), np.uint8), labels=np.zeros(10, int)), "at least 20"),
    (lambda p: np.savez(p, images=np.zeros((40, 5), np.uint8), labels=np.zeros(40, int)), "shape"),
    (lambda p: p.write_bytes(b"not a zip"), "not a readable .npz"),
])
def test_a_malformed_npz_is_one_clear_error(tmp_path, problem, message):
    path = tmp_path / "bad.npz"
    problem(path)
    with pytest.raises(DataError, match=message):
        get_spec(str(path))


def test_a_malformed_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        get_spec(str(tmp_path / "empty"))
    images, labels = _images(n=30, shape=(6, 5))
    _write_pngs(tmp_path / "sizes", images, labels, ["a", "b", "c"])
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "sizes" / "b" / "odd.png")
    with pytest.raises(DataError, match="is 8x8 pixels"):
        get_spec(str(tmp_path / "sizes"))
    _write_pngs(tmp_path / "broken", images, labels, ["a", "b", "c"])
    (tmp_path / "broken" / "c" / "zz.png").write_bytes(b"no png")
    with pytest.raises(DataError, match="zz.png: not a readable PNG"):
        get_spec(str(tmp_path / "broken"))
    with pytest.raises(DataError, match="no such file or folder"):
        get_spec(str(tmp_path / "nowhere.npz"))


@pytest.mark.slow
def test_training_on_a_users_npz_writes_nothing_when_it_is_malformed_and_a_run_when_it_is_not(tmp_path, capsys):
    from vaelab.cli import main

    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((40, 5, 5), np.float64), labels=np.zeros(40, int))
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(bad), "--out", str(out), "--epochs", "1"]) == 2
    assert "uint8" in capsys.readouterr().err and not out.exists()
    images, labels = _images(n=200, shape=(12, 12), classes=4)
    good = tmp_path / "good.npz"
    np.savez(good, images=images, labels=labels)
    assert main(["train", "--dataset", str(good), "--out", str(out), "--epochs", "2", "--hidden", "16",
                 "--latent-dim", "2", "--batch-size", "20", "--no-progress", "--compile", "off"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == str(good.resolve())
    assert main(["evaluate", str(out), "--iw-samples", "5"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["n_test"] == 20 and np.isfinite(result["log_likelihood"])
    assert main(["sample", str(out), "-o", str(tmp_path / "grid.png")]) == 0
