"""The shared FID actor on a local Ray, with the stand-in network."""

from __future__ import annotations

import numpy as np
import pytest

from fid.distance import frechet_distance
from fid.stats import statistics
from tests.helpers.data import random_images
from tests.helpers.standin import StandInExtractor, make_standin

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    import tests.helpers.standin
    from sweep.cluster import start_local

    # Workers cannot import the tests package by name: ship the stand-in by value.
    ray.cloudpickle.register_pickle_by_value(tests.helpers.standin)
    start_local(  # never a cluster started outside the suite; on loopback
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


def _replicas(names, tmp_path, seconds_per_image):
    from functools import partial

    from fid.service import start_fid_service

    reference = random_images(np.random.default_rng(5), 20)
    actors = [
        start_fid_service(
            {"test": reference},
            name=name,
            num_cpus=0.25,
            cache_dir=str(tmp_path),
            chunk=20,
            extractor_factory=partial(StandInExtractor, seconds_per_image),
        )
        for name in names
    ]
    ray.get([actor.reference_stats.remote("test") for actor in actors])
    return actors, reference


def _expected_fid(reference, images):
    standin = StandInExtractor()
    return frechet_distance(statistics(standin(reference)), statistics(standin(images)))


def _wait_until_pending(client, name: str, seconds: float = 60) -> None:
    """Until replica `name` reports work in hand; a test failure, not a hang, if the
    call went elsewhere (its loads answer every 20 ms, not as fast as Ray can)."""
    import time

    deadline = time.monotonic() + seconds
    while client.loads().get(name, {}).get("pending_images", 0) == 0:
        assert time.monotonic() < deadline, f"{name} never held the call"
        time.sleep(0.02)


def _call_frozen_midway(client, images, name: str, pid: int) -> dict:
    """client.fid(images) on a thread; once replica `name` holds it, that replica's
    process is frozen (SIGSTOP, like a lost node; the caller resumes it) and the
    call's answer awaited: {"fid": ...}, empty if it did not come in 30 s."""
    import os
    import signal
    import threading

    answer = {}
    call = threading.Thread(target=lambda: answer.update(fid=client.fid(images)))
    call.start()
    _wait_until_pending(client, name)
    os.kill(pid, signal.SIGSTOP)
    call.join(30)
    return answer


def test_client_routes_each_call_to_the_least_loaded_replica(local_ray, tmp_path):
    from fid.client import FIDClient

    names = ["fid-lb-0", "fid-lb-1"]
    actors, reference = _replicas(names, tmp_path, 0.01)
    rng = np.random.default_rng(6)
    busy = actors[0].fid.remote(random_images(rng, 600))  # 6 s on replica 0
    client = FIDClient(names)
    _wait_until_pending(client, names[0])
    small = random_images(rng, 10)
    assert client.fid(small) == pytest.approx(_expected_fid(reference, small), 1e-9)
    assert client.last_replica == names[1]
    assert client.busy_seconds > 0 and client.retried == 0
    ray.get(busy)
    client.fid(small)  # both idle again: the first name breaks the tie
    assert client.last_replica == names[0]


def test_a_replica_that_stops_answering_is_left_and_no_call_hangs(local_ray, tmp_path):
    import os
    import signal
    import time

    from fid.client import ClientOptions, FIDClient, FIDServiceError

    names = ["fid-stall-0", "fid-stall-1"]
    actors, reference = _replicas(names, tmp_path, 0.005)
    pids = [ray.get(actor.info.remote())["pid"] for actor in actors]
    options = ClientOptions(retries=2, timeout=30, ping_timeout=1.0, ping_every=0.5)
    client = FIDClient(names, options=options)
    images = random_images(np.random.default_rng(7), 400)  # 2 s of work
    try:
        answer = _call_frozen_midway(client, images, names[0], pids[0])
        assert answer["fid"] == pytest.approx(_expected_fid(reference, images), 1e-9)
        assert client.retried == 1 and client.last_replica == names[1]

        os.kill(pids[1], signal.SIGSTOP)  # now no replica answers at all
        brief = ClientOptions(retries=2, timeout=5, ping_timeout=1.0, ping_every=0.5)
        started = time.monotonic()
        with pytest.raises(FIDServiceError, match="no replica of fid-stall-0, "
                           "fid-stall-1 answered within 5 s"):  # fmt: skip
            FIDClient(names, options=brief).fid(images[:10])
        assert 5 <= time.monotonic() - started < 5 + 2 * brief.ping_timeout + 1
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_standby_takes_calls_only_while_no_replica_answers(local_ray, tmp_path):
    """A replica frozen mid-call (a lost node): the call goes to the standby, which
    answers the same FID; once the replica answers again, calls go back to it."""
    import os
    import signal

    from fid.client import ClientOptions, FIDClient

    names = ["fid-primary-0", "fid-standby"]
    actors, reference = _replicas(names, tmp_path, 0.005)
    pid = ray.get(actors[0].info.remote())["pid"]
    options = ClientOptions(retries=2, timeout=30, ping_timeout=1.0, ping_every=0.5,
                            standby=(names[1],))  # fmt: skip
    client = FIDClient(names[:1], options=options)
    small = random_images(np.random.default_rng(8), 10)
    client.fid(small)
    assert client.last_replica == names[0]  # both idle: the standby is not asked
    images = random_images(np.random.default_rng(9), 400)  # 2 s of work
    try:
        answer = _call_frozen_midway(client, images, names[0], pid)
        assert answer["fid"] == pytest.approx(_expected_fid(reference, images), 1e-9)
        assert client.retried == 1 and client.last_replica == names[1]
        client.fid(small)  # still no answer from the replica: the standby again
        assert client.last_replica == names[1]
    finally:
        os.kill(pid, signal.SIGCONT)
    client.fid(small)
    assert client.last_replica == names[0]


def test_references_given_as_a_cifar_split_a_folder_and_an_npz(tmp_path, rng):
    """The three ways a reference can be named (README): each gives the statistics
    computed directly from its images, or the file's own."""
    from PIL import Image

    from fid.service import CifarSplit, FIDServer
    from fid.stats import Statistics

    images = random_images(rng, 8)
    for i, image in enumerate(images):  # a CIFAR layout: test/<class>/<image>
        folder = tmp_path / "data" / "test" / ("cat" if i < 4 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    saved = Statistics(rng.normal(size=4), np.diag(rng.uniform(1, 2, size=4)), 99)
    saved.save(tmp_path / "ref.npz")
    server = FIDServer(
        {"split": CifarSplit(str(tmp_path / "data"), "test"),
         "folder": str(tmp_path / "data" / "test" / "cat"),
         "npz": str(tmp_path / "ref.npz")},
        cache_dir=tmp_path / "cache", extractor_factory=StandInExtractor,
    )  # fmt: skip
    standin = StandInExtractor()
    for name, expected in (("split", statistics(standin(images))),
                           ("folder", statistics(standin(images[:4])))):  # fmt: skip
        got = server.reference_stats(name)
        assert got.n == expected.n
        np.testing.assert_allclose(got.mu, expected.mu, rtol=1e-10)
        np.testing.assert_allclose(got.sigma, expected.sigma, rtol=1e-8, atol=1e-12)
    got = server.reference_stats("npz")
    np.testing.assert_array_equal(got.mu, saved.mu)
    np.testing.assert_array_equal(got.sigma, saved.sigma)
    assert got.n == 99


def test_prdc_from_the_calls_own_features_and_radii_kept_once(tmp_path, rng,
                                                              monkeypatch):
    """metrics(names=[..., "prdc"]) gives fid.fidelity on the reference's features
    and the call's, from the same pass through the network; the reference's k-NN
    radii are computed on the first call and kept."""
    import fid.service as service_module
    from fid.fidelity import fidelity
    from fid.service import FIDServer

    reference = random_images(rng, 60)
    server = FIDServer({"test": reference}, cache_dir=tmp_path,
                       extractor_factory=StandInExtractor)  # fmt: skip
    calls = []
    real_radii = service_module.knn_radii
    monkeypatch.setattr(service_module, "knn_radii",
                        lambda *a, **k: calls.append(k) or real_radii(*a, **k))
    standin = StandInExtractor()
    for _ in range(2):
        generated = random_images(rng, 25)
        out = server.metrics(generated, names=("fid", "prdc"), features=True)
        expected = fidelity(standin(reference), standin(generated)).as_dict()
        assert {k: out[k] for k in expected} == pytest.approx(expected, rel=1e-12)
        np.testing.assert_allclose(out["features"], standin(generated), rtol=1e-6)
    assert len(calls) == 2  # k = 3 and k = 5, once each over both calls


def _bootstrapped(tmp_path, rng, names):
    """A server's metrics of 30 images against 60 with 15 resamples (seed 4), beside
    the stand-in's features of both and the resamples' counts, to work the intervals
    out again here."""
    from fid.bootstrap import resample_counts
    from fid.service import FIDServer

    reference = random_images(rng, 60)
    server = FIDServer({"test": reference}, cache_dir=tmp_path,
                       extractor_factory=StandInExtractor)  # fmt: skip
    generated = random_images(rng, 30)
    out = server.metrics(generated, names=names, bootstrap=15, seed=4)
    standin = StandInExtractor()
    return out, standin(reference), standin(generated), resample_counts(30, 15, seed=4)


def _recentred_by_hand(resampled, point, low_bound=-np.inf, high_bound=np.inf):
    """The 95% percentiles of the resamples shifted by their mean less `point`."""
    low, high = np.percentile(resampled - (resampled.mean() - point), [2.5, 97.5])
    return np.clip(low, low_bound, high_bound), np.clip(high, low_bound, high_bound)


def test_bootstrap_intervals_of_prdc_come_from_the_calls_features(tmp_path, rng):
    """metrics(..., bootstrap=B) with prdc adds each fidelity metric's interval: the
    bootstrap of fid.bootstrap on the same features, reference and resamples, its
    percentiles shifted by the resamples' mean less the call's own score."""
    from fid.bootstrap import bootstrap_fidelity

    out, real, fake, counts = _bootstrapped(tmp_path, rng, ("fid", "prdc"))
    values = bootstrap_fidelity(real, fake, counts)
    for name in ("precision", "recall", "density", "coverage"):
        top = 1.0 if name != "density" else np.inf
        low, high = _recentred_by_hand(values[name], out[name], 0.0, top)
        assert out[f"{name}_ci_low"] == pytest.approx(low, abs=1e-9)
        assert out[f"{name}_ci_high"] == pytest.approx(high, abs=1e-9)
    assert "kid_ci_low" not in out  # KID was not asked for


def test_bootstrap_intervals_of_fid_and_kid_are_recentred_on_the_calls_scores(
    tmp_path, rng
):
    """metrics(..., bootstrap=B) with KID: FID's and KID's intervals are the
    percentiles of fid.bootstrap's resampled values (worked out here on the stand-in's
    features) shifted by their mean less the call's own FID and KID."""
    from fid.bootstrap import bootstrap_fids, bootstrap_kids
    from fid.distance import FrechetReference
    from fid.stats import statistics

    out, real, fake, counts = _bootstrapped(tmp_path, rng, ("fid", "kid"))
    values = {"fid": bootstrap_fids(fake, FrechetReference(statistics(real)), counts),
              "kid": bootstrap_kids(fake, real, counts, seed=4)}  # fmt: skip
    for name, resampled in values.items():
        floor = 0.0 if name == "fid" else -np.inf
        low, high = _recentred_by_hand(resampled, out[name], floor)
        assert out[f"{name}_ci_low"] == pytest.approx(low, rel=1e-6, abs=1e-12)
        assert out[f"{name}_ci_high"] == pytest.approx(high, rel=1e-6, abs=1e-12)
