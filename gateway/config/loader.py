"""Load `policies/*.yaml` into a validated `GatewayConfig`, once, at start-up.

The loader reads the frame (server, admin, issuers, pools, routes) and asks each feature's
`ConfigPart` for its sections; the list of parts comes from the caller (`gateway.features`)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.config.environment import hide_in_error, substitute
from gateway.config.models import check_fallbacks, parse_fallbacks, parse_pool_models
from gateway.config.part import ConfigPart, Frame
from gateway.config.reach import generation_models, reaches_generation_model
from gateway.config.reader import ConfigError, Section
from gateway.config.schema import (
    MAX_TOKENS_LIMIT,
    AdminConfig,
    ClaimMapping,
    EndpointConfig,
    GatewayConfig,
    HealthConfig,
    IssuerConfig,
    OutlierConfig,
    PoolConfig,
    RetryConfig,
    RouteConfig,
    ServerConfig,
    TimeoutConfig,
    TlsConfig,
)
from gateway.config.yamlload import load_yaml

ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
              "ES256", "ES384", "ES512", "EdDSA")
Parts = Sequence[ConfigPart[Any, Any, Any]]


def load_config(path: str | os.PathLike[str], parts: Parts) -> GatewayConfig:
    """Read, substitute `${VAR}` / `${VAR:-default}` and validate a gateway config file."""
    file = str(path)
    try:
        text = Path(file).read_text()
    except OSError as exc:
        raise ConfigError(file, "(file)", f"cannot read: {exc.strerror}") from None
    return load_config_text(text, file, parts)


def load_config_text(text: str, file: str, parts: Parts) -> GatewayConfig:
    """Validate policy `text` as if read from `file` (errors name it; relative paths resolve beside it).

    An error never shows a value taken from the environment: it names the `${VAR}` instead."""
    substituted, used = substitute(text, file)
    try:
        data = load_yaml(substituted, file)
        return parse_config(data, file, parts, base_dir=Path(file).resolve().parent)
    except ConfigError as exc:
        raise hide_in_error(exc, used) from None


def parse_config(data: Any, file: str, parts: Parts, base_dir: Path | None = None) -> GatewayConfig:
    """Validate parsed YAML: the frame, then each part's top-level sections, then the routes."""
    base_dir = base_dir or Path.cwd()
    top = Section(data, file, "")
    server = _server(top.section("server"), base_dir)
    admin_sec = top.section("admin")
    admin = AdminConfig(issuer=admin_sec.str("issuer", None), scope=admin_sec.str("scope", "admin"),
                        enabled=admin_sec.bool("enabled", True))
    admin_sec.done()
    issuers = tuple(_issuer(s, base_dir) for s in top.sections("issuers"))
    _unique(top, "issuers", [i.name for i in issuers])
    if admin.issuer and admin.issuer not in {i.name for i in issuers}:
        raise admin_sec.error("issuer", f"no issuer named {admin.issuer!r}")
    if admin.enabled and issuers and not admin.issuer:
        # Otherwise any trusted issuer (a partner's IdP) could mint tokens with the admin scope.
        raise admin_sec.error("issuer", "name the issuer whose tokens may administer the gateway "
                                        "(or set admin.enabled: false)")
    frame = Frame(file, base_dir, issuers, (), {})
    pools = tuple(_pool(s, parts, frame) for s in top.sections("pools", required=True))
    _unique(top, "pools", [p.name for p in pools])
    if not pools:
        raise top.error("pools", "at least one pool is required")
    sections: dict[str, object] = {}
    frame = Frame(file, base_dir, issuers, pools, sections)
    for part in parts:
        if part.top is not None and (value := part.top(top, frame)) is not None:
            sections[part.name] = value
    routes = [_route(sec, parts, frame) for sec in top.sections("routes", required=True)]
    _unique(top, "routes", [r.name for r in routes])
    _check_fallbacks(file, pools, routes)
    top.done()
    return GatewayConfig(source=file, server=server, admin=admin, issuers=issuers, pools=pools,
                         routes=tuple(routes), sections=sections)


def _part_sections(sec: Section, parts: Parts, frame: Frame, scope: str) -> dict[str, object]:
    """Each part's section of one route or pool (`scope`), for the parts that read one."""
    out: dict[str, object] = {}
    for part in parts:
        parse = part.route if scope == "route" else part.pool
        if parse is not None and (value := parse(sec, frame)) is not None:
            out[part.name] = value
    return out


def _unique(sec: Section, key: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            raise sec.error(f"{key}[{i}].name", f"duplicate name {name!r}")
        seen.add(name)


def _server(sec: Section, base_dir: Path) -> ServerConfig:
    cfg = ServerConfig(
        host=sec.str("host", "127.0.0.1"),
        port=sec.int("port", 8080, min=0, max=65535),
        workers=sec.int("workers", 1, min=1, max=256),
        max_body_bytes=sec.int("max_body_bytes", 1 << 20, min=1024),
        max_token_bytes=sec.int("max_token_bytes", 8192, min=256),
        access_log=sec.str("access_log", "stdout"),
        trust_forwarded_for=sec.bool("trust_forwarded_for", False),
        header_timeout_s=sec.float("header_timeout_s", 10.0, min=0.1, max=300.0),
        keepalive_timeout_s=sec.float("keepalive_timeout_s", 5.0, min=0.1, max=3600.0),
        body_timeout_s=sec.float("body_timeout_s", 60.0, min=0.1, max=3600.0),
        max_header_bytes=sec.int("max_header_bytes", 32768, min=1024, max=1 << 20),
        max_headers=sec.int("max_headers", 100, min=8, max=1000),
        max_connections=sec.int("max_connections", 4096, min=1, max=1 << 20),
        tls=_tls(sec.section("tls"), base_dir) if sec.has("tls") else None,
    )
    sec.done()
    return cfg


def _tls(sec: Section, base_dir: Path) -> TlsConfig:
    cert_file = _path(sec, "cert_file", base_dir, required=True)
    key_file = _path(sec, "key_file", base_dir, required=True)
    assert cert_file and key_file
    cfg = TlsConfig(
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=_path(sec, "client_ca_file", base_dir),
        client_auth=sec.str("client_auth", "none", choices=("none", "optional", "required")),
        min_version=sec.str("min_version", "1.2", choices=("1.2", "1.3")),
    )
    if cfg.client_auth != "none" and not cfg.client_ca_file:
        raise sec.error("client_ca_file", f"client_auth: {cfg.client_auth} needs the CA that signs client certificates")
    sec.done()
    return cfg


def _issuer(sec: Section, base_dir: Path) -> IssuerConfig:
    name = sec.str("name")
    algorithms = tuple(sec.str_list("algorithms"))
    for alg in algorithms:
        if alg not in ALGORITHMS:
            raise sec.error("algorithms", f"unsupported algorithm {alg!r} (allowed: {', '.join(ALGORITHMS)})")
    if not algorithms:
        raise sec.error("algorithms", "at least one algorithm is required")
    secret_env = sec.str("secret_env", None)
    secret = None
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise sec.error("secret_env", f"environment variable {secret_env} is not set")
    jwks_file = _path(sec, "jwks_file", base_dir)
    public_key_file = _path(sec, "public_key_file", base_dir)
    jwks_url = sec.url("jwks_url", None)
    has_hs = any(a.startswith("HS") for a in algorithms)
    has_asym = any(not a.startswith("HS") for a in algorithms)
    if has_hs and has_asym:
        # One key source per issuer; mixing families is how algorithm confusion happens.
        raise sec.error("algorithms", "do not mix HS* with asymmetric algorithms in one issuer")
    if has_hs and not secret:
        raise sec.error("secret_env", "HS* algorithms need a secret from the environment")
    if has_asym and not (jwks_file or jwks_url or public_key_file):
        raise sec.error("jwks_file", "asymmetric algorithms need jwks_file, jwks_url or public_key_file")
    claims_sec = sec.section("claims")
    claims = ClaimMapping(**{k: claims_sec.str(k, getattr(ClaimMapping, k))
                             for k in ("models", "routes", "tier", "tenant", "scope")})
    claims_sec.done()
    cfg = IssuerConfig(
        name=name,
        issuer=sec.str("issuer"),
        algorithms=algorithms,
        audience=sec.str("audience", None),
        jwks_file=jwks_file,
        jwks_url=jwks_url,
        jwks_refresh_s=sec.float("jwks_refresh_s", 300.0, min=1.0),
        public_key_file=public_key_file,
        secret=secret,
        secret_env=secret_env,
        required_claims=tuple(sec.str_list("required_claims", [])),
        leeway_s=sec.float("leeway_s", 30.0, min=0.0, max=3600.0),
        max_lifetime_s=sec.float("max_lifetime_s", None, min=1.0),
        claims=claims,
        default_tier=sec.str("default_tier", "default"),
    )
    sec.done()
    return cfg


def _path(sec: Section, key: str, base_dir: Path, required: bool = False) -> str | None:
    value = sec.str(key) if required else sec.str(key, None)
    if value is None:
        return None
    path = (base_dir / value).resolve()
    if not path.is_file():
        raise sec.error(key, f"file not found: {path}")
    return str(path)


def _pool(sec: Section, parts: Parts, frame: Frame) -> PoolConfig:
    name = sec.str("name")
    endpoints = []
    for ep in sec.sections("endpoints"):
        url = ep.url("url")
        endpoints.append(EndpointConfig(url=url.rstrip("/"), weight=ep.int("weight", 1, min=0),
                                        group=ep.str("group", "default")))
        ep.done()
    t, h, o, r = (sec.section(k) for k in ("timeouts", "health", "outlier", "retries"))
    models, specs = parse_pool_models(sec)  # names, and entries with an alias, a window or fallbacks
    cfg = PoolConfig(
        name=name,
        endpoints=tuple(endpoints),
        models=_pool_models(sec, models),
        model_specs=specs,
        discover_context_length=sec.bool("discover_context_length", False),
        embedding_models=tuple(sec.str_list("embedding_models", [])),
        image_models=tuple(sec.str_list("image_models", [])),  # gateway.media: models accepting images
        audio_models=tuple(sec.str_list("audio_models", [])),  # ... and audio
        upstream_headers=_upstream_headers(sec),
        api_key_env=sec.str("api_key_env", None),
        balancer=sec.str("balancer", "least_outstanding",
                         choices=("least_outstanding", "round_robin", "weighted", "inference")),
        max_inflight_per_endpoint=sec.int("max_inflight_per_endpoint", 256, min=1),
        max_response_bytes=sec.int("max_response_bytes", 64 * 1024 * 1024, min=1024),
        timeouts=TimeoutConfig(t.float("connect_s", 2.0, min=0.01), t.float("first_byte_s", 60.0, min=0.01),
                               t.float("total_s", 600.0, min=0.01), t.float("non_stream_total_s", 60.0, min=0.01)),
        health=HealthConfig(h.str("path", "/healthz"), h.float("interval_s", 2.0, min=0.05),
                            h.float("timeout_s", 1.0, min=0.01)),
        outlier=OutlierConfig(o.int("consecutive_failures", 3, min=1), o.float("base_ejection_s", 2.0, min=0.01),
                              o.float("max_ejection_s", 60.0, min=0.01)),
        retries=RetryConfig(r.int("attempts", 2, min=0, max=10), r.float("budget_ratio", 0.2, min=0.0, max=1.0),
                            r.float("min_retries_per_s", 5.0, min=0.0)),
        sections=_part_sections(sec, parts, frame, "pool"),
    )
    for s in (t, h, o, r):
        s.done()
    sec.done()
    return cfg


_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Set by the gateway itself, or meaningless per pool: a policy may not override them.
_RESERVED_HEADERS = frozenset({"host", "content-length", "content-type", "transfer-encoding", "connection",
                               "keep-alive", "te", "trailers", "upgrade", "x-request-id", "x-forwarded-for"})


def _upstream_headers(sec: Section) -> tuple[tuple[str, str], ...]:
    """`api_key_env` (sent as `authorization: Bearer ...`) and `headers` (values may use ${VAR})."""
    out: list[tuple[str, str]] = []
    env = sec.str("api_key_env", None)
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise sec.error("api_key_env", f"environment variable {env} is not set")
        out.append(("authorization", f"Bearer {value}"))
    hsec = sec.section("headers")
    for name in list(hsec.data):
        value = hsec.str(str(name))
        lower = str(name).lower()
        if not _HEADER_NAME.match(str(name)):
            raise hsec.error(str(name), "not a valid header name")
        if lower in _RESERVED_HEADERS:
            raise hsec.error(str(name), "set by the gateway; a pool cannot override it")
        if lower == "authorization" and env is not None:
            raise hsec.error(str(name), "api_key_env already sets authorization")
        if any(c in value for c in "\r\n\0"):
            raise hsec.error(str(name), "header values cannot contain line breaks or NUL")
        out.append((lower, value))
    hsec.done()
    return tuple(out)


def _pool_models(sec: Section, models: list[str]) -> tuple[str, ...]:
    """Every model the pool serves, in config order: `models`, then `embedding_models` not listed there."""
    return tuple(models + [m for m in sec.str_list("embedding_models", []) if m not in models])


def _check_fallbacks(file: str, pools: tuple[PoolConfig, ...], routes: list[RouteConfig]) -> None:
    def reached(route: RouteConfig) -> list[tuple[str, str]]:
        return [(m, p.name) for p in pools if route.pool in (None, p.name)
                for m in generation_models(route, (p,))]

    check_fallbacks(file, [(p.name, p.models, p.model_specs) for p in pools],
                    [(r.name, r.models, r.fallbacks, reached(r)) for r in routes])


def _route(sec: Section, parts: Parts, frame: Frame) -> RouteConfig:
    name = sec.str("name")
    paths = tuple(sec.str_list("paths"))
    for p in paths:
        if not p.startswith("/"):
            raise sec.error("paths", f"paths start with '/', got {p!r}")
    pools = frame.pools
    pool = sec.str("pool", None)
    if pool is not None and pool not in {p.name for p in pools}:
        raise sec.error("pool", f"no pool named {pool!r}")
    route_issuers = tuple(sec.str_list("issuers", []))
    for iss in route_issuers:
        if iss not in {i.name for i in frame.issuers}:
            raise sec.error("issuers", f"no issuer named {iss!r}")
    auth = sec.str("auth", "jwt", choices=("jwt", "none", "plugin"))
    if auth == "jwt" and not frame.issuers:
        raise sec.error("auth", "auth: jwt needs at least one issuer (or auth: none)")
    cfg = RouteConfig(
        name=name,
        paths=paths,
        pool=pool,
        models=tuple(sec.str_list("models", [])),
        auth=auth,
        issuers=route_issuers,
        default_model=sec.str("default_model", None),
        max_tokens_limit=sec.int("max_tokens_limit", MAX_TOKENS_LIMIT, min=1, max=1 << 24),
        fallbacks=parse_fallbacks(sec),
        sections=_part_sections(sec, parts, frame, "route"),
    )
    sec.done()
    if cfg.default_model is not None:
        if not reaches_generation_model(cfg, pools, cfg.default_model):
            reachable = generation_models(cfg, pools)
            raise sec.error("default_model", f"{cfg.default_model!r} is not a generation model this route reaches"
                            f" (reachable: {', '.join(reachable) or 'none'})")
    return cfg
