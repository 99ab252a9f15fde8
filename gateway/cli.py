"""The `edgegw` command line. Each subsystem registers its own subcommands here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _register_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Subsystems register lazily-importing subcommands; their heavy imports (torch, wasmtime)
    # happen only when the subcommand runs.
    from gpu_backend.cli import register as register_backend
    from wasm_plugins.cli import register as register_plugins

    register_backend(sub)
    register_plugins(sub)
    from gateway.loadtest.cli import register as register_loadtest

    register_loadtest(sub)
    from gateway.policy.cli import register as register_policy

    register_policy(sub)
    from gateway.ask import register as register_ask  # `edgegw ask --image FILE "question"` (MessagePack)

    register_ask(sub)
    from gateway.telemetry.usage_cli import register as register_usage  # `edgegw usage --since 7d`

    register_usage(sub)


CONFIG_ENV = "EDGEGW_CONFIG"  # the policy file of every command that takes one (the image sets it)
DEFAULT_CONFIG = "policies/gateway.yaml"


def default_config() -> str | None:
    """The policy file from $EDGEGW_CONFIG, or None when unset."""
    return os.environ.get(CONFIG_ENV) or None


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgegw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", default=default_config(), required=default_config() is None,
                   help=f"policy file, e.g. {DEFAULT_CONFIG} (default: ${CONFIG_ENV})")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=_serve)

    p = sub.add_parser("check-config", help="validate a policy file and exit")
    p.add_argument("file", nargs="?", default=default_config() or DEFAULT_CONFIG,
                   help=f"policy file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
    p.add_argument("--against", metavar="RUNNING_URL", default=None,
                   help="also ask this running gateway which changes a reload applies live, at the next "
                        "connection, or only at restart (exit 3 when a restart is needed)")
    p.add_argument("--token", default=os.environ.get("EDGEGW_ADMIN_TOKEN"),
                   help="admin token for --against (default: $EDGEGW_ADMIN_TOKEN)")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("token", help="mint a JWT for an HS* issuer (demo and tests)")
    p.add_argument("--config", default=default_config() or DEFAULT_CONFIG,
                   help=f"policy file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG})")
    p.add_argument("--issuer", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--scope", action="append", default=[], help="repeatable")
    p.add_argument("--model", action="append", default=[], help="allowed model (repeatable)")
    p.add_argument("--tier", default=None)
    p.add_argument("--tenant", default=None)
    p.add_argument("--ttl", type=positive_int, default=3600, help="lifetime in seconds (at least 1)")
    p.set_defaults(func=_token)

    p = sub.add_parser("demo", help="run a backend pool and the gateway on embedded defaults")
    p.add_argument("--port", type=int, default=int(os.environ.get("EDGEGW_PORT", "8080")))
    p.add_argument("--backend-port", type=int, default=int(os.environ.get("EDGEGW_DEMO_BACKEND_PORT", "9101")))
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--config", default=default_config(),
                   help=f"policy file (default: ${CONFIG_ENV}, else the project's {DEFAULT_CONFIG})")
    p.set_defaults(func=_demo)

    _register_optional(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.features import load_config
    from gateway.plugins.config import plugin_settings
    from gateway.plugins.embedder import ensure_plugin_dir
    from gateway.server import serve

    config = load_config(args.config)
    plugins = plugin_settings(config)
    if plugins is not None and ensure_plugin_dir(plugins.plugin_dir, config.source):
        # here, so a bad path is a clean error before uvicorn starts
        print(f"edgegw: created plugin_dir {plugins.plugin_dir} ({args.config})", file=sys.stderr)
    return serve(args.config, host=args.host, port=args.port, workers=args.workers)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import ROOT, run_demo

    config = Path(args.config) if args.config else ROOT / "policies" / "gateway.yaml"
    return run_demo(args.port, args.backend_port, args.replicas, config)


def _check_config(args: argparse.Namespace) -> int:
    from gateway.demo_secret import use_stored_secret
    from gateway.features import load_config
    from gateway.plugins.config import PluginSettings, plugin_settings

    use_stored_secret()  # the demo's secret, when EDGEGW_DEMO_SECRET is unset
    cfg = load_config(args.file)
    plugins = plugin_settings(cfg) or PluginSettings()
    print(f"{args.file}: ok ({len(cfg.issuers)} issuers, {len(cfg.pools)} pools, "
          f"{len(cfg.routes)} routes, {len(plugins.plugins)} plugins)")
    if plugins.plugin_dir and not Path(plugins.plugin_dir).exists():
        print(f"note: plugin_dir {plugins.plugin_dir} does not exist yet; `edgegw serve` creates it")
    if args.against:
        from gateway.policy.check import check_against

        return check_against(args.file, args.against, args.token)
    return 0


def _token(args: argparse.Namespace) -> int:
    from gateway.auth.mint import mint_token
    from gateway.demo_secret import use_stored_secret
    from gateway.features import load_config

    use_stored_secret()  # the demo's secret, when EDGEGW_DEMO_SECRET is unset
    cfg = load_config(args.config)
    issuer = cfg.issuer(args.issuer)
    if issuer is None:
        print(f"edgegw token: no issuer named {args.issuer!r} in {args.config}", file=sys.stderr)
        return 2
    print(mint_token(issuer, args.sub, scopes=args.scope, models=args.model, tier=args.tier,
                     tenant=args.tenant, ttl_s=args.ttl))
    return 0


def main(argv: list[str] | None = None) -> int:
    from gateway.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"edgegw: invalid configuration: {exc}", file=sys.stderr)
        from gateway import demo_secret

        if demo_secret.ENV in exc.problem:
            print(f"edgegw: `edgegw demo` keeps its secret in {demo_secret.secret_file()} (read when "
                  f"{demo_secret.ENV} is unset): run the demo once, or export {demo_secret.ENV}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
