"""CIFAR-10 and image folders as uint8 arrays `(N, H, W, 3)` plus integer labels.

Sources, all giving the same `ImageSet`:
  * torchvision's python-batches layout (`cifar-10-batches-py/`), downloaded on request;
  * an image-folder tree or a zip of one, class sub-folders giving labels
    (e.g. `../shared/data/cifar10-jpeg/train.zip`);
  * a folder holding `train` and `test` as image folders or zips (`load_cifar10`).

Decoding 50k JPEGs takes a while, so decoded arrays are cached as memory-mapped `.npy`
files keyed by the source's path, size and modification time; a second load is a few
`np.load(mmap_mode="r")` calls. The sha256 of the pixels identifies a dataset everywhere
else (FID caches, results).

    python -c "from selection.datasets import *; print(load_cifar10('DIR', 'test'))"
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vae_sweep.errors import InputError
from vae_sweep.files import atomic_dir, default_cache_dir

DATA_ENV = "VAE_SWEEP_DATA"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CIFAR_SIZE = (32, 32)
CIFAR_BATCHES = "cifar-10-batches-py"
SPLITS = ("train", "test")
# CIFAR-10's split sizes: every limit and size a command takes is within them
SPLIT_SIZES = {"train": 50_000, "test": 10_000}
# Bump when decoding changes, so stale cached arrays are not reused.
LOADER_VERSION = 1


# How the pixels were stored, for every result's provenance: CIFAR-10's own python
# batches are the original pixels; image files are as their format keeps them. FIDs
# on a re-encoded copy (such as the JPEG copy used offline here) are shifted against
# published ones and must not be compared with them digit for digit.
LOSSLESS_ENCODINGS = ("cifar-python-batches", "png", "bmp", "tiff")
ENCODINGS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp",
             ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}  # fmt: skip


@dataclass(frozen=True)
class ImageSet:
    images: np.ndarray  # (N, H, W, 3) uint8, possibly a read-only memory map
    labels: np.ndarray  # (N,) int64; -1 where the source has no class folders
    classes: tuple[str, ...]
    sha256: str  # of the pixels, see pixels_sha256
    source: str
    encoding: str = "unknown"  # cifar-python-batches, png, jpeg, ... or mixed

    @property
    def lossless(self) -> bool:
        """Whether the pixels are the original ones (no lossy re-encoding)."""
        return self.encoding in LOSSLESS_ENCODINGS

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return (
            f"ImageSet({len(self)} images {tuple(self.images.shape[1:])}, "
            f"{len(self.classes)} classes, sha256={self.sha256[:12]}, "
            f"source={self.source!r})"
        )


def pixels_sha256(images: np.ndarray) -> str:
    """sha256 of the uint8 pixels, shape included, so a reshaped array differs."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    digest = hashlib.sha256(repr(images.shape).encode())
    digest.update(memoryview(images).cast("B"))
    return digest.hexdigest()


def default_data_root() -> Path:
    """`$VAE_SWEEP_DATA` if set (e.g. the offline `cifar10-jpeg`), else `./data`."""
    return Path(os.environ.get(DATA_ENV) or "data").expanduser()


# ------------------------------------------------------------------------------------
# Image folders and zips


def _list_members(path: Path) -> list[str]:
    """Relative paths of the image files under a folder or in a zip, sorted."""
    if path.is_dir():
        found = []
        for folder, _, files in os.walk(path):
            rel = Path(folder).relative_to(path)
            found += [
                (rel / f).as_posix()
                for f in files
                if f.lower().endswith(IMAGE_EXTENSIONS)
            ]
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                found = [
                    n
                    for n in archive.namelist()
                    if n.lower().endswith(IMAGE_EXTENSIONS) and not n.endswith("/")
                ]
        except zipfile.BadZipFile:
            raise InputError(f"{path}: not a zip archive or an image folder") from None
    if not found:
        raise InputError(
            f"{path}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return sorted(found)


def count_images(path: str | os.PathLike) -> int:
    """How many images a folder or zip holds, without decoding one."""
    return len(_list_members(Path(path)))


def _encoding(members: list[str]) -> str:
    kinds = {ENCODINGS[Path(m).suffix.lower()] for m in members}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _class_labels(members: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels from parent folders, with the folders all images share stripped."""
    parents = [m.split("/")[:-1] for m in members]
    common = 0
    shortest = min(len(p) for p in parents)
    while common < shortest and len({p[common] for p in parents}) == 1:
        common += 1
    names = ["/".join(p[common:]) for p in parents]
    if all(n == "" for n in names):
        return np.full(len(members), -1, dtype=np.int64), ()
    classes = tuple(sorted(set(names)))
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[n] for n in names], dtype=np.int64), classes


def _decode(data: bytes, where: str, size: tuple[int, int] | None) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InputError(f"{where}: cannot decode image ({error})") from None
    if size is not None and pixels.shape[:2] != tuple(size):
        raise InputError(
            f"{where}: image is {pixels.shape[1]}x{pixels.shape[0]}, "
            f"expected {size[1]}x{size[0]}"
        )
    return pixels


def _decode_all(path: Path, members: list[str], size, progress: bool) -> np.ndarray:
    """Decode the members into one (N, H, W, 3) array in threads (PIL frees the GIL)."""
    from tqdm import tqdm

    if size is None:  # every image must match the first one
        size = _decode(
            _read_member(path, None, members[0]), f"{path}/{members[0]}", None
        ).shape[:2]
    out = np.empty((len(members), *size, 3), dtype=np.uint8)
    chunks = [
        range(i, min(i + 2048, len(members))) for i in range(0, len(members), 2048)
    ]
    bar = tqdm(
        total=len(members),
        desc=f"decode {path.name}",
        unit="img",
        disable=not progress or len(members) < 5000,
        leave=False,
    )

    def work(chunk: range) -> None:
        archive = None if path.is_dir() else zipfile.ZipFile(path)
        try:
            for i in chunk:
                data = _read_member(path, archive, members[i])
                out[i] = _decode(data, f"{path}/{members[i]}", size)
        finally:
            if archive is not None:
                archive.close()
        bar.update(len(chunk))

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(work, chunks))  # list() re-raises the first worker error
    bar.close()
    return out


def _read_member(path: Path, archive: zipfile.ZipFile | None, member: str) -> bytes:
    if path.is_dir():
        return (path / member).read_bytes()
    if archive is None:
        with zipfile.ZipFile(path) as opened:
            return opened.read(member)
    return archive.read(member)


def _source_fingerprint(path: Path, members: list[str]) -> str:
    """Changes whenever a file of the source changes (size or mtime); cheap."""
    digest = hashlib.sha256(f"v{LOADER_VERSION}|{path.resolve()}".encode())
    if path.is_dir():
        for member in members:
            st = (path / member).stat()
            digest.update(f"|{member}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        st = path.stat()
        digest.update(f"|{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def load_images(
    path: str | os.PathLike,
    *,
    size: tuple[int, int] | None = CIFAR_SIZE,
    limit: int | None = None,
    spread: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ImageSet:
    """Load an image folder or a zip of one, in sorted file order.

    `size` is the required (height, width); None accepts any size the first image has.
    `limit` keeps the first N images in sorted file order, or with `spread` N images
    round-robin over the class folders (`spread_indices`), kept in file order; only the
    kept images are decoded. Decoded arrays are cached under `cache_dir/datasets`
    (see `vae_sweep.files.default_cache_dir`).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be a positive number of images, got {limit}")
    members = _list_members(path)
    # labels from all files: a prefix may hold one class
    labels, classes = _class_labels(members)
    if limit is not None:
        kept = (
            spread_indices(labels, limit)
            if spread
            else np.arange(min(limit, len(members)))
        )
        members, labels = [members[i] for i in kept], labels[kept]
    encoding = _encoding(members)
    if not cache:
        images = _decode_all(path, members, size, progress)
        return ImageSet(
            images, labels, classes, pixels_sha256(images), str(path), encoding
        )

    # which members, not only how many: a spread and a prefix of one zip differ
    names = hashlib.sha256("\n".join(members).encode()).hexdigest()[:16]
    key = f"{_source_fingerprint(path, members)}-{size}-{len(members)}-{names}"
    entry = (
        Path(cache_dir or default_cache_dir())
        / "datasets"
        / hashlib.sha256(key.encode()).hexdigest()[:32]
    )
    if not (entry / "meta.json").is_file():
        images = _decode_all(path, members, size, progress)
        with atomic_dir(entry) as tmp:
            np.save(tmp / "images.npy", images)
            np.save(tmp / "labels.npy", labels)
            meta = {
                "sha256": pixels_sha256(images),
                "classes": list(classes),
                "source": str(path),
                "count": len(images),
            }
            (tmp / "meta.json").write_text(json.dumps(meta))
    meta = json.loads((entry / "meta.json").read_text())
    return ImageSet(
        np.load(entry / "images.npy", mmap_mode="r"),
        np.load(entry / "labels.npy"),
        tuple(meta["classes"]),
        meta["sha256"],
        str(path),
        encoding,
    )


# ------------------------------------------------------------------------------------
# CIFAR-10


def _load_batches(folder: Path, split: str) -> ImageSet:
    names = (
        [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    )
    images, labels = [], []
    for name in names:
        file = folder / name
        if not file.is_file():
            raise InputError(f"{file}: missing CIFAR-10 batch file")
        try:
            with open(file, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as error:
            raise InputError(f"{file}: not a CIFAR-10 batch file ({error})") from None
    meta_file = folder / "batches.meta"
    classes: tuple[str, ...] = ()
    if meta_file.is_file():
        with open(meta_file, "rb") as handle:
            classes = tuple(
                n.decode()
                for n in pickle.load(handle, encoding="bytes")[b"label_names"]
            )
    pixels = np.ascontiguousarray(np.concatenate(images))
    return ImageSet(
        pixels,
        np.concatenate(labels),
        classes,
        pixels_sha256(pixels),
        str(folder),
        "cifar-python-batches",
    )


def _download(root: Path, split: str) -> None:
    import torchvision

    try:
        torchvision.datasets.CIFAR10(str(root), train=split == "train", download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise InputError(f"{root}: could not download CIFAR-10 ({error})") from None


def load_cifar10(
    root: str | os.PathLike | None,
    split: str,
    *,
    download: bool = False,
    limit: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> ImageSet:
    """The CIFAR-10 `split` ('train' or 'test') found under `root`.

    `root` (default `$VAE_SWEEP_DATA`, else `./data`) may hold the python batches
    (`cifar-10-batches-py/` or the batch files themselves), or `train` and `test` as
    image folders or zips. With `download=True` and no local copy, torchvision fetches
    the batches into `root`.

    `limit` keeps N images spread evenly over the classes (`spread_over_classes`),
    not the first N: the image-folder copies are sorted by class, so their first
    10,000 training images would be two classes only.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = Path(root).expanduser() if root else default_data_root()
    for folder in (root / CIFAR_BATCHES, root):
        if (folder / "batches.meta").is_file() or (folder / "test_batch").is_file():
            data = _load_batches(folder, split)
            return data if limit is None else spread_over_classes(data, limit)
    for candidate in (root / split, root / f"{split}.zip"):
        if candidate.exists():
            # with a limit, only the kept images are decoded (seconds, not the
            # minutes 50,000 JPEGs take on a first run)
            return load_images(candidate, size=CIFAR_SIZE, limit=limit, spread=True,
                               cache_dir=cache_dir, progress=progress)  # fmt: skip
    if download:
        _download(root, split)
        return load_cifar10(root, split, limit=limit, cache_dir=cache_dir)
    raise InputError(
        f"{root}: no CIFAR-10 {split} split found (expected "
        f"{CIFAR_BATCHES}/, {split}/ or {split}.zip; set ${DATA_ENV} or "
        f"pass a data path, or allow the download)"
    )


def spread_order(labels) -> np.ndarray:
    """All indices, round-robin over the classes: each class's first image (in file
    order, class by class), then each class's second, ...: any prefix of it holds
    the classes evenly."""
    labels = np.asarray(labels)
    rank = np.empty(len(labels), dtype=np.int64)  # the round an image is taken in
    for label in np.unique(labels):
        where = np.flatnonzero(labels == label)
        rank[where] = np.arange(len(where))
    return np.lexsort((labels, rank))


def spread_indices(labels, limit: int) -> np.ndarray:
    """The indices of the first `limit` images of `spread_order`, in file order: the
    one rule both a decoded set (`spread_over_classes`) and a folder or zip loaded
    with a limit (`load_images(spread=True)`) keep."""
    return np.sort(spread_order(labels)[:limit])


def spread_over_classes(data: ImageSet, limit: int) -> ImageSet:
    """N images taken round-robin over the classes (each class's first images in
    file order, one class after another), kept in file order: every class gets
    N / classes images, whatever order the files are stored in."""
    if limit < 1:
        raise InputError(f"limit must be a positive number of images, got {limit}")
    labels = np.asarray(data.labels)
    chosen = spread_indices(labels, limit)
    images = np.ascontiguousarray(data.images[chosen])
    return ImageSet(
        images,
        labels[chosen],
        data.classes,
        pixels_sha256(images),
        data.source,
        data.encoding,
    )
