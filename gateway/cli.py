"""The `edgegw` command line: the server's commands (`serve`, `check-config`) here; every other
subsystem registers its own (the backend, plugins, policy, and the client commands of `gateway.client`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.client.defaults import CONFIG_ENV, DEFAULT_CONFIG, default_config


def _register_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Subsystems register lazily-importing subcommands; their heavy imports (torch, wasmtime)
    # happen only when the subcommand runs.
    from gpu_backend.cli import register as register_backend
    from wasm_plugins.cli import register as register_plugins

    register_backend(sub)
    register_plugins(sub)
    from gateway.client.loadtest.cli import register as register_loadtest

    register_loadtest(sub)
    from gateway.client.policy import register as register_policy

    register_policy(sub)
    from gateway.client.ask import (
        register as register_ask,  # `edgegw ask --image FILE "question"` (MessagePack)
    )

    register_ask(sub)
    from gateway.client.commands import register as register_client  # token, demo
    from gateway.client.usage import register as register_usage  # `edgegw usage --since 7d`

    register_usage(sub)

    register_client(sub)


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

    _register_optional(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.features import load_config
    from gateway.plugins.config import plugin_settings
    from gateway.plugins.embedder import ensure_plugin_dir
    from gateway.serving.server import serve

    config = load_config(args.config)
    plugins = plugin_settings(config)
    if plugins is not None and ensure_plugin_dir(plugins.plugin_dir, config.source):
        # here, so a bad path is a clean error before uvicorn starts
        print(f"edgegw: created plugin_dir {plugins.plugin_dir} ({args.config})", file=sys.stderr)
    return serve(config, host=args.host, port=args.port, workers=args.workers)


def _check_config(args: argparse.Namespace) -> int:
    from gateway.client.demo_secret import use_stored_secret
    from gateway.config.preflight import preflight
    from gateway.features import load_config
    from gateway.plugins.config import PluginSettings, plugin_settings

    use_stored_secret()  # the demo's secret, when EDGEGW_DEMO_SECRET is unset
    cfg = load_config(args.file)
    preflight(cfg)
    plugins = plugin_settings(cfg) or PluginSettings()
    print(f"{args.file}: ok ({len(cfg.issuers)} issuers, {len(cfg.pools)} pools, "
          f"{len(cfg.routes)} routes, {len(plugins.plugins)} plugins)")
    if plugins.plugin_dir and not Path(plugins.plugin_dir).exists():
        print(f"note: plugin_dir {plugins.plugin_dir} does not exist yet; `edgegw serve` creates it")
    if args.against:
        from gateway.policy.check import check_against

        return check_against(args.file, args.against, args.token)
    return 0


def main(argv: list[str] | None = None) -> int:
    from gateway.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"edgegw: invalid configuration: {exc}", file=sys.stderr)
        from gateway.client import demo_secret

        if demo_secret.ENV in exc.problem:
            print(f"edgegw: `edgegw demo` keeps its secret in {demo_secret.secret_file()} (read when "
                  f"{demo_secret.ENV} is unset): run the demo once, or export {demo_secret.ENV}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
