"""The FID engine's caching and streaming, with the stand-in network."""

from __future__ import annotations

import numpy as np
import pytest

from fid.cache import FIDCache
from fid.distance import frechet_distance
from fid.engine import FIDEngine
from fid.features import extract_features
from fid.stats import statistics
from tests.helpers.data import random_images


def test_features_and_stats_are_cached_by_pixels(tmp_path, rng, standin):
    images = random_images(rng, 30)
    engine = FIDEngine(standin, cache=FIDCache(tmp_path), batch_size=8, progress=False)
    first = engine.features(images)
    assert standin.images_seen == 30
    again = engine.features(images.copy())  # same pixels, another array
    np.testing.assert_array_equal(first, again)
    assert standin.images_seen == 30  # served from disk
    stats = engine.stats(images)
    assert standin.images_seen == 30
    np.testing.assert_allclose(
        stats.sigma, np.cov(first.astype(np.float64), rowvar=False)
    )
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))
    # keyed by network: another network (another key) in the same cache folder
    # computes its own features instead of reading these
    other = type(standin)()
    other.key = "standin-other-network"
    other_engine = FIDEngine(other, cache=FIDCache(tmp_path), batch_size=8,
                             progress=False)  # fmt: skip
    other_engine.features(images)
    other_engine.stats(images)
    assert other.images_seen == 30 and standin.images_seen == 30


def test_uncached_stats_stream_and_equal_cached(tmp_path, rng, standin):
    images = random_images(rng, 25)
    streamed = FIDEngine(standin, cache=None, batch_size=4, progress=False).stats(
        images
    )
    direct = statistics(extract_features(images, standin, progress=False))
    np.testing.assert_allclose(streamed.mu, direct.mu, rtol=1e-12)
    np.testing.assert_allclose(streamed.sigma, direct.sigma, rtol=1e-9, atol=1e-15)
    assert not list(tmp_path.iterdir())


def test_fid_against_reference(rng, standin):
    engine = FIDEngine(standin, batch_size=10, progress=False)
    reference_images, other = random_images(rng, 40), random_images(rng, 30) // 2
    reference = engine.reference(reference_images)
    expected = frechet_distance(
        statistics(standin(reference_images)), statistics(standin(other))
    )
    assert engine.fid(other, reference) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert engine.fid(reference_images, reference) < 1e-9
