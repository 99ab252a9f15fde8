"""Host functions for HTTP streams: header maps, buffers, properties, local responses, stream control
and `proxy_http_call`. Mixed into PluginInstance; `self.current` is the context being called."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from wasm_plugins import abi
from wasm_plugins.abi import deserialize_map, serialize_map
from wasm_plugins.properties import get_property, parse_path, set_property
from wasm_plugins.pseudo import ORIGIN_FORM
from wasm_plugins.raw import HostTrap
from wasm_plugins.state import CallResult, ContextState, LocalResponse, RootState, StreamState

if TYPE_CHECKING:  # annotations only: no import at run time
    from wasm_plugins.services import Services
    from wasm_plugins.version import PluginVersion

# Headers of an http call the host owns: framing and connection management (aiohttp sets them
# for what it really sends) and the Host of the upstream it really connects to.
_CALL_DROP = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te",
                        "trailer", "upgrade", "expect", "proxy-connection", "proxy-authorization"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP method or header name
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")  # a header value: no CR, LF or other controls


class HttpHost:
    mem: Any
    current: ContextState | None
    contexts: dict[int, ContextState]
    version: PluginVersion
    services: Services
    configuring: bytes | None
    delivering: CallResult | None  # the http call answer being handed to proxy_on_http_call_response

    # helpers implemented by PluginInstance
    def copy_out(self, data: bytes, ptr_ptr: int, size_ptr: int) -> None: ...

    # --- header maps --------------------------------------------------------------------------

    def _map(self, map_type: int) -> list[tuple[str, str]] | None:
        st = self.current
        if type(st) is StreamState:
            if map_type == abi.HTTP_REQUEST_HEADERS:
                return st.request_headers
            if map_type == abi.HTTP_RESPONSE_HEADERS:
                return st.response_headers
        if map_type == abi.HTTP_CALL_RESPONSE_HEADERS and self.delivering is not None:
            return self.delivering.headers
        if map_type in (abi.HTTP_REQUEST_TRAILERS, abi.HTTP_RESPONSE_TRAILERS, abi.HTTP_CALL_RESPONSE_TRAILERS):
            return []
        return None

    def _changed(self, map_type: int, key: str) -> None:
        """Note a change of a stream's header map; `key` ":" when a whole map was replaced."""
        st = self.current
        if isinstance(st, StreamState):
            if map_type == abi.HTTP_REQUEST_HEADERS:
                st.request_headers_changed = True
            elif map_type == abi.HTTP_RESPONSE_HEADERS:
                st.response_headers_changed = True
            else:
                return
            if key[:1] == ":":
                st.pseudo_changed = True

    def proxy_get_header_map_size(self, map_type: int, ret_size: int) -> int:
        pairs = self._map(map_type)
        if pairs is None:
            return abi.NOT_FOUND
        self.mem.write_u32(ret_size, len(serialize_map(pairs)))
        return abi.OK

    def proxy_get_header_map_pairs(self, map_type: int, ret_ptr: int, ret_size: int) -> int:
        pairs = self._map(map_type)
        if pairs is None:
            return abi.NOT_FOUND
        self.copy_out(serialize_map(pairs), ret_ptr, ret_size)
        return abi.OK

    def proxy_set_header_map_pairs(self, map_type: int, ptr: int, size: int) -> int:
        pairs = self._map(map_type)
        new = [(k.lower(), v) for k, v in deserialize_map(self.mem.read(ptr, size))]
        if pairs is None:
            return abi.NOT_FOUND
        pairs[:] = new
        self._changed(map_type, ":")
        return abi.OK

    def proxy_get_header_map_value(self, map_type: int, kptr: int, ksize: int, ret_ptr: int, ret_size: int) -> int:
        pairs = self._map(map_type)
        key = self.mem.read_str(kptr, ksize).lower()
        if pairs is None:
            return abi.NOT_FOUND
        for k, v in pairs:
            if k == key:
                self.copy_out(v.encode("latin-1", "replace"), ret_ptr, ret_size)
                return abi.OK
        return abi.NOT_FOUND

    def proxy_add_header_map_value(self, map_type: int, kptr: int, ksize: int, vptr: int, vsize: int) -> int:
        pairs = self._map(map_type)
        key, value = self.mem.read_str(kptr, ksize).lower(), self.mem.read_str(vptr, vsize)
        if pairs is None:
            return abi.NOT_FOUND
        pairs.append((key, value))
        self._changed(map_type, key)
        return abi.OK

    def proxy_replace_header_map_value(self, map_type: int, kptr: int, ksize: int, vptr: int, vsize: int) -> int:
        pairs = self._map(map_type)
        key, value = self.mem.read_str(kptr, ksize).lower(), self.mem.read_str(vptr, vsize)
        if pairs is None:
            return abi.NOT_FOUND
        pairs[:] = [(k, v) for k, v in pairs if k != key]
        pairs.append((key, value))
        self._changed(map_type, key)
        return abi.OK

    def proxy_remove_header_map_value(self, map_type: int, kptr: int, ksize: int) -> int:
        pairs = self._map(map_type)
        key = self.mem.read_str(kptr, ksize).lower()
        if pairs is None:
            return abi.NOT_FOUND
        pairs[:] = [(k, v) for k, v in pairs if k != key]
        self._changed(map_type, key)
        return abi.OK

    # --- buffers ------------------------------------------------------------------------------

    def _buffer(self, buffer_type: int) -> bytes | None:
        st = self.current
        if buffer_type == abi.PLUGIN_CONFIGURATION:
            if self.configuring is not None:
                return self.configuring
            root = self.contexts.get(st.root_id) if st is not None else None
            return root.config if isinstance(root, RootState) else None
        if buffer_type == abi.VM_CONFIGURATION:
            return self.version.vm_config
        if buffer_type == abi.HTTP_CALL_RESPONSE_BODY:
            return self.delivering.body if self.delivering is not None else None
        if isinstance(st, StreamState):
            if buffer_type == abi.HTTP_REQUEST_BODY:
                return st.request_body
            if buffer_type == abi.HTTP_RESPONSE_BODY:
                return st.response_body
        return None

    def proxy_get_buffer_bytes(self, buffer_type: int, start: int, max_size: int, ret_ptr: int,
                               ret_size: int) -> int:
        data = self._buffer(buffer_type)
        if data is None:
            return abi.NOT_FOUND
        self.copy_out(data[start:start + max_size], ret_ptr, ret_size)
        return abi.OK

    def proxy_get_buffer_status(self, buffer_type: int, ret_size: int, ret_flags: int) -> int:
        data = self._buffer(buffer_type)
        if data is None:
            return abi.NOT_FOUND
        self.mem.write_u32(ret_size, len(data))
        self.mem.write_u32(ret_flags, 0)
        return abi.OK

    def proxy_set_buffer_bytes(self, buffer_type: int, start: int, size: int, ptr: int, value_size: int) -> int:
        """Replace bytes [start, start+size) of the buffer: start=0,size=0 prepends, start>=len appends,
        start=0 with size>=len replaces it all (Envoy's semantics)."""
        value = self.mem.read(ptr, value_size)
        st = self.current
        if not isinstance(st, StreamState):
            return abi.NOT_FOUND
        if buffer_type == abi.HTTP_REQUEST_BODY and st.request_body is not None:
            body = st.request_body
            st.request_body = body[:start] + value + body[start + size:]
            st.request_body_changed = True
        elif buffer_type == abi.HTTP_RESPONSE_BODY and st.response_body is not None:
            body = st.response_body
            st.response_body = body[:start] + value + body[start + size:]
        else:
            return abi.NOT_FOUND
        return abi.OK

    # --- properties ---------------------------------------------------------------------------

    def proxy_get_property(self, ptr: int, size: int, ret_ptr: int, ret_size: int) -> int:
        path, key = parse_path(self.mem.read(ptr, size))
        st = self.current if isinstance(self.current, StreamState) else None
        version = self.version
        value = get_property(path, st, version.properties, key, version.embedder)
        if value is None:
            return abi.NOT_FOUND
        self.copy_out(value, ret_ptr, ret_size)
        return abi.OK

    def proxy_set_property(self, ptr: int, size: int, vptr: int, vsize: int) -> int:
        mem = self.mem
        path, key = parse_path(mem.read(ptr, size))
        value = mem.read(vptr, vsize)
        set_property(path, value, self.current if isinstance(self.current, StreamState) else None, key,
                     self.version.embedder)
        return abi.OK

    # --- stream control -----------------------------------------------------------------------

    def proxy_send_local_response(self, status: int, dptr: int, dsize: int, bptr: int, bsize: int,
                                  hptr: int, hsize: int, grpc_status: int) -> int:
        details = self.mem.read_str(dptr, dsize)
        body = self.mem.read(bptr, bsize)
        headers = [(k.lower(), v) for k, v in deserialize_map(self.mem.read(hptr, hsize))]
        st = self.current
        if not isinstance(st, StreamState):
            return abi.BAD_ARGUMENT
        if not 200 <= status <= 599:
            raise HostTrap("abi", f"proxy_send_local_response with status {status}")
        st.local_response = LocalResponse(status, body, headers, details)
        self._wake(st)
        return abi.OK

    def proxy_continue_stream(self, stream_type: int) -> int:
        st = self.current
        if isinstance(st, StreamState):
            st.continued = True
            self._wake(st)
        return abi.OK

    def proxy_close_stream(self, stream_type: int) -> int:
        st = self.current
        if isinstance(st, StreamState):
            st.reset = True
            self._wake(st)
        return abi.OK

    # 0.1.0 names
    def proxy_continue_request(self) -> int:
        return self.proxy_continue_stream(abi.STREAM_REQUEST)

    def proxy_continue_response(self) -> int:
        return self.proxy_continue_stream(abi.STREAM_RESPONSE)

    def proxy_clear_route_cache(self) -> int:
        return abi.OK

    def proxy_get_configuration(self, ret_ptr: int, ret_size: int) -> int:
        return self.proxy_get_buffer_bytes(abi.PLUGIN_CONFIGURATION, 0, 1 << 30, ret_ptr, ret_size)

    @staticmethod
    def _wake(st: StreamState) -> None:
        if st.wakeup is not None:
            st.wakeup.set()

    # --- http calls ---------------------------------------------------------------------------

    def proxy_http_call(self, uptr: int, usize: int, hptr: int, hsize: int, bptr: int, bsize: int,
                        tptr: int, tsize: int, timeout_ms: int, ret_token: int) -> int:
        """A call to one of the plugin's upstreams, built from parts: the connection always goes to
        the configured upstream's scheme, host and port; `:path` must be origin-form (start with
        '/'); `:authority`/`host` never redirect it (the upstream gets its own Host); framing
        headers are the host's (content-length of the body actually sent). BAD_ARGUMENT otherwise."""
        upstream = self.mem.read_str(uptr, usize)
        headers = deserialize_map(self.mem.read(hptr, hsize))
        body = self.mem.read(bptr, bsize)
        deserialize_map(self.mem.read(tptr, tsize))  # validated, then ignored: HTTP/1.1 upstreams
        st = self.current
        target = self.version.targets.get(upstream)
        if target is None or st is None:
            return abi.BAD_ARGUMENT
        method = path = None
        sent: list[tuple[str, str]] = []
        for k, v in headers:
            name = k.lower()
            if name == ":path":
                path = path or v
            elif name == ":method":
                method = method or v
            elif name[:1] == ":" or name in _CALL_DROP:
                continue
            elif not _TOKEN.fullmatch(name) or not _VALUE.fullmatch(v):
                return abi.BAD_ARGUMENT
            else:
                sent.append((k, v))
        if path is None or not ORIGIN_FORM.fullmatch(path) or not _TOKEN.fullmatch(method or "GET"):
            return abi.BAD_ARGUMENT
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return abi.INTERNAL_FAILURE
        limit = self.version.limits.http_call_timeout_ms
        timeout = min(timeout_ms or limit, limit) / 1000.0
        token = self.services.next_token()
        task = loop.create_task(self.services.http_call(target, (method or "GET").upper(), path, sent, body, timeout))
        st.pending[token] = task
        if st.is_root:
            # mypy cannot infer a lambda with default arguments (they bind this call's context and token)
            task.add_done_callback(lambda t, root=st, tok=token: self.deliver_root_call(root, tok, t))  # type: ignore[misc]
        self.mem.write_u32(ret_token, token)
        return abi.OK

    def proxy_get_status(self, ret_code: int, ret_msg_ptr: int, ret_msg_size: int) -> int:
        code = self.delivering.status if self.delivering is not None else 0
        self.mem.write_u32(ret_code, code)
        self.mem.write_u32(ret_msg_ptr, 0)
        self.mem.write_u32(ret_msg_size, 0)
        return abi.OK

    def deliver_root_call(self, root: ContextState, token: int, task: asyncio.Task[CallResult]) -> None:
        """Implemented by PluginInstance (root contexts get answers outside any request)."""


# The `env` imports this class implements: import name -> method.
HTTP_IMPORTS: dict[str, str] = {
    "proxy_get_header_map_size": "proxy_get_header_map_size",
    "proxy_get_header_map_pairs": "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs": "proxy_set_header_map_pairs",
    "proxy_get_header_map_value": "proxy_get_header_map_value",
    "proxy_add_header_map_value": "proxy_add_header_map_value",
    "proxy_replace_header_map_value": "proxy_replace_header_map_value",
    "proxy_remove_header_map_value": "proxy_remove_header_map_value",
    "proxy_get_buffer_bytes": "proxy_get_buffer_bytes",
    "proxy_get_buffer_status": "proxy_get_buffer_status",
    "proxy_set_buffer_bytes": "proxy_set_buffer_bytes",
    "proxy_get_property": "proxy_get_property",
    "proxy_set_property": "proxy_set_property",
    "proxy_send_local_response": "proxy_send_local_response",
    "proxy_continue_stream": "proxy_continue_stream",
    "proxy_close_stream": "proxy_close_stream",
    "proxy_continue_request": "proxy_continue_request",
    "proxy_continue_response": "proxy_continue_response",
    "proxy_clear_route_cache": "proxy_clear_route_cache",
    "proxy_get_configuration": "proxy_get_configuration",
    "proxy_http_call": "proxy_http_call",
    "proxy_get_status": "proxy_get_status",
}
