"""Observability beyond the Prometheus metrics: OpenTelemetry traces with the GenAI conventions,
GenAI metrics and per-partner usage (`docs/observability.md`). Configured by the policy's
`telemetry:` section (`config.py`); hooked into the request path by `runtime.Telemetry`."""
