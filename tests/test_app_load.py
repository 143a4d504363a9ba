"""A bounded load test on loopback: 8 concurrent gradio_client clients x 5 mixed requests
(segment / infill / generate) against one launched app with a tiny seeded model.

Checks: zero errors, and every result equals the same request made alone beforehand (per-request
seeds: concurrent users get reproducible, private results). Prints p50/p95 latency per endpoint
and overall (run with `-s` to see them). `ZONKEY_LOAD_MODEL=assets/models/zonkey-small` measures
the shipped checkpoint instead (the figures for the README)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import statistics  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402
from gradio_client import Client  # noqa: E402

from app.service import ModelService  # noqa: E402
from app.ui import serve_in_background  # noqa: E402

CLIENTS = 8
REQUESTS_PER_CLIENT = 5
TEXTS = [
    "The quick brown fox ___ over the lazy dog.",
    "Paris is the capital of ___ and its largest city.",
    "Water boils at [...] degrees Celsius at sea level.",
]


def request_for(client_id: int, k: int) -> tuple[str, dict]:
    """The k-th request of a client: a deterministic mix of the three endpoints."""
    kind = ("infill", "segment", "generate", "infill", "segment")[(client_id + k) % 5]
    text = TEXTS[(client_id + k) % len(TEXTS)]
    if kind == "infill":
        return kind, dict(text=text, steps=10, seed=client_id * 10 + k)
    if kind == "segment":
        return kind, dict(text=text, threshold=0.5)
    return kind, dict(num_segments=2, steps=10, seed=client_id * 10 + k)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


@pytest.fixture(scope="module")
def url():
    # ZONKEY_LOAD_MODEL=<checkpoint dir> measures a real checkpoint instead of the tiny test model
    path = os.environ.get("ZONKEY_LOAD_MODEL")
    service = ModelService.from_env({"ZONKEY_MODEL": path}) if path else ModelService.tiny(seed=0)
    assert service.ready, service.error
    with serve_in_background(service) as local_url:
        yield local_url


def test_concurrent_clients(url):
    assert url.startswith("http://127.0.0.1:")
    solo = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    expected = {}
    for c in range(CLIENTS):
        for k in range(REQUESTS_PER_CLIENT):
            kind, kw = request_for(c, k)
            key = (kind, tuple(sorted(kw.items())))
            if key not in expected:
                expected[key] = solo.predict(api_name=f"/{kind}", **kw)
    solo.close()

    latencies: dict[str, list[float]] = {"segment": [], "infill": [], "generate": []}
    errors: list[str] = []
    mismatches: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def user(cid: int) -> None:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        start.wait()
        try:
            for k in range(REQUESTS_PER_CLIENT):
                kind, kw = request_for(cid, k)
                t0 = time.perf_counter()
                try:
                    res = client.predict(api_name=f"/{kind}", **kw)
                except Exception as e:  # counted, then the test fails on it
                    with lock:
                        errors.append(f"client {cid} request {k} ({kind}): {type(e).__name__}: {e}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    latencies[kind].append(dt)
                    if res != expected[(kind, tuple(sorted(kw.items())))]:
                        mismatches.append(f"client {cid} request {k} ({kind})")
        finally:
            client.close()

    threads = [threading.Thread(target=user, args=(c,)) for c in range(CLIENTS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    wall = time.perf_counter() - t0

    everything = [x for xs in latencies.values() for x in xs]
    print(f"\nload: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests in {wall:.2f} s, {len(errors)} errors")
    for kind, xs in [*latencies.items(), ("all", everything)]:
        if xs:
            print(
                f"  {kind:8s} n={len(xs):2d}  p50={percentile(xs, 0.5) * 1000:7.0f} ms  "
                f"p95={percentile(xs, 0.95) * 1000:7.0f} ms  mean={statistics.mean(xs) * 1000:7.0f} ms"
            )
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert errors == []
    assert len(everything) == CLIENTS * REQUESTS_PER_CLIENT
    assert mismatches == [], "a concurrent result differed from the same request made alone"
