"""`edgegw token` and `edgegw demo`: registered here, imported when they run (the demo pulls in the
backend and a console UI)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gateway.client.defaults import CONFIG_ENV, DEFAULT_CONFIG, default_config, positive_int


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _demo(args: argparse.Namespace) -> int:
    from gateway.client.demo import ROOT, run_demo

    config = Path(args.config) if args.config else ROOT / "policies" / "gateway.yaml"
    return run_demo(args.port, args.backend_port, args.replicas, config)


def _token(args: argparse.Namespace) -> int:
    from gateway.auth.mint import mint_token
    from gateway.client.demo_secret import use_stored_secret
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
