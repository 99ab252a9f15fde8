"""The batched GenAI histograms (`gateway.telemetry.metrics.GenAiSeries`) expose what the client's
own `observe` would: same buckets, counts and sums, before and after further observations."""

from __future__ import annotations

import random
import threading

from prometheus_client import CollectorRegistry

from edgecore.genai import genai_metrics
from gateway.metrics import registry
from gateway.telemetry import metrics
from gateway.telemetry.metrics import GenAiSeries

MODEL = "batching-test-model"


def _samples(reg: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in reg.collect() for s in family.samples
            if s.labels.get("gen_ai_request_model") == MODEL and not s.name.endswith("_created")}


def test_batched_observations_expose_what_the_client_would() -> None:
    reference = CollectorRegistry()
    plain = genai_metrics(reference)
    series = GenAiSeries("chat", MODEL)
    rng = random.Random(7)
    for _ in range(2):  # observe, collect (which flushes), observe more, collect again
        for _ in range(500):
            elapsed = rng.choice([0.0, 0.01, 0.3, 2.56, 100.0, rng.random() * 5])
            usage = rng.choice([None, (rng.randrange(1, 5000), rng.randrange(0, 300)), (4, 1)])
            first = rng.choice([None, rng.random() * elapsed, 0.001])
            series.observe(elapsed, usage[0] if usage else None, usage[1] if usage else 0, first)
            plain.request_duration.labels("chat", MODEL).observe(elapsed)
            if usage is not None:
                plain.token_usage.labels("chat", MODEL, "input").observe(usage[0])
                plain.token_usage.labels("chat", MODEL, "output").observe(usage[1])
            if first is not None:
                plain.time_to_first_token.labels("chat", MODEL).observe(first)
                if usage is not None and usage[1] > 1:
                    plain.time_per_output_token.labels("chat", MODEL).observe(max(0.0, elapsed - first) / (usage[1] - 1))
        ours, theirs = _samples(registry), _samples(reference)
        assert ours.keys() == theirs.keys() and len(ours) > 50
        for key, value in theirs.items():
            assert abs(ours[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_a_flush_from_another_thread_loses_no_observation() -> None:
    series = GenAiSeries("embeddings", MODEL)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            registry.collect()  # flushes, as a /metrics scrape on another thread would
            list(registry.collect())

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(20_000):
            series.observe(0.05, i % 7, 3, None)
    finally:
        stop.set()
        scraper.join()
    counts = [(name, dict(labels).get("gen_ai_token_type"), v) for (name, labels), v in _samples(registry).items()
              if ("gen_ai_operation_name", "embeddings") in labels and name.endswith("_count") and v]
    assert sorted(counts) == [("gen_ai_client_token_usage_count", "input", 20_000),
                              ("gen_ai_client_token_usage_count", "output", 20_000),
                              ("gen_ai_server_request_duration_seconds_count", None, 20_000)]


def test_compiled_and_python_tallies_count_the_same() -> None:
    """Random observations, edges included (NaN, +Inf, bools, ints beyond 64 bits, which the compiled tally
    hands back): both tallies leave the same counts and sums."""
    import math
    import shutil

    if shutil.which("cc") or shutil.which("gcc"):
        assert metrics.tally is not metrics.python_tally, "setup.py builds gateway/telemetry/_genai.c"
    rng = random.Random(3)
    shape = [[0] * len(b) for b in metrics._BOUNDS]
    ours, theirs = ([list(c) for c in shape], [0.0] * 5), ([list(c) for c in shape], [0.0] * 5)
    handed_back = 0
    for _ in range(5000):
        args = (rng.choice([0.0, 0.01, 0.3, 2.56, 100.0, rng.random() * 5, 1e300, math.inf, math.nan]),
                rng.choice([None, rng.randrange(5000), 67108864, 67108865, True, -5, 1 << 60, 1 << 70]),
                rng.choice([0, 1, 2, rng.randrange(300), False, (1 << 53) + 1, 1 << 70]),
                rng.choice([None, rng.random() * 5, 0.001, math.nan]))
        if not metrics.tally(metrics._BOUNDS, *ours, *args):
            handed_back += 1
            metrics.python_tally(metrics._BOUNDS, *ours, *args)
        metrics.python_tally(metrics._BOUNDS, *theirs, *args)
        assert ours[0] == theirs[0]
        assert all(a == b or math.isnan(a) and math.isnan(b) for a, b in zip(ours[1], theirs[1], strict=True))
    assert metrics.tally is metrics.python_tally or 0 < handed_back < 5000
