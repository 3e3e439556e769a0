"""E1 (repeated sets) and E2 (scrambled tiles) with the stand-in network."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.protocols.repeated import draw_repeated_set, plan, run_protocol
from experiments.protocols.scrambled import run_protocol as run_scrambled
from experiments.protocols.scrambled import scramble_tiles, scrambled_batches, tile_grid
from fid.engine import FIDEngine
from fid.stats import statistics
from tests.helpers.data import random_images
from vae_sweep.errors import InputError


def test_repeated_draw_counts_and_determinism():
    draw = draw_repeated_set(1000, 30, 100, seed=3, repetition=1)
    assert len(np.unique(draw.indices)) == 30 and draw.counts.sum() == 100
    assert set(draw.counts.tolist()) == {3, 4}  # 100 = 30 * 3 + 10
    again = draw_repeated_set(1000, 30, 100, seed=3, repetition=1)
    np.testing.assert_array_equal(draw.indices, again.indices)
    np.testing.assert_array_equal(draw.counts, again.counts)
    other = draw_repeated_set(1000, 30, 100, seed=3, repetition=2)
    assert not np.array_equal(draw.indices, other.indices)


def test_e1_fids_equal_those_of_explicitly_repeated_sets(rng, standin):
    pool = random_images(rng, 200)
    engine = FIDEngine(standin, batch_size=16, progress=False)
    reference = engine.reference(random_images(rng, 50))
    draws = plan(len(pool), [2, 7, 40], repetitions=2, total=40, seed=0)
    table = run_protocol(pool, draws, engine, reference)
    distinct = len(np.unique(np.concatenate([d.indices for d in draws])))
    assert standin.images_seen == 50 + distinct  # each distinct image once
    for draw, row in zip(draws, table.itertuples(), strict=True):
        repeated = np.repeat(pool[draw.indices], draw.counts, axis=0)  # (40, 32, 32, 3)
        expected = reference.distance(statistics(standin(repeated)))
        assert row.fid == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert row.sample_count == 40


def test_e1_refuses_sizes_beyond_the_set():
    with pytest.raises(InputError, match="--sizes: 50 distinct"):
        plan(1000, [10, 50], repetitions=1, total=40, seed=0)


@pytest.mark.parametrize(
    "tiles,grid",
    [
        (1, (1, 1)),
        (2, (2, 1)),
        (4, (2, 2)),
        (8, (4, 2)),
        (16, (4, 4)),
        (1024, (32, 32)),
    ],
)
def test_tile_grid(tiles, grid):
    assert tile_grid(tiles) == grid


@pytest.mark.parametrize("bad", [3, 0, 2048])
def test_tile_grid_refuses(bad):
    with pytest.raises(InputError, match="--tiles"):
        tile_grid(bad)


@pytest.mark.parametrize("tiles", [2, 4, 16, 64, 256, 1024])
def test_scrambling_keeps_each_images_pixels(rng, tiles):
    images = random_images(rng, 6)
    scrambled = scramble_tiles(images, tiles, np.random.default_rng(0))
    for before, after in zip(images, scrambled, strict=True):
        np.testing.assert_array_equal(
            np.sort(before.reshape(-1, 3), axis=0),
            np.sort(after.reshape(-1, 3), axis=0),
        )
        # whole pixels move, not channels separately
        assert sorted(map(tuple, before.reshape(-1, 3))) == sorted(
            map(tuple, after.reshape(-1, 3))
        )
    if tiles >= 16:
        assert not np.array_equal(images, scrambled)


# the tile shape of each k, written out by hand from DESIGN section 1 (2 = top and
# bottom halves, 4 = a 2x2 grid of 16x16 tiles, ..., 1024 = single pixels)
TILE_SHAPES = {2: (16, 32), 4: (16, 16), 16: (8, 8), 64: (4, 4), 256: (2, 2),
               1024: (1, 1)}  # fmt: skip


def _tiles(image: np.ndarray, shape: tuple[int, int]) -> list[bytes]:
    th, tw = shape
    return [image[r:r + th, c:c + tw].tobytes()
            for r in range(0, 32, th) for c in range(0, 32, tw)]  # fmt: skip


@pytest.mark.parametrize("tiles", sorted(TILE_SHAPES))
def test_every_scrambled_tile_is_exactly_one_input_tile(tiles):
    # every pixel distinct (row, column, image): a tile is recognisable anywhere
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    images = np.stack([np.stack([rows, cols, np.full_like(rows, i)], axis=-1)
                       for i in range(5)]).astype(np.uint8)  # fmt: skip
    scrambled = scramble_tiles(images, tiles, np.random.default_rng(3))
    moved = 0
    for before, after in zip(images, scrambled, strict=True):
        source = _tiles(before, TILE_SHAPES[tiles])
        output = _tiles(after, TILE_SHAPES[tiles])
        assert len(source) == tiles
        # a permutation of the input's tiles: each output tile is one input tile,
        # each input tile used once
        assert sorted(output) == sorted(source)
        moved += sum(a != b for a, b in zip(source, output, strict=True))
    assert moved > 0
    if tiles >= 4:  # a grid of columns too: some tile left its column
        assert (scrambled[..., 1] != cols).any()


def test_one_tile_is_identity_and_two_tiles_swap_halves(rng):
    images = random_images(rng, 20)
    np.testing.assert_array_equal(scramble_tiles(images, 1, rng), images)
    halves = scramble_tiles(images, 2, np.random.default_rng(5))
    swapped = np.concatenate([images[:, 16:], images[:, :16]], axis=1)
    same = (halves == images).all(axis=(1, 2, 3))
    flipped = (halves == swapped).all(axis=(1, 2, 3))
    assert (same | flipped).all() and same.any() and flipped.any()


def test_scrambled_stream_is_independent_of_batch_size(rng):
    images = random_images(rng, 10)
    a = np.concatenate(list(scrambled_batches(images, 16, np.random.default_rng(1), 3)))
    b = np.concatenate(
        list(scrambled_batches(images, 16, np.random.default_rng(1), 10))
    )
    np.testing.assert_array_equal(a, b)


def test_e2_streams_and_matches_explicit_scrambled_set(rng, standin):
    images = random_images(rng, 30)
    engine = FIDEngine(standin, batch_size=7, progress=False)
    reference = engine.reference(random_images(rng, 40))
    table = run_scrambled(
        images, [4], repetitions=2, seed=11, engine=engine, reference=reference
    )
    for row in table.itertuples():
        explicit = scramble_tiles(
            images, 4, np.random.default_rng([11, 4, row.repetition])
        )
        expected = reference.distance(statistics(standin(explicit)))
        assert row.fid == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert table["fid"].nunique() == 2


def test_summary_states_its_variance_and_leaves_one_repetition_undefined():
    import pandas as pd

    from experiments.protocols.summary import summarise

    raw = pd.DataFrame({"size": [10, 10, 10, 20], "repetition": [0, 1, 2, 0],
                        "fid": [1.0, 2.0, 4.0, 5.0], "sample_count": 100})  # fmt: skip
    table = summarise(raw, "size").set_index("size")
    # (1 - 7/3)^2 + (2 - 7/3)^2 + (4 - 7/3)^2 = 14/3, over n - 1 = 2
    assert table.loc[10, "fid_variance_ddof1"] == pytest.approx(7 / 3)
    assert np.isnan(table.loc[20, "fid_variance_ddof1"])  # one value: no spread known


def test_published_values_are_drawn_beside_ours_and_checked(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from experiments.fid_commands import plot_fid_curve, read_published

    ours = pd.DataFrame({"size": [10, 20], "fid_mean": [50.0, 30.0],
                         "fid_variance_ddof1": [4.0, 1.0]})  # fmt: skip
    (tmp_path / "table1.csv").write_text("size,fid_mean\n10,55.5\n20,33.0\n")
    published, label = read_published(str(tmp_path / "table1.csv"), "size")
    assert label == "published (table1.csv)"
    figure, axis = plt.subplots()
    plot_fid_curve(axis, ours, "size", xlabel="n", title="E1", published=published,
                   published_label="published (Table 1)")  # fmt: skip
    labels = [text.get_text() for text in axis.get_legend().get_texts()]
    assert sorted(labels) == ["published (Table 1)", "this project"]
    drawn = axis.get_lines()[-1]
    assert list(drawn.get_ydata()) == [55.5, 33.0]
    plt.close(figure)
    (tmp_path / "bad.csv").write_text("tiles,fid\n2,1\n")
    with pytest.raises(InputError, match="needs the columns size and fid_mean"):
        read_published(str(tmp_path / "bad.csv"), "size")
    assert read_published("none", "size") == (None, "")


def test_the_studys_own_tables_are_the_default_overlay():
    """Without --published, E1 and E2 draw the thesis' Tables 1 and 2 (shipped in
    experiments/published, as the shared copy has them)."""
    from experiments.fid_commands import read_published

    table1, label1 = read_published(None, "size")
    assert label1 == "the study, Table 1" and len(table1) == 11
    assert table1.set_index("size").loc[10_000, "fid_mean"] == pytest.approx(5.212)
    table2, label2 = read_published(None, "tiles")
    assert list(table2["tiles"]) == [2, 4, 16, 64, 256, 1024]
    assert table2.set_index("tiles").loc[1024, "fid_mean"] == pytest.approx(341.631)
