"""The one compiled part: `gateway.telemetry._otlp`, the OTLP span encoder (optional: without a C
compiler the same encoder runs in Python, `gateway/telemetry/otlp_wire.py`). Everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("gateway.telemetry._otlp", ["gateway/telemetry/_otlp.c"], optional=True,
                             extra_compile_args=["-O2"])])
