"""The plugin admin API, mounted by the gateway: `plugin_routes(config)`, one endpoint class per resource.

    GET    /admin/plugins                    every plugin: stable, canary, history, events
    GET    /admin/plugins/{name}             one plugin
    PUT    /admin/plugins/{name}             upload a version: the body is the .wasm (application/wasm);
                                             query: sha256, canary (share 0..1), description, config (JSON)
    DELETE /admin/plugins/{name}             unload it
    POST   /admin/plugins/{name}/rollback    drop the canary, or go back to the previous version
    POST   /admin/plugins/{name}/promote     make the canary the stable version

The routes sit behind the admin guard (a JWT with the admin scope) and act on the plugin manager of
the policy version in use when the request arrives. With a `plugin_dir`, changes are also written there so other
workers (and restarts) converge on them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError
from gateway.feature import GatewayView
from gateway.plugins.config import plugin_settings
from gateway.plugins.embedder import MANAGER
from wasm_plugins.config import NAME_RE
from wasm_plugins.errors import PluginLoadError
from wasm_plugins.manager import PluginManager

MAX_UPLOAD = 64 << 20


async def _read_capped(request: Request, limit: int) -> bytes:
    """The request body, or 413 as soon as it passes `limit`: a declared Content-Length is checked
    up front, a chunked body while it arrives (it declares nothing)."""
    too_large = GatewayError(413, f"plugin larger than {limit} bytes", "body_too_large")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class _PluginResource(HTTPEndpoint):
    """A plugin admin resource: checks the caller, then acts on the active version's manager."""

    async def manager(self, request: Request) -> PluginManager:
        gateway: GatewayView = self.scope["app"].state.gateway
        manager = gateway.state(MANAGER)
        if manager is None:
            raise GatewayError(404, "the running policy turned plugins off (restart to drop these endpoints)",
                               "plugins_not_configured")
        return manager


def _name_of(request: Request) -> str:
    name: str = request.path_params["name"]
    if not NAME_RE.match(name):
        raise GatewayError(400, "plugin names use letters, digits, '_', '-', '.'", "invalid_plugin_name")
    return name


def _plugin_json(manager: PluginManager, name: str) -> dict[str, Any]:
    plugin = manager.plugins.get(name)
    if plugin is None:
        raise GatewayError(404, f"no plugin named {name!r}", "plugin_not_found")
    described: dict[str, Any] = plugin.describe()
    return described


def _upload_options(request: Request) -> dict[str, Any]:
    """`PluginManager.load` keyword arguments from the upload's query string."""
    q = request.query_params
    options: dict[str, Any] = {"sha256": q.get("sha256"), "description": q.get("description", "")}
    if q.get("canary"):
        try:
            options["canary"] = float(q["canary"])
        except ValueError:
            raise GatewayError(400, "canary must be a number between 0 and 1", "invalid_canary") from None
        if not 0.0 < options["canary"] <= 1.0:
            raise GatewayError(400, "canary must be a number between 0 and 1", "invalid_canary")
    if "config" in q:
        try:
            options["config"] = json.loads(q["config"])
        except json.JSONDecodeError:
            options["config"] = q["config"]
    return options


class Plugins(_PluginResource):
    """`/admin/plugins`: every plugin."""

    async def get(self, request: Request) -> Response:
        manager = await self.manager(request)
        return JSONResponse({"plugins": manager.describe()})


class Plugin(_PluginResource):
    """`/admin/plugins/{name}`: read, upload a version, unload."""

    async def get(self, request: Request) -> Response:
        manager = await self.manager(request)
        return JSONResponse(_plugin_json(manager, _name_of(request)))

    async def put(self, request: Request) -> Response:
        manager = await self.manager(request)
        name = _name_of(request)
        data = await _read_capped(request, MAX_UPLOAD)
        if not data:
            raise GatewayError(400, "the request body must be the plugin's .wasm bytes", "empty_upload")
        options = _upload_options(request)
        try:
            version = await manager.load(name, data, source="admin", **options)
        except PluginLoadError as exc:
            previous = manager.plugins.get(name)
            keeps = ("the previous version keeps serving" if previous is not None and previous.stable is not None
                     else "nothing was loaded")
            raise GatewayError(422, f"plugin {name!r} rejected, {keeps}: {exc}", "plugin_rejected") from None
        if manager.watcher is not None:
            manager.watcher.publish(name, version.compiled.binary)
        role = "canary" if manager.plugins[name].canary is version else "stable"
        return JSONResponse({"plugin": name, "role": role, **version.describe()}, status_code=201)

    async def delete(self, request: Request) -> Response:
        manager = await self.manager(request)
        name = _name_of(request)
        _plugin_json(manager, name)
        manager.remove(name)
        if manager.watcher is not None:
            manager.watcher.unpublish(name)
        return JSONResponse({"plugin": name, "removed": True})


class PluginRollback(_PluginResource):
    """`/admin/plugins/{name}/rollback`: drop the canary, or go back to the previous version."""

    async def post(self, request: Request) -> Response:
        manager = await self.manager(request)
        name = _name_of(request)
        _plugin_json(manager, name)
        try:
            manager.rollback(name)
        except LookupError as exc:
            raise GatewayError(409, str(exc), "nothing_to_roll_back") from None
        stable = manager.plugins[name].stable
        if manager.watcher is not None and stable is not None:
            manager.watcher.publish(name, stable.compiled.binary)
        return JSONResponse(_plugin_json(manager, name))


class PluginPromote(_PluginResource):
    """`/admin/plugins/{name}/promote`: make the canary the stable version."""

    async def post(self, request: Request) -> Response:
        manager = await self.manager(request)
        name = _name_of(request)
        _plugin_json(manager, name)
        try:
            version = manager.promote(name)
        except LookupError as exc:
            raise GatewayError(409, str(exc), "no_canary") from None
        if manager.watcher is not None:
            manager.watcher.publish(name, version.compiled.binary)
        return JSONResponse(_plugin_json(manager, name))


class PluginsOff(HTTPEndpoint):
    """Every plugin path when the starting policy configures no plugins: a 404 that says why."""

    async def dispatch(self) -> None:
        request = Request(self.scope, receive=self.receive)
        source = request.app.state.gateway.config.source
        raise GatewayError(404, f"no plugins are configured: {source} has no `plugins:` list and no `plugin_dir`, "
                                "so plugins cannot be listed or uploaded; add one of them and restart "
                                "(docs/plugins.md)", "plugins_not_configured")


def plugin_routes(config: GatewayConfig) -> list[BaseRoute]:
    """The plugin endpoints (under `/admin`); a policy without plugins gets the 404s that say why."""
    if plugin_settings(config) is None:
        methods = ["GET", "PUT", "DELETE", "POST"]
        return [Route(path, PluginsOff, methods=methods)
                for path in ("/plugins", "/plugins/{name}", "/plugins/{name}/rollback", "/plugins/{name}/promote")]
    return [
        Route("/plugins", Plugins),
        Route("/plugins/{name}", Plugin),
        Route("/plugins/{name}/rollback", PluginRollback),
        Route("/plugins/{name}/promote", PluginPromote),
    ]
