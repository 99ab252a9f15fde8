"""The policy's frame: the typed sections every feature hangs off (listener, admin, issuers, pools,
routes). Built once at start-up by `gateway.config.loader`. What a feature adds lives in the
`sections` mappings, under its `ConfigPart`'s name (`gateway.config.part`), typed by that part."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TlsConfig:
    """Server certificate (re-read when its files change) and optional client certificates (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    client_auth: str = "none"  # none | optional | required
    min_version: str = "1.2"  # 1.2 | 1.3


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 1 << 20
    max_token_bytes: int = 8192
    access_log: str = "stdout"  # stdout | off | a file path
    trust_forwarded_for: bool = False
    # Connection limits, enforced by gateway.serving.protocol before the app sees a request.
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_connections: int = 4096  # per worker process
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class ClaimMapping:
    """Which JWT claims carry a partner's permissions."""

    models: str = "models"
    routes: str = "routes"
    tier: str = "tier"
    tenant: str = "tenant"
    scope: str = "scope"


@dataclass(frozen=True)
class IssuerConfig:
    name: str
    issuer: str
    algorithms: tuple[str, ...]
    audience: str | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    jwks_refresh_s: float = 300.0
    public_key_file: str | None = None
    secret: str | None = field(default=None, repr=False)  # resolved from secret_env at load time
    secret_env: str | None = None
    required_claims: tuple[str, ...] = ()
    leeway_s: float = 30.0
    max_lifetime_s: float | None = None
    claims: ClaimMapping = ClaimMapping()
    default_tier: str = "default"


@dataclass(frozen=True)
class EndpointConfig:
    url: str
    weight: int = 1
    group: str = "default"


@dataclass(frozen=True)
class TimeoutConfig:
    connect_s: float = 2.0
    first_byte_s: float = 60.0  # streams: until the first byte, and the longest gap between chunks
    total_s: float = 600.0
    non_stream_total_s: float = 60.0  # a non-streamed answer, whole (capped by total_s)


@dataclass(frozen=True)
class HealthConfig:
    path: str = "/healthz"
    interval_s: float = 2.0
    timeout_s: float = 1.0


@dataclass(frozen=True)
class OutlierConfig:
    consecutive_failures: int = 3
    base_ejection_s: float = 2.0
    max_ejection_s: float = 60.0


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = 2  # extra tries after the first
    budget_ratio: float = 0.2  # retries may add at most this share of requests...
    min_retries_per_s: float = 5.0  # ...but always allow this many


# What may send a request on to a fallback model (`fallbacks[].when`; gateway.upstream.fallback).
FALLBACK_TRIGGERS = ("no_healthy_endpoint", "upstream_error", "overloaded", "first_byte_timeout", "context_length")
# The longest vocabulary entry of common tokenizers, in bytes (SmolLM2: 81); gateway.upstream.context_window.
DEFAULT_MAX_TOKEN_BYTES = 128


@dataclass(frozen=True)
class Fallback:
    """One alternative: the model to try next and the failures that send a request there."""

    model: str
    on: frozenset[str] = frozenset(FALLBACK_TRIGGERS)
    pool: str | None = None  # None: the first pool serving `model`


@dataclass(frozen=True)
class ModelSpec:
    """A pool model entry written as a mapping (`gateway.config.models`; a plain string has none)."""

    name: str  # public: what partners send and see, and what limits, cache and metrics key on
    backend_name: str  # what the pool's servers are sent
    context_length: int | None = None
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES  # its vocabulary's longest token
    fallbacks: tuple[Fallback, ...] = ()


@dataclass(frozen=True)
class PoolConfig:
    name: str
    endpoints: tuple[EndpointConfig, ...]
    models: tuple[str, ...] = ()  # every model served, generation and embedding, in config order
    balancer: str = "least_outstanding"  # least_outstanding | round_robin | weighted | inference
    max_inflight_per_endpoint: int = 256
    max_response_bytes: int = 64 * 1024 * 1024  # a larger non-streamed answer is a failed attempt
    timeouts: TimeoutConfig = TimeoutConfig()
    health: HealthConfig = HealthConfig()
    outlier: OutlierConfig = OutlierConfig()
    retries: RetryConfig = RetryConfig()
    embedding_models: tuple[str, ...] = ()  # the subset of `models` that only embeds (never a generate default)
    # Sent with every request to this pool's endpoints (credentials of a hosted or `--api-key` server):
    # resolved at load time from `api_key_env` and `headers`; never in a repr, a log or a status page.
    upstream_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    api_key_env: str | None = None
    # Models (glob patterns) that accept image / audio parts; any other model is text-only (gateway.media)
    image_models: tuple[str, ...] = ()
    audio_models: tuple[str, ...] = ()
    discover_context_length: bool = False  # read models' windows from the servers' /v1/models at start-up
    model_specs: tuple[ModelSpec, ...] = ()  # entries with aliases, windows, fallbacks (gateway.config.models)
    sections: dict[str, object] = field(default_factory=dict)  # features' pool sections (`pools[].dns`)


MAX_TOKENS_LIMIT = 131072  # default cap on requested output tokens: above any model's output today


@dataclass(frozen=True)
class RouteConfig:
    name: str
    paths: tuple[str, ...]
    pool: str | None = None  # None: the pool that serves the requested model
    models: tuple[str, ...] = ()  # empty: any model its pool serves
    auth: str = "jwt"  # jwt | none
    issuers: tuple[str, ...] = ()  # empty: every configured issuer
    default_model: str | None = None  # /v1/generate without `model`; None: the pool's first generation model
    max_tokens_limit: int = MAX_TOKENS_LIMIT  # the most `max_tokens` / `max_completion_tokens` a request may ask
    fallbacks: tuple[Fallback, ...] = ()  # replace the requested model's own (gateway.config.models)
    sections: dict[str, object] = field(default_factory=dict)  # features' route sections (`routes[].cache`)


@dataclass(frozen=True)
class AdminConfig:
    issuer: str | None = None  # issuer whose tokens may carry the admin scope (required when enabled)
    scope: str = "admin"
    enabled: bool = True  # false: every /admin endpoint answers 404


@dataclass(frozen=True)
class GatewayConfig:
    source: str
    server: ServerConfig
    admin: AdminConfig
    issuers: tuple[IssuerConfig, ...]
    pools: tuple[PoolConfig, ...]
    routes: tuple[RouteConfig, ...]
    sections: dict[str, object] = field(default_factory=dict)  # features' top-level sections (`redis:`)

    def pool(self, name: str) -> PoolConfig | None:
        return next((p for p in self.pools if p.name == name), None)

    def issuer(self, name: str) -> IssuerConfig | None:
        return next((i for i in self.issuers if i.name == name), None)
