"""`edgegw plugin check FILE.wasm` and `edgegw plugin push NAME FILE --gateway URL --token TOKEN`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the plugin subcommands. Imports wasmtime only when a subcommand runs."""
    plugin = sub.add_parser("plugin", help="inspect and deploy wasm plugins")
    psub = plugin.add_subparsers(dest="plugin_command", required=True)

    p = psub.add_parser("check", help="ABI version, imports (resolved or not), exports of a module")
    p.add_argument("file")
    p.add_argument("--config", default=None, help="also start it and run on_configure with this JSON/text")
    p.set_defaults(func=_check)

    p = psub.add_parser("push", help="upload a version to a running gateway (PUT /admin/plugins/NAME)")
    p.add_argument("name")
    p.add_argument("file")
    p.add_argument("--gateway", required=True, help="e.g. http://127.0.0.1:8080")
    p.add_argument("--token", required=True, help="a JWT with the admin scope")
    p.add_argument("--canary", type=float, default=None, help="serve this share of traffic first (0..1)")
    p.add_argument("--description", default="")
    p.add_argument("--config", default=None, help="the plugin's configuration: JSON or text")
    p.add_argument("--config-file", default=None, help="the plugin's configuration from a file (JSON, YAML or text)")
    p.set_defaults(func=_push)


def _check(args: argparse.Namespace) -> int:
    from wasm_plugins.engine import CompileError, compile_module
    from wasm_plugins.module import inspect

    try:
        compiled = compile_module(Path(args.file).read_bytes(), use_cache=False)
    except (OSError, CompileError) as exc:
        print(f"{args.file}: cannot load: {exc}", file=sys.stderr)
        return 1
    info = inspect(compiled.module)
    print(f"file:     {args.file}")
    print(f"sha256:   {compiled.sha256}")
    print(f"abi:      {info.abi_version or 'none'}")
    print("imports:")
    for module, name, status in info.imports:
        print(f"  {module}.{name:40s} {status}")
    print("exports:")
    for name in info.exports:
        print(f"  {name}{'  (callback)' if name in info.callbacks else ''}")
    problems = list(info.problems)
    if not problems and args.config is not None:
        problems += _start(compiled, info, args.config)
    for problem in problems:
        print(f"problem:  {problem}")
    print("ok" if not problems else "NOT LOADABLE")
    return 0 if not problems else 1


def _start(compiled: object, info: object, config: str) -> list[str]:
    """Instantiate and configure the module, as a load would before it takes traffic."""
    import json

    from wasm_plugins.config import Limits
    from wasm_plugins.raw import WasmCallError
    from wasm_plugins.services import Services
    from wasm_plugins.version import PluginVersion, VersionMeta

    try:
        value = json.loads(config)
    except json.JSONDecodeError:
        value = config
    version = PluginVersion("check", 1, compiled, info, Limits(), b"", {}, value,  # type: ignore[arg-type]
                            VersionMeta("cli"), Services())
    try:
        version.prepare({version.config_for(None)})
    except WasmCallError as exc:
        return [f"start-up failed ({exc.reason}): {exc}"]
    return []


def _push(args: argparse.Namespace) -> int:
    import httpx

    params = {"description": args.description}
    if args.canary is not None:
        params["canary"] = str(args.canary)
    try:
        config = _push_config(args)
        if config is not None:
            params["config"] = config  # the admin API reads it as JSON, else as text
        data = Path(args.file).read_bytes()
        resp = httpx.put(f"{args.gateway.rstrip('/')}/admin/plugins/{args.name}", content=data, params=params,
                         headers={"authorization": f"Bearer {args.token}", "content-type": "application/wasm"},
                         timeout=60)
    except (OSError, httpx.HTTPError) as exc:
        print(f"push failed: {exc}", file=sys.stderr)
        return 1
    print(resp.text)
    return 0 if resp.status_code < 300 else 1


def _push_config(args: argparse.Namespace) -> str | None:
    """The configuration to send with a push: --config as given, or --config-file (YAML becomes JSON)."""
    if args.config is not None and args.config_file is not None:
        raise OSError("give --config or --config-file, not both")
    if args.config_file is None:
        config: str | None = args.config
        return config
    import json

    import yaml

    text = Path(args.config_file).read_text()
    if Path(args.config_file).suffix in (".yaml", ".yml"):
        return json.dumps(yaml.safe_load(text))
    return text
