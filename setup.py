"""The compiled parts, both optional (without a C compiler the same code runs in Python):
`gateway.telemetry._otlp`, the OTLP span encoder and stage spans (`otlp_wire.py`, `tracing.py`), and
`gateway.telemetry._genai`, the GenAI histogram tally, answer and request readers (`metrics.py`, `answer.py`,
`request_params.py`). Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("gateway.telemetry._otlp", ["gateway/telemetry/_otlp.c", "gateway/telemetry/_otlp_values.c",
                                          "gateway/telemetry/_otlp_stages.c"],
              depends=["gateway/telemetry/_otlp.h"], optional=True, extra_compile_args=["-O2"]),
    Extension("gateway.telemetry._genai", ["gateway/telemetry/_genai.c"], optional=True, extra_compile_args=["-O2"]),
])
