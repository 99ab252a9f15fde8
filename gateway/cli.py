"""The `edgegw` command line. Each subsystem registers its own subcommands here."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _register_optional(sub: argparse._SubParsersAction) -> None:
    # Subsystems register lazily-importing subcommands; their heavy imports (torch, wasmtime)
    # happen only when the subcommand runs.
    from gpu_backend.cli import register as register_backend
    from wasm_plugins.cli import register as register_plugins

    register_backend(sub)
    register_plugins(sub)
    from gateway.loadtest.cli import register as register_loadtest

    register_loadtest(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgegw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", required=True, help="policy file, e.g. policies/gateway.yaml")
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.set_defaults(func=_serve)

    p = sub.add_parser("check-config", help="validate a policy file and exit")
    p.add_argument("file")
    p.set_defaults(func=_check_config)

    p = sub.add_parser("token", help="mint a JWT for an HS* issuer (demo and tests)")
    p.add_argument("--config", default="policies/gateway.yaml")
    p.add_argument("--issuer", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--scope", action="append", default=[], help="repeatable")
    p.add_argument("--model", action="append", default=[], help="allowed model (repeatable)")
    p.add_argument("--tier", default=None)
    p.add_argument("--tenant", default=None)
    p.add_argument("--ttl", type=int, default=3600)
    p.set_defaults(func=_token)

    p = sub.add_parser("demo", help="run a backend pool and the gateway on embedded defaults")
    p.add_argument("--port", type=int, default=int(os.environ.get("EDGEGW_PORT", "8080")))
    p.add_argument("--backend-port", type=int, default=int(os.environ.get("EDGEGW_DEMO_BACKEND_PORT", "9101")))
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--config", default=None, help="policy file (default: policies/gateway.yaml)")
    p.set_defaults(func=_demo)

    _register_optional(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    return serve(args.config, host=args.host, port=args.port, workers=args.workers)


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo import ROOT, run_demo

    config = Path(args.config) if args.config else ROOT / "policies" / "gateway.yaml"
    return run_demo(args.port, args.backend_port, args.replicas, config)


def _check_config(args: argparse.Namespace) -> int:
    from gateway.config import load_config

    cfg = load_config(args.file)
    print(f"{args.file}: ok ({len(cfg.issuers)} issuers, {len(cfg.pools)} pools, "
          f"{len(cfg.routes)} routes, {len(cfg.plugins)} plugins)")
    return 0


def _token(args: argparse.Namespace) -> int:
    from gateway.auth.mint import mint_token
    from gateway.config import load_config

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
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
