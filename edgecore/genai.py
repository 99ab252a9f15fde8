"""The OpenTelemetry GenAI metrics under Prometheus naming, with the conventions' bucket boundaries:
one definition for the gateway and the built-in backend, so their histograms line up on a dashboard.

    gen_ai.client.token.usage            -> gen_ai_client_token_usage (tokens; gen_ai_token_type input|output)
    gen_ai.server.time_to_first_token    -> gen_ai_server_time_to_first_token_seconds
    gen_ai.server.time_per_output_token  -> gen_ai_server_time_per_output_token_seconds
    gen_ai.server.request.duration       -> gen_ai_server_request_duration_seconds

Label names are the attributes' with dots as underscores.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

OPERATION = "gen_ai_operation_name"
MODEL = "gen_ai_request_model"
TOKEN_TYPE = "gen_ai_token_type"


@dataclass(frozen=True)
class GenAiMetrics:
    token_usage: Histogram  # labels: operation, model, token type
    time_to_first_token: Histogram  # labels: operation, model
    time_per_output_token: Histogram  # labels: operation, model
    request_duration: Histogram  # labels: operation, model


def genai_metrics(registry: CollectorRegistry) -> GenAiMetrics:
    """The four GenAI histograms, registered on `registry`."""
    labels = [OPERATION, MODEL]
    return GenAiMetrics(
        token_usage=Histogram("gen_ai_client_token_usage", "Tokens used per request, by token type "
                              "(OpenTelemetry gen_ai.client.token.usage)", [*labels, TOKEN_TYPE],
                              buckets=TOKEN_BUCKETS, registry=registry),
        time_to_first_token=Histogram("gen_ai_server_time_to_first_token_seconds", "Time to the first output "
                                      "token of a streamed answer (gen_ai.server.time_to_first_token)", labels,
                                      buckets=TTFT_BUCKETS, registry=registry),
        time_per_output_token=Histogram("gen_ai_server_time_per_output_token_seconds", "Time per output token "
                                        "after the first (gen_ai.server.time_per_output_token)", labels,
                                        buckets=TPOT_BUCKETS, registry=registry),
        request_duration=Histogram("gen_ai_server_request_duration_seconds", "GenAI request duration "
                                   "(gen_ai.server.request.duration)", labels, buckets=DURATION_BUCKETS,
                                   registry=registry),
    )


def operation_name(path: str) -> str:
    """The gen_ai.operation.name of an OpenAI-style path."""
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/embeddings"):
        return "embeddings"
    return "text_completion"
