"""The dynamic batcher: coalescing, exact results, limits counted in images, deadlines,
cancellation, isolation of failures, shutdown."""

import asyncio
import threading
import time

import numpy as np
import pytest
from conftest import HAS_TORCH

from runtime import Generator
from runtime.batcher import Batcher, BatcherClosed, DeadlineExceeded, Overloaded

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")


class SlowBackend:
    """Wraps the real backend: every call waits on a gate first, and records its batch size."""

    def __init__(self, backend, fail_seed=None):
        self.backend, self.sizes, self.fail_seed = backend, [], fail_seed
        self.gate = threading.Event()
        self.gate.set()
        self.entry, self.name, self.max_batch = backend.entry, backend.name, backend.max_batch

    def infer(self, z):
        self.gate.wait(10)
        self.sizes.append(len(z))
        return self.backend.infer(z)


def _with_backend(gen, backend):
    clone = Generator(backend, gen.manifest)
    return clone


def test_concurrent_requests_are_coalesced_and_exact(gen):
    slow = SlowBackend(gen.backend)
    g = _with_backend(gen, slow)
    requests = [(s, st, n) for s, st, n in [(1, 0, 1), (2, 5, 3), (1, 7, 2), (3, 0, 1), (2, 100, 4)]]
    with Batcher(g, max_batch=16) as batcher:
        slow.gate.clear()  # hold the backend so the requests queue up together
        blocker = batcher.submit(9, 0, 1)
        time.sleep(0.05)
        futures = [batcher.submit(*r) for r in requests]
        slow.gate.set()
        blocker.result(10)
        results = [f.result(10) for f in futures]
    assert max(slow.sizes) > 1  # batched across requests
    for (seed, start, n), got in zip(requests, results):
        np.testing.assert_array_equal(got, gen.generate(n, seed=seed, start=start))


def test_large_requests_are_split_into_max_batch_pieces(gen):
    slow = SlowBackend(gen.backend)
    with Batcher(_with_backend(gen, slow), max_batch=8) as batcher:
        got = batcher.generate(5, 3, 21)
    assert slow.sizes == [8, 8, 5]
    np.testing.assert_array_equal(got, gen.generate(21, seed=5, start=3))


def test_full_queue_is_overloaded_at_once(gen):
    slow = SlowBackend(gen.backend)
    with Batcher(_with_backend(gen, slow), max_batch=4, max_queue=10) as batcher:
        slow.gate.clear()
        first = batcher.submit(0, 0, 4)  # taken by the worker, held at the gate
        time.sleep(0.05)
        batcher.submit(0, 0, 6)  # queued: 6 of 10
        with pytest.raises(Overloaded, match="at most 10"):
            batcher.submit(0, 0, 5)  # counted in images, not requests
        slow.gate.set()
        first.result(10)


def test_deadline_and_cancellation_drop_requests_before_compute(gen):
    slow = SlowBackend(gen.backend)
    with Batcher(_with_backend(gen, slow), max_batch=4) as batcher:
        slow.gate.clear()
        held = batcher.submit(0, 0, 4)
        time.sleep(0.05)
        expired = batcher.submit(1, 0, 3, timeout_s=0.01)
        cancelled = batcher.submit(2, 0, 3)
        assert cancelled.cancel()
        kept = batcher.submit(3, 0, 2)
        time.sleep(0.05)
        slow.gate.set()
        held.result(10)
        with pytest.raises(DeadlineExceeded):
            expired.result(10)
        np.testing.assert_array_equal(kept.result(10), gen.generate(2, seed=3))
    assert sum(slow.sizes) == 4 + 2  # neither the expired nor the cancelled one was computed


def test_a_failing_request_does_not_fail_the_others(gen):
    class Flaky(SlowBackend):
        def infer(self, z):
            # the latents of seed 666 image 0 poison any batch that holds them
            if any(np.array_equal(row, poison) for row in z):
                raise RuntimeError("backend failure")
            return super().infer(z)

    poison = gen.latents(1, seed=666)[0]
    flaky = Flaky(gen.backend)
    with Batcher(_with_backend(gen, flaky), max_batch=16) as batcher:
        flaky.gate.clear()
        blocker = batcher.submit(9, 0, 1)
        time.sleep(0.05)
        good = batcher.submit(1, 0, 2)
        bad = batcher.submit(666, 0, 1)
        flaky.gate.set()
        blocker.result(10)
        np.testing.assert_array_equal(good.result(10), gen.generate(2, seed=1))
        with pytest.raises(RuntimeError, match="backend failure"):
            bad.result(10)


def test_asyncio_callers(gen):
    async def main():
        with Batcher(gen, max_batch=8) as batcher:
            return await asyncio.gather(*(batcher.agenerate(s, 0, 2) for s in range(6)))

    for s, got in enumerate(asyncio.run(main())):
        np.testing.assert_array_equal(got, gen.generate(2, seed=s))


def test_close_finishes_what_is_queued_and_refuses_more(gen):
    slow = SlowBackend(gen.backend)
    batcher = Batcher(_with_backend(gen, slow), max_batch=4)
    slow.gate.clear()
    futures = [batcher.submit(s, 0, 3) for s in range(4)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(BatcherClosed):
        batcher.submit(0, 0, 1)
    slow.gate.set()
    closer.join(10)
    assert all(f.result(0).shape == (3, 64, 64, 3) for f in futures)


def test_bad_arguments_are_value_errors(gen):
    with Batcher(gen) as batcher:
        for args in [(-1, 0, 1), (0, -1, 1), (0, 0, 0), (2**128, 0, 1)]:
            with pytest.raises(ValueError):
                batcher.submit(*args)


class Counting(SlowBackend):
    """SlowBackend that records the most calls inside infer at once."""

    def __init__(self, backend):
        super().__init__(backend)
        self.active, self.peak, self.lock = 0, 0, threading.Lock()

    def infer(self, z):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().infer(z)
        finally:
            with self.lock:
                self.active -= 1


def test_two_workers_run_two_batches_at_once_and_stay_exact(gen):
    counting = Counting(gen.backend)
    with Batcher(_with_backend(gen, counting), max_batch=4, concurrency=2) as batcher:
        counting.gate.clear()
        big = batcher.submit(7, 3, 18)  # five pieces, shared by both workers
        small = [batcher.submit(s, 0, 1) for s in range(3)]
        time.sleep(0.1)
        assert counting.peak == 2  # both workers inside the backend at once
        counting.gate.set()
        np.testing.assert_array_equal(big.result(10), gen.generate(18, seed=7, start=3))
        for s, f in enumerate(small):
            np.testing.assert_array_equal(f.result(10), gen.generate(1, seed=s))


def test_a_request_failing_in_two_workers_fails_once_and_the_workers_live(gen):
    poison = gen.latents(8, seed=666)[[0, 4]]  # one latent in each of the request's two pieces

    class TwoPoisons(SlowBackend):
        def infer(self, z):
            if any(np.array_equal(row, p) for row in z for p in poison):
                self.gate.wait(10)  # both pieces fail together, one in each worker
                raise RuntimeError("backend failure")
            return super().infer(z)

    flaky = TwoPoisons(gen.backend)
    with Batcher(_with_backend(gen, flaky), max_batch=4, concurrency=2) as batcher:
        flaky.gate.clear()
        bad = batcher.submit(666, 0, 8)
        time.sleep(0.1)
        flaky.gate.set()
        with pytest.raises(RuntimeError, match="backend failure"):
            bad.result(10)
        np.testing.assert_array_equal(batcher.generate(1, 0, 5), gen.generate(5, seed=1))
