"""proxy-wasm ABI constants (spec abi-versions/v0.2.1) and the header-map pairs serialization."""

from __future__ import annotations

import struct

from wasm_plugins.raw import HostTrap

# proxy_status_t
OK, NOT_FOUND, BAD_ARGUMENT, SERIALIZATION_FAILURE, PARSE_FAILURE = 0, 1, 2, 3, 4
INVALID_MEMORY_ACCESS, EMPTY, CAS_MISMATCH, INTERNAL_FAILURE, UNIMPLEMENTED = 6, 7, 8, 10, 12

# proxy_action_t
CONTINUE, PAUSE = 0, 1

# proxy_buffer_type_t
HTTP_REQUEST_BODY, HTTP_RESPONSE_BODY, DOWNSTREAM_DATA, UPSTREAM_DATA = 0, 1, 2, 3
HTTP_CALL_RESPONSE_BODY, GRPC_CALL_MESSAGE, VM_CONFIGURATION, PLUGIN_CONFIGURATION = 4, 5, 6, 7
FOREIGN_FUNCTION_ARGUMENTS = 8

# proxy_map_type_t
HTTP_REQUEST_HEADERS, HTTP_REQUEST_TRAILERS, HTTP_RESPONSE_HEADERS, HTTP_RESPONSE_TRAILERS = 0, 1, 2, 3
GRPC_INITIAL_METADATA, GRPC_TRAILING_METADATA = 4, 5
HTTP_CALL_RESPONSE_HEADERS, HTTP_CALL_RESPONSE_TRAILERS = 6, 7

# proxy_stream_type_t
STREAM_REQUEST, STREAM_RESPONSE = 0, 1

# proxy_metric_type_t
METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM = 0, 1, 2

# proxy_log_level_t
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")

# ABI version markers (exported functions), newest first.
ABI_VERSIONS = {
    "proxy_abi_version_0_2_1": "0.2.1",
    "proxy_abi_version_0_2_0": "0.2.0",
    "proxy_abi_version_0_1_0": "0.1.0",
}

# Callbacks the host may call: name -> allowed parameter counts (0.1.0 lacks some end_of_stream
# flags) and whether they return an i32. Every parameter is an i32.
CALLBACKS: dict[str, tuple[tuple[int, ...], bool]] = {
    "_initialize": ((0,), False),
    "_start": ((0,), False),
    "proxy_on_memory_allocate": ((1,), True),
    "malloc": ((1,), True),
    "proxy_on_context_create": ((2,), False),
    "proxy_on_vm_start": ((2,), True),
    "proxy_on_configure": ((2,), True),
    "proxy_on_tick": ((1,), False),
    "proxy_on_request_headers": ((2, 3), True),
    "proxy_on_request_body": ((3,), True),
    "proxy_on_request_trailers": ((2,), True),
    "proxy_on_response_headers": ((2, 3), True),
    "proxy_on_response_body": ((3,), True),
    "proxy_on_response_trailers": ((2,), True),
    "proxy_on_http_call_response": ((5,), False),
    "proxy_on_queue_ready": ((2,), False),
    "proxy_on_done": ((1,), True),
    "proxy_on_log": ((1,), False),
    "proxy_on_delete": ((1,), False),
    "proxy_on_foreign_function": ((3,), False),
}

_U32 = struct.Struct("<I")


def serialize_map(pairs: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
    """count, (key_len, value_len) * count, then each key and value NUL-terminated."""
    if not pairs:
        return b"\x00\x00\x00\x00"
    items = [(k.encode("latin-1") if isinstance(k, str) else k, v.encode("latin-1") if isinstance(v, str) else v)
             for k, v in pairs]
    sizes = struct.pack(f"<{1 + 2 * len(items)}I", len(items), *(n for k, v in items for n in (len(k), len(v))))
    return sizes + b"".join(k + b"\x00" + v + b"\x00" for k, v in items)


def deserialize_map(data: bytes) -> list[tuple[str, str]]:
    """Parse a map from plugin memory. Malformed input traps the plugin (reason `bad_map`)."""
    if len(data) <= 1:  # the spec allows an empty map as 0 bytes or a single NUL
        return []
    if len(data) < 4:
        raise HostTrap("bad_map", "header map shorter than its count")
    (count,) = _U32.unpack_from(data, 0)
    header = 4 + 8 * count
    if count > 10_000 or header > len(data):
        raise HostTrap("bad_map", f"header map claims {count} pairs in {len(data)} bytes")
    sizes = struct.unpack_from(f"<{2 * count}I", data, 4)
    out: list[tuple[str, str]] = []
    pos = header
    for i in range(count):
        klen, vlen = sizes[2 * i], sizes[2 * i + 1]
        end = pos + klen + 1 + vlen + 1
        if end > len(data) or data[pos + klen] != 0 or data[end - 1] != 0:
            raise HostTrap("bad_map", f"header map pair {i} overruns the buffer or lacks its NUL")
        out.append((data[pos:pos + klen].decode("latin-1"), data[pos + klen + 1:end - 1].decode("latin-1")))
        pos = end
    return out
