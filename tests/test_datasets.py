"""The image-folder / zip loader, its cache, CIFAR python batches, and bad input."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from selection.datasets import (
    load_cifar10,
    load_images,
    pixels_sha256,
    spread_over_classes,
)
from tests.helpers.data import random_images
from vae_sweep.errors import InputError


def _write_tree(root: Path, images: np.ndarray, classes: list[str]) -> list[str]:
    """PNG files (lossless) as root/<class>/<i>.png; returns relative paths in order."""
    paths = []
    for i, image in enumerate(images):
        rel = f"{classes[i % len(classes)]}/{i:03d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / rel)
        paths.append(rel)
    return paths


def _zip_tree(root: Path, out: Path, prefix: str = "") -> None:
    with zipfile.ZipFile(out, "w") as archive:
        for file in sorted(root.rglob("*.png")):
            archive.write(file, prefix + file.relative_to(root).as_posix())


@pytest.fixture
def tree(tmp_path, rng):
    images = random_images(rng, 12)
    rels = _write_tree(tmp_path / "tree", images, ["cat", "airplane", "dog"])
    order = np.argsort(rels)  # the loader returns sorted file order
    return tmp_path / "tree", images[order], [rels[i].split("/")[0] for i in order]


def test_folder_round_trip(tree):
    root, images, class_names = tree
    data = load_images(root)
    np.testing.assert_array_equal(data.images, images)
    assert data.classes == ("airplane", "cat", "dog")
    assert [data.classes[i] for i in data.labels] == class_names
    assert data.sha256 == pixels_sha256(images)
    assert data.encoding == "png" and data.lossless  # PNG keeps every pixel


def test_zip_round_trip_with_top_folder(tree, tmp_path):
    root, images, class_names = tree
    _zip_tree(root, tmp_path / "train.zip", prefix="train/")
    data = load_images(tmp_path / "train.zip")
    np.testing.assert_array_equal(data.images, images)
    assert [data.classes[i] for i in data.labels] == class_names


def test_flat_folder_is_unlabelled_and_limit_keeps_sorted_prefix(tmp_path, rng):
    images = random_images(rng, 5)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    data = load_images(tmp_path, limit=3, cache=False)
    np.testing.assert_array_equal(data.images, images[:3])
    assert data.classes == () and (data.labels == -1).all()


def test_cache_is_reused_then_invalidated_by_a_change(tree, tmp_path):
    root, images, _ = tree
    first = load_images(root, cache_dir=tmp_path / "c")
    assert isinstance(first.images, np.memmap)  # served from the cache
    second = load_images(root, cache_dir=tmp_path / "c")
    assert second.sha256 == first.sha256
    assert len(list((tmp_path / "c" / "datasets").iterdir())) == 1
    changed = random_images(np.random.default_rng(9), 1)[0]
    target = sorted(root.rglob("*.png"))[0]
    Image.fromarray(changed).save(target)
    third = load_images(root, cache_dir=tmp_path / "c")
    assert third.sha256 != first.sha256
    np.testing.assert_array_equal(third.images[0], changed)


def test_sha256_depends_on_pixels_and_shape(rng):
    x = random_images(rng, 2)
    y = x.copy()
    y[0, 0, 0, 0] ^= 1
    assert pixels_sha256(x) != pixels_sha256(y)
    assert pixels_sha256(x) != pixels_sha256(x.reshape(2, 32, 96, 1))


def test_cifar_python_batches(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = random_images(rng, 3)
        labels = rng.integers(0, 10, 3).tolist()
        flat = images.transpose(0, 3, 1, 2).reshape(3, -1)  # CIFAR stores CHW rows
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": flat, b"labels": labels}, handle)
        expected[name] = (images, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": [b"airplane", b"automobile"]}, handle)
    train = load_cifar10(tmp_path, "train")
    np.testing.assert_array_equal(
        train.images,
        np.concatenate([expected[f"data_batch_{i}"][0] for i in range(1, 6)]),
    )
    test = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(test.images, expected["test_batch"][0])
    assert test.labels.tolist() == expected["test_batch"][1]
    assert test.classes == ("airplane", "automobile")
    assert train.encoding == test.encoding == "cifar-python-batches"
    assert test.lossless and load_cifar10(tmp_path, "test", limit=2).lossless


def test_cifar_train_test_zips_layout(tree, tmp_path):
    root, images, _ = tree
    _zip_tree(root, tmp_path / "test.zip", prefix="test/")
    data = load_cifar10(tmp_path, "test")
    np.testing.assert_array_equal(data.images, images)


def test_offline_cifar_copy_loads(cifar_root):
    data = load_cifar10(cifar_root, "test", limit=20)
    assert data.images.shape == (20, 32, 32, 3) and data.images.dtype == np.uint8
    assert len(data.classes) == 10
    # the copy is sorted by class: a limit takes 2 of each, not 20 airplanes
    assert np.bincount(data.labels, minlength=10).tolist() == [2] * 10
    # the offline copy is re-encoded JPEG: its FIDs are not the published pixels'
    assert data.encoding == "jpeg" and not data.lossless


def test_mixed_formats_are_named_so(tmp_path, rng):
    images = random_images(rng, 2)
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    Image.fromarray(images[1]).save(tmp_path / "b.jpg")
    data = load_images(tmp_path, cache=False)
    assert data.encoding == "mixed" and not data.lossless


@pytest.mark.parametrize(
    "case", ["missing", "empty_zip", "not_zip", "undecodable", "wrong_size", "no_cifar"]
)
def test_bad_input_names_the_file(tmp_path, rng, case):
    if case == "missing":
        path, needle = tmp_path / "nope", "nope"
    elif case == "empty_zip":
        path = tmp_path / "empty.zip"
        zipfile.ZipFile(path, "w").close()
        needle = "no images found"
    elif case == "not_zip":
        path = tmp_path / "junk.zip"
        path.write_bytes(b"not a zip at all")
        needle = "not a zip archive"
    elif case == "undecodable":
        (tmp_path / "a").mkdir()
        Image.fromarray(random_images(rng, 1)[0]).save(tmp_path / "a" / "good.png")
        (tmp_path / "a" / "bad.png").write_bytes(b"\x89PNG garbage")
        path, needle = tmp_path / "a", "bad.png: cannot decode"
    elif case == "wrong_size":
        (tmp_path / "b").mkdir()
        Image.fromarray(random_images(rng, 1)[0]).save(tmp_path / "b" / "0.png")
        Image.fromarray(random_images(rng, 1, size=28)[0]).save(
            tmp_path / "b" / "1.png"
        )
        path, needle = tmp_path / "b", "1.png: image is 28x28, expected 32x32"
    else:
        with pytest.raises(InputError, match="no CIFAR-10 test split found") as info:
            load_cifar10(tmp_path, "test")
        assert "\n" not in str(info.value)
        return
    with pytest.raises(InputError) as info:
        load_images(path, cache=False)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(InputError, match="could not download CIFAR-10") as info:
        load_cifar10(tmp_path / "data", "train", download=True)
    assert "\n" not in str(info.value)


def test_a_limit_spreads_over_the_classes_in_file_order(tmp_path, rng):
    # a class-sorted layout, 3 classes x 4 images: files 0-3, 4-7, 8-11. Round-robin
    # by rank within the class: 0, 4, 8, then 1, 5: kept in file order
    images = random_images(rng, 12)
    for index, image in enumerate(images):
        folder = tmp_path / "train" / f"c{index // 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:02d}.png")
    data = load_cifar10(tmp_path, "train", limit=5)
    np.testing.assert_array_equal(data.images, images[[0, 1, 4, 5, 8]])
    assert data.labels.tolist() == [0, 0, 1, 1, 2]
    assert len(load_cifar10(tmp_path, "train", limit=12).images) == 12


def test_a_limit_decodes_only_the_images_it_keeps(tmp_path, rng, monkeypatch):
    import selection.datasets as datasets

    images = random_images(rng, 12)
    for index, image in enumerate(images):
        folder = tmp_path / "train" / f"c{index // 4}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:02d}.png")
    (tmp_path / "zipped").mkdir()
    _zip_tree(tmp_path / "train", tmp_path / "zipped" / "train.zip", prefix="train/")
    decoded = []
    real = datasets._decode
    monkeypatch.setattr(datasets, "_decode",
                        lambda data, where, size: decoded.append(where) or real(
                            data, where, size))  # fmt: skip
    cache = tmp_path / "cache"
    spread = load_cifar10(tmp_path / "zipped", "train", limit=5, cache_dir=cache)
    assert len(decoded) == 5  # not 12
    # the same images as spreading the whole decoded set, and its hash
    whole = load_cifar10(tmp_path / "zipped", "train", cache_dir=cache)
    assert len(decoded) == 5 + 12
    expected = spread_over_classes(whole, 5)
    np.testing.assert_array_equal(spread.images, expected.images)
    assert spread.sha256 == expected.sha256
    # a prefix of the same size is another cache entry, not the spread's
    prefix = load_images(tmp_path / "zipped" / "train.zip", limit=5, cache_dir=cache)
    np.testing.assert_array_equal(prefix.images, images[:5])
    assert len(list((cache / "datasets").iterdir())) == 3
