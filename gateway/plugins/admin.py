"""The plugin admin API, mounted by the gateway: `admin_routes(manager, require_admin)`.

    GET    /admin/plugins                    every plugin: stable, canary, history, events
    GET    /admin/plugins/{name}             one plugin
    PUT    /admin/plugins/{name}             upload a version: the body is the .wasm (application/wasm);
                                             query: sha256, canary (share 0..1), description, config (JSON)
    DELETE /admin/plugins/{name}             unload it
    POST   /admin/plugins/{name}/rollback    drop the canary, or go back to the previous version
    POST   /admin/plugins/{name}/promote     make the canary the stable version

Every route requires a JWT with the admin scope. With a `plugin_dir`, changes are also written
there so other workers (and restarts) converge on them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError
from wasm_plugins.config import NAME_RE
from wasm_plugins.errors import PluginLoadError

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


def admin_routes(manager: Any, require_admin: Callable[[Request], Awaitable[dict[str, Any]]]) -> list[Route]:
    def name_of(request: Request) -> str:
        name: str = request.path_params["name"]
        if not NAME_RE.match(name):
            raise GatewayError(400, "plugin names use letters, digits, '_', '-', '.'", "invalid_plugin_name")
        return name

    def plugin_json(name: str) -> dict[str, Any]:
        plugin = manager.plugins.get(name)
        if plugin is None:
            raise GatewayError(404, f"no plugin named {name!r}", "plugin_not_found")
        described: dict[str, Any] = plugin.describe()
        return described

    async def list_plugins(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse({"plugins": manager.describe()})

    async def get_plugin(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse(plugin_json(name_of(request)))

    async def put_plugin(request: Request) -> Response:
        await require_admin(request)
        name = name_of(request)
        data = await _read_capped(request, MAX_UPLOAD)
        if not data:
            raise GatewayError(400, "the request body must be the plugin's .wasm bytes", "empty_upload")
        q = request.query_params
        kwargs: dict[str, Any] = {"sha256": q.get("sha256"), "description": q.get("description", "")}
        if q.get("canary"):
            try:
                kwargs["canary"] = float(q["canary"])
            except ValueError:
                raise GatewayError(400, "canary must be a number between 0 and 1", "invalid_canary") from None
            if not 0.0 < kwargs["canary"] <= 1.0:
                raise GatewayError(400, "canary must be a number between 0 and 1", "invalid_canary")
        if "config" in q:
            try:
                kwargs["config"] = json.loads(q["config"])
            except json.JSONDecodeError:
                kwargs["config"] = q["config"]
        try:
            version = await manager.load(name, data, source="admin", **kwargs)
        except PluginLoadError as exc:
            previous = manager.plugins.get(name)
            keeps = ("the previous version keeps serving" if previous is not None and previous.stable is not None
                     else "nothing was loaded")
            raise GatewayError(422, f"plugin {name!r} rejected, {keeps}: {exc}", "plugin_rejected") from None
        if manager.watcher is not None:
            manager.watcher.publish(name, version.compiled.binary)
        plugin = manager.plugins[name]
        role = "canary" if plugin.canary is version else "stable"
        return JSONResponse({"plugin": name, "role": role, **version.describe()}, status_code=201)

    async def delete_plugin(request: Request) -> Response:
        await require_admin(request)
        name = name_of(request)
        plugin_json(name)
        manager.remove(name)
        if manager.watcher is not None:
            manager.watcher.unpublish(name)
        return JSONResponse({"plugin": name, "removed": True})

    async def rollback(request: Request) -> Response:
        await require_admin(request)
        name = name_of(request)
        plugin_json(name)
        try:
            manager.rollback(name)
        except LookupError as exc:
            raise GatewayError(409, str(exc), "nothing_to_roll_back") from None
        stable = manager.plugins[name].stable
        if manager.watcher is not None and stable is not None:
            manager.watcher.publish(name, stable.compiled.binary)
        return JSONResponse(plugin_json(name))

    async def promote(request: Request) -> Response:
        await require_admin(request)
        name = name_of(request)
        plugin_json(name)
        try:
            version = manager.promote(name)
        except LookupError as exc:
            raise GatewayError(409, str(exc), "no_canary") from None
        if manager.watcher is not None:
            manager.watcher.publish(name, version.compiled.binary)
        return JSONResponse(plugin_json(name))

    return [
        Route("/admin/plugins", list_plugins, methods=["GET"]),
        Route("/admin/plugins/{name}", get_plugin, methods=["GET"]),
        Route("/admin/plugins/{name}", put_plugin, methods=["PUT"]),
        Route("/admin/plugins/{name}", delete_plugin, methods=["DELETE"]),
        Route("/admin/plugins/{name}/rollback", rollback, methods=["POST"]),
        Route("/admin/plugins/{name}/promote", promote, methods=["POST"]),
    ]
