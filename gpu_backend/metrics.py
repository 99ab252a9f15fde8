"""Prometheus metrics, named as vLLM names them where they fit so existing dashboards work."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                    20.0, 40.0, 80.0)
_E2E_BUCKETS = (0.1, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0, 600.0)


class BackendMetrics:
    """All metrics of one backend process, in a private registry (one per process, never global)."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry()
        r, labels = self.registry, ["model_name"]
        self.model_name = model_name
        self._waiting = Gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled", labels,
                              registry=r).labels(model_name)
        self._running = Gauge("vllm:num_requests_running", "Requests in the running batch", labels,
                              registry=r).labels(model_name)
        self._kv = Gauge("vllm:kv_cache_usage_perc",
                         "KV-cache slots held (padding included) / (max batch size x context), 0..1", labels,
                         registry=r).labels(model_name)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", labels,
                              buckets=_LATENCY_BUCKETS, registry=r).labels(model_name)
        self.itl = Histogram("vllm:inter_token_latency_seconds", "Time between consecutive output tokens",
                             labels, buckets=_LATENCY_BUCKETS, registry=r).labels(model_name)
        self._e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency, arrival to finish", labels,
                              buckets=_E2E_BUCKETS, registry=r).labels(model_name)
        self.generation_tokens = Counter("vllm:generation_tokens", "Generated tokens", labels,
                                         registry=r).labels(model_name)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Prefilled prompt tokens", labels,
                                     registry=r).labels(model_name)
        # Tokens, as vLLM counts them: every admitted prompt's length, and the part of it the cache supplied.
        self.prefix_cache_queries = Counter("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache",
                                            labels, registry=r).labels(model_name)
        self.prefix_cache_hits = Counter("vllm:prefix_cache_hits", "Prompt tokens whose KV came from the prefix cache",
                                         labels, registry=r).labels(model_name)
        self._success = Counter("vllm:request_success", "Finished generation requests by finish reason",
                                [*labels, "finished_reason"], registry=r)
        self._http = Counter("edgegw_backend_requests", "HTTP requests by endpoint and status code",
                             ["endpoint", "status"], registry=r)
        self.batch_size = Histogram("edgegw_backend_batch_size", "Sequences per decode step", labels,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r).labels(model_name)
        self.embedding_inputs = Counter("edgegw_backend_embedding_inputs", "Texts embedded", registry=r)

    def set_state(self, *, waiting: int, running: int, kv_usage: float) -> None:
        self._waiting.set(waiting)
        self._running.set(running)
        self._kv.set(kv_usage)

    def finished(self, reason: str, e2e_s: float) -> None:
        """Count a finished sequence (reason: stop, length, abort, error) and its end-to-end latency."""
        self._success.labels(self.model_name, reason).inc()
        if reason in ("stop", "length"):
            self._e2e.observe(e2e_s)

    def http(self, endpoint: str, status: int) -> None:
        self._http.labels(endpoint, str(status)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
