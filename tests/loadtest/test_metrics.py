"""The load test's arithmetic on recorded timings: percentiles, ITL, summaries, series, the knee, options."""

from __future__ import annotations

import pytest

from gateway.client.loadtest.knee import Point, find_knee
from gateway.client.loadtest.metrics import Sample, histogram, percentile, summarise, timeseries
from gateway.client.loadtest.options import (
    OptionError,
    check_caps,
    endpoint_url,
    parse_duration,
    parse_headers,
    parse_sweep,
    require_loopback,
)
from gateway.client.loadtest.svg import _ticks


def stream(start: float, tokens: list[float], end: float, **kw: object) -> Sample:
    """A streamed request recorded as absolute event times."""
    return Sample(start=start, end=end, status=200, ok=True, first_token=tokens[0], token_times=tokens,
                  output_tokens=len(tokens), **kw)  # type: ignore[arg-type]


def test_percentiles_interpolate_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)


def test_itl_ttft_and_tokens_per_second_from_recorded_events() -> None:
    s = stream(10.0, [10.05, 10.07, 10.10, 10.16], 10.2, overhead_ms=0.4)
    assert s.ttft == pytest.approx(0.05)
    assert s.itls() == pytest.approx([0.02, 0.03, 0.06])
    assert s.latency == pytest.approx(0.2)
    assert s.tokens_per_s() == pytest.approx(20.0)
    failed = Sample(start=1.0, end=1.1, status=500, ok=False, error_code="upstream_500")
    assert failed.ttft is None and failed.itls() == [] and failed.tokens_per_s() is None


def test_summary_counts_429s_apart_and_keys_errors_by_status_and_code() -> None:
    samples = [
        stream(0.0, [0.1, 0.2, 0.3], 0.4, overhead_ms=0.5),
        stream(0.5, [0.6, 0.8], 0.9, overhead_ms=1.5),
        Sample(start=1.0, end=1.01, status=429, ok=False, error_code="rate_limit_exceeded", overhead_ms=0.2),
        Sample(start=1.1, end=1.2, status=429, ok=False, error_code="rate_limit_exceeded"),
        Sample(start=1.3, end=1.4, status=502, ok=False, error_code="upstream_unavailable"),
        Sample(start=1.5, end=1.5, status=0, ok=False, error_code="connect_error"),
    ]
    s = summarise(samples, wall_s=2.0)
    assert (s["requests"], s["ok"], s["errors"], s["rate_limited"]) == (6, 2, 2, 2)
    assert s["error_rate"] == pytest.approx(2 / 6) and s["rate_limited_rate"] == pytest.approx(2 / 6)
    assert s["errors_by_status_code"] == {"429 rate_limit_exceeded": 2, "502 upstream_unavailable": 1,
                                          "transport connect_error": 1}
    assert s["requests_per_s"] == 3.0 and s["ok_per_s"] == 1.0
    assert s["output_tokens"] == 5 and s["output_tokens_per_s"] == 2.5
    # ITL over all gaps of successful streams: 0.1, 0.1 and 0.2.
    assert s["itl_s"]["count"] == 3 and s["itl_s"]["p50"] == pytest.approx(0.1)
    assert s["itl_s"]["max"] == pytest.approx(0.2)
    assert s["ttft_s"]["p50"] == pytest.approx(0.1) and s["ttft_s"]["count"] == 2
    assert s["latency_s"]["mean"] == pytest.approx(0.4)
    assert s["overhead_ms"]["count"] == 3 and s["overhead_ms"]["p50"] == 0.5
    empty = summarise([], wall_s=1.0)
    assert empty["requests"] == 0 and empty["latency_s"]["p50"] is None and empty["error_rate"] == 0.0


def test_timeseries_buckets_by_completion_and_counts_in_flight() -> None:
    samples = [stream(0.0, [0.2], 0.5), stream(0.2, [0.4], 1.7), stream(1.1, [1.2], 1.6),
               Sample(start=2.0, end=2.2, status=429, ok=False)]
    ts = timeseries(samples, wall_s=2.5)
    assert ts["t"] == [1.0, 2.0, 2.5]
    assert ts["requests_per_s"] == [1.0, 2.0, 2.0]  # the last bucket is half a second wide
    assert ts["rate_limited_per_s"] == [0.0, 0.0, 2.0]
    assert ts["in_flight"] == [1, 2, 0]  # at 0.5 s the first request has just ended; at 1.5 s two run
    assert ts["latency_p50"][0] == pytest.approx(0.5)


def test_histogram_clips_at_p99_5() -> None:
    values = [0.01 * i for i in range(1, 201)] + [100.0]
    edges, counts = histogram(values, bins=10)
    assert len(edges) == 11 and sum(counts) == len(values)
    assert edges[-1] < 3.0  # the single 100 s outlier lands in the last bin instead of setting the scale
    assert histogram([], 10) == ([], [])


def test_knee_where_throughput_stops_following_load() -> None:
    points = [Point(1, 10, 0.10, 0.0), Point(4, 39, 0.11, 0.0), Point(16, 150, 0.12, 0.0),
              Point(64, 170, 0.45, 0.0), Point(128, 172, 0.90, 0.05)]
    knee = find_knee(points)
    assert (knee.knee, knee.bends_at, knee.errors_start) == (16, 64, 128)
    assert "throughput +13%" in knee.reason


def test_knee_from_latency_alone_and_when_it_never_bends() -> None:
    # Open loop: throughput still follows the offered rate but latency has run away (queueing).
    rates = [Point(1, 1, 0.2, 0.0), Point(2, 2, 0.25, 0.0), Point(4, 3.9, 0.9, 0.0, rate_limited_rate=0.2)]
    knee = find_knee(rates)
    assert (knee.knee, knee.bends_at, knee.rate_limited_start) == (2, 4, 4)
    assert "4.5x" in knee.reason
    linear = find_knee([Point(1, 5, 0.1, 0.0), Point(2, 10, 0.1, 0.0), Point(8, 40, 0.11, 0.0)])
    assert linear.knee == 8 and linear.bends_at is None and "beyond the sweep" in linear.reason
    assert find_knee([Point(3, 5, 0.1, 0.0)]).knee == 3


def test_options_parsing_and_caps() -> None:
    assert parse_duration("10s", "--d") == 10 and parse_duration("2m", "--d") == 120
    assert parse_duration("250ms", "--d") == 0.25 and parse_duration("7", "--d") == 7
    with pytest.raises(OptionError, match="--d: expected a duration"):
        parse_duration("ten", "--d")
    sweep = parse_sweep("users=1,4,16")
    assert sweep.axis == "users" and sweep.values == [1, 4, 16]
    assert parse_sweep("rate=0.5,2").values == [0.5, 2]
    for bad in ("users=4,1", "threads=1,2", "users=1.5", "rate=", "users=0,1"):
        with pytest.raises(OptionError):
            parse_sweep(bad)
    assert endpoint_url("http://127.0.0.1:8080", chat=True) == "http://127.0.0.1:8080/v1/chat/completions"
    assert endpoint_url("http://127.0.0.1:8080/v1/", chat=False) == "http://127.0.0.1:8080/v1/completions"
    assert endpoint_url("http://h/v1/generate", chat=True) == "http://h/v1/generate"
    with pytest.raises(OptionError):
        endpoint_url("ftp://h", chat=True)
    assert parse_headers(["X-Tenant: acme"]) == {"x-tenant": "acme"}
    with pytest.raises(OptionError):
        parse_headers(["no colon"])
    check_caps(users=10, duration_s=60, max_requests=100, rate=None)
    for kwargs in ({"users": 0}, {"users": 10_001}, {"duration_s": 3601}, {"max_requests": 0}, {"rate": -1.0},
                   {"duration_s": 1000, "points": 4}):
        args = {"users": 10, "duration_s": 60.0, "max_requests": 100, "rate": None, **kwargs}
        with pytest.raises(OptionError):
            check_caps(**args)  # type: ignore[arg-type]


def test_loopback_only() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:8080", "http://127.0.0.7"):
        require_loopback(url)
    for url in ("http://10.0.0.1:8080", "http://192.0.2.1", "http://[2001:db8::1]/v1"):
        with pytest.raises(OptionError, match="--allow-remote"):
            require_loopback(url)


def test_axis_ticks_are_round() -> None:
    assert _ticks(0.137) == [0.0, 0.05, 0.1, 0.15]
    assert _ticks(45) == [0, 20, 40, 60]
    assert _ticks(0) == [0.0, 1.0]
