"""The shared FID actor on a local Ray, with the stand-in network."""

from __future__ import annotations

import numpy as np
import pytest

from fid.distance import frechet_distance
from fid.stats import statistics
from tests.conftest import random_images
from tests.standin import StandInExtractor, make_standin

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import tests.standin

    # Workers cannot import the tests package by name: ship the stand-in by value.
    ray.cloudpickle.register_pickle_by_value(tests.standin)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="vae-sweep-tests",
    )
    yield
    ray.shutdown()


pytestmark = [pytest.mark.ray]


def test_actor_matches_direct_computation_with_concurrent_callers(local_ray, tmp_path):
    from fid.service import FIDServer, start_fid_service

    rng = np.random.default_rng(0)
    reference = random_images(rng, 64)
    service = start_fid_service(
        {"test": reference},
        name="fid-test",
        cache_dir=str(tmp_path),
        batch_size=16,
        extractor_factory=make_standin,
    )
    same = start_fid_service(name="fid-test")  # found by name, not a second actor
    assert ray.get(same.info.remote())["pid"] == ray.get(service.info.remote())["pid"]

    standin = StandInExtractor()
    ref_stats = statistics(standin(reference))
    samples = [random_images(rng, 30) // (i + 1) for i in range(6)]
    expected = [frechet_distance(ref_stats, statistics(standin(s))) for s in samples]

    @ray.remote
    def caller(images):
        from fid.service import get_fid_service

        return ray.get(get_fid_service("fid-test").fid.remote(images, reference="test"))

    got = ray.get([caller.remote(s) for s in samples])  # concurrent callers
    np.testing.assert_allclose(got, expected, rtol=1e-9)

    features = ray.get(service.features.remote(samples[0]))
    np.testing.assert_allclose(features, standin(samples[0]), rtol=1e-6)
    stats = ray.get(service.stats.remote(samples[1]))
    np.testing.assert_allclose(
        stats.sigma, statistics(standin(samples[1])).sigma, rtol=1e-9, atol=1e-15
    )
    assert stats.n == 30
    info = ray.get(service.info.remote())
    assert info["loaded"] == ["test"] and info["extractor"] == "standin-v1"

    # the reference statistics were cached on disk: a fresh server reads them back
    fresh = FIDServer(
        {"test": reference}, cache_dir=tmp_path, extractor_factory=StandInExtractor
    )
    np.testing.assert_allclose(
        fresh.reference_stats("test").mu, ref_stats.mu, rtol=1e-12
    )
    assert fresh.engine.extractor.images_seen == 0


def test_unknown_reference_and_bad_images_are_clear_errors(local_ray, tmp_path):
    from fid.service import start_fid_service

    service = start_fid_service(
        {"test": random_images(np.random.default_rng(1), 8)},
        name="fid-errors",
        cache_dir=str(tmp_path),
        extractor_factory=make_standin,
    )
    with pytest.raises(
        ray.exceptions.RayTaskError, match="unknown FID reference 'val'"
    ):
        ray.get(service.fid.remote(random_images(np.random.default_rng(2), 4), "val"))
    with pytest.raises(ray.exceptions.RayTaskError, match="uint8"):
        ray.get(service.fid.remote(np.zeros((4, 32, 32, 3), np.float32)))
