"""How calls share one FID network: priority turns, chunked large calls, load."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fid.distance import frechet_distance
from fid.priority_lock import BULK, FINAL, INTERACTIVE, PriorityLock
from fid.service import FIDServer
from fid.stats import statistics
from tests.helpers.data import random_images
from tests.helpers.standin import StandInExtractor


def test_waiting_calls_get_the_lock_by_priority_then_arrival():
    lock = PriorityLock()
    order = []
    holding, release = threading.Event(), threading.Event()

    def first():
        with lock.turn(BULK):
            holding.set()
            release.wait()
            order.append("first")

    def waiter(name, priority):
        with lock.turn(priority):
            order.append(name)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    holding.wait()
    # queued while the lock is held: two final calls, then an urgent one, then bulk
    for name, priority in [("final-a", FINAL), ("final-b", FINAL),
                           ("urgent", INTERACTIVE), ("bulk", BULK)]:  # fmt: skip
        thread = threading.Thread(target=waiter, args=(name, priority))
        thread.start()
        threads.append(thread)
        deadline = time.time() + 5
        while lock.waiting() < len(threads) - 1 and time.time() < deadline:
            time.sleep(0.005)
    assert lock.waiting() == 4
    release.set()
    for thread in threads:
        thread.join(5)
    assert order == ["first", "urgent", "final-a", "final-b", "bulk"]
    assert lock.busy_seconds > 0


def test_an_urgent_call_waits_for_one_chunk_of_a_large_call_not_all_of_it(tmp_path):
    # 10 ms per image, 20-image turns: a 400-image final call takes 4 s in 20 turns
    server = FIDServer(
        {"test": random_images(np.random.default_rng(0), 40)},
        cache_dir=tmp_path,
        chunk=20,
        extractor_factory=lambda: StandInExtractor(seconds_per_image=0.01),
    )
    server.reference_stats("test")
    large = random_images(np.random.default_rng(1), 400)
    small = random_images(np.random.default_rng(2), 10)
    finished = {}

    def final_call():
        server.fid(large, priority=FINAL)
        finished["final"] = time.perf_counter()

    thread = threading.Thread(target=final_call)
    thread.start()
    deadline = time.monotonic() + 30
    load = server.load()
    while not (load["pending_calls"] == 1 and load["pending_images"] < 400):
        assert time.monotonic() < deadline, load  # the final call is a turn in
        time.sleep(0.01)
        load = server.load()
    assert load["pending_images"] > 0
    value, held = server.fid(small, priority=INTERACTIVE, timed=True)
    finished["urgent"] = time.perf_counter()
    thread.join(30)
    assert finished["urgent"] < finished["final"] - 1.0  # 100+ images were still left
    # its own 10 images (0.1 s of sleep), not the queue (over 1 s left)
    assert 0.1 <= held < 0.5
    expected = frechet_distance(
        server.reference_stats("test"), statistics(StandInExtractor()(small))
    )
    assert value == pytest.approx(expected, rel=1e-9)
    assert server.load()["pending_images"] == 0


def test_chunked_calls_give_the_same_numbers_as_one_pass(tmp_path):
    images = random_images(np.random.default_rng(3), 101)
    chunked = FIDServer(cache_dir=tmp_path, chunk=7, extractor_factory=StandInExtractor)
    whole = StandInExtractor()(images)
    np.testing.assert_allclose(chunked.features(images), whole, rtol=1e-6)
    assert chunked.engine.extractor.calls == 15  # ceil(101 / 7) turns
    stats = chunked.stats(images)
    expected = statistics(whole.astype(np.float64))
    np.testing.assert_allclose(stats.mu, expected.mu, rtol=1e-9)
    np.testing.assert_allclose(stats.sigma, expected.sigma, rtol=1e-9, atol=1e-15)
    assert chunked.engine.extractor.calls == 30
