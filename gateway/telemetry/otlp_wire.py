"""The gateway's spans as OTLP protobuf bytes, written directly in the wire format.

The SDK's exporter builds a protobuf message object per span, attribute and value and then
serialises it (about 30 µs a span here); a request has five to ten spans. `encode_spans` writes the
same bytes: through the compiled encoder (`_otlp.c`, about a fifth of the Python one's instructions)
where setup.py built it, else in Python with two precompiled `struct`s per span (the ids, the times)
and tables of encodings of what repeats (names and kinds, attribute key/value pairs, status and flags,
length prefixes). `tests/telemetry/test_otlp_wire.py` decodes the output and the SDK encoder's
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`) for the same spans and asserts
equal messages, and compares the two encoders byte for byte on random spans.

Layout (field numbers from opentelemetry/proto/trace/v1/trace.proto):

    ExportTraceServiceRequest { 1 resource_spans: ResourceSpans {
        1 resource: Resource { 1 attributes: KeyValue* }
        2 scope_spans: ScopeSpans { 1 scope: InstrumentationScope { 1 name }, 2 spans: Span* } } }

A request's spans are encoded once it has ended, each as a complete `2 spans` field of `ScopeSpans`;
repeated fields concatenate in protobuf, so a batch is the constant head, two lengths and the
requests' bytes joined (`BatchHead.request`).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

log = logging.getLogger("gateway.telemetry.otlp_wire")

# The compiled encoder where setup.py built it (None where not): `_encoder(fallback)` is it, calling
# `fallback` (`python_encode_spans`) for a request with a value it hands back.
_encoder: Callable[[Encoder], Encoder] | None = None
try:
    from gateway.telemetry._otlp import encoder as _encoder
except ImportError:  # built without a C compiler: the Python encoder
    pass

_CACHE_ENTRIES = 4096  # per cache; a full one is emptied (names and values from requests are unbounded)
_INT64 = (-(1 << 63), 1 << 63)
_MASK64 = (1 << 64) - 1

# Span kinds as a `Span` holds them (the API's SpanKind values) -> field 6 (the proto's value is +1).
INTERNAL, SERVER, CLIENT = 0, 1, 2
_KIND = tuple(bytes((0x30, k + 1)) for k in range(5))

# trace_id (1) and the tag of span_id (2) as 20 bytes, the span id, the tag of parent_span_id (4) and
# the parent's id: ids are big-endian
_IDS = struct.Struct(">20sQHQ")
_IDS_ROOT = struct.Struct(">20sQ")  # a span without a parent
_TIMES = struct.Struct("<BQBQ")  # start_time_unix_nano (7) and end_time_unix_nano (8), fixed64
_DOUBLE = struct.Struct("<Bd")  # AnyValue.double_value (4), fixed64
_STATUS_OK = b"\x7a\x00"  # status (15): present and empty (code UNSET), as the SDK writes it
_STATUS_ERROR_CODE = b"\x18\x02"  # Status.code (3) = STATUS_CODE_ERROR
# flags (16, fixed32): SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE, and CONTEXT_IS_REMOTE for a remote parent
FLAGS_LOCAL = b"\x85\x01" + (0x100).to_bytes(4, "little")
FLAGS_REMOTE = b"\x85\x01" + (0x300).to_bytes(4, "little")


def varint(n: int) -> bytes:
    """A non-negative int as a protobuf varint."""
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = tuple(bytes((n,)) for n in range(0x80))


def utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (JSON can carry one) becomes U+FFFD: protobuf strings must be
    valid UTF-8, and a collector refuses a whole batch over one."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: its tag byte, the payload's length and the payload."""
    return bytes((tag,)) + varint(len(payload)) + payload


def any_value(value: Any) -> bytes | None:
    """An `AnyValue` message's bytes, as the SDK's `_encode_value` makes it; None: not encodable."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return field(0x0A, utf8(value))
    if isinstance(value, int):
        return b"\x18" + varint(value & _MASK64) if _INT64[0] <= value < _INT64[1] else None
    if isinstance(value, float):
        return _DOUBLE.pack(0x21, value)
    if value is None:
        return b""
    if isinstance(value, bytes):
        return field(0x3A, value)
    if isinstance(value, (list, tuple)):
        items = [any_value(v) for v in value]
        if any(item is None for item in items):
            return None
        return field(0x2A, b"".join(field(0x0A, item) for item in items if item is not None))
    if isinstance(value, Mapping):
        pairs = [key_value(str(k), v) for k, v in value.items()]
        if any(pair is None for pair in pairs):
            return None
        return field(0x32, b"".join(field(0x0A, pair) for pair in pairs if pair is not None))
    return None


def key_value(key: str, value: Any) -> bytes | None:
    """A `KeyValue` message's bytes (key 1, value 2)."""
    encoded = any_value(value)
    return None if encoded is None else field(0x0A, utf8(key)) + field(0x12, encoded)


def _attribute(key: str, value: Any) -> bytes:
    """A span's `attributes` (9) field; empty (the attribute left out, logged) where the SDK would fail,
    and for None (an attribute not set)."""
    if value is None:
        return b""
    pair = key_value(key, value)
    if pair is None:
        log.warning("span attribute %s: %s values are not exported", key, type(value).__name__)
        return b""
    return field(0x4A, pair)


class _Keys(dict[str, tuple[bytes, int]]):
    """A KeyValue's key field (1) by key, and its size."""

    def __missing__(self, key: str) -> tuple[bytes, int]:
        if len(self) >= _CACHE_ENTRIES:
            self.clear()
        encoded = field(0x0A, utf8(key))
        found = self[key] = (encoded, len(encoded))
        return found


_keys = _Keys()
# A short value's bytes before it: value (2), its length, string_value (1) and its length; or int_value (3).
_STR_HEAD = tuple(bytes((0x12, n + 2, 0x0A, n)) for n in range(0x7E))
_INT_SMALL = tuple(bytes((0x12, 2, 0x18, n)) for n in range(0x80))


class _Attributes(dict[tuple[str, Any], bytes]):
    """Encoded `attributes` (9) fields by (key, value). Values that are equal across types (True, 1,
    1.0) would share an entry: the gateway gives each key one value type. Long strings are encoded
    each time, not kept; the table is emptied when full (values such as request ids never repeat, so
    a short string or a small int, the usual miss, is written here without a call)."""

    def __missing__(self, kv: tuple[str, Any]) -> bytes:
        key, value = kv
        kind = type(value)
        if kind is str and len(value) < 0x7E and value.isascii():
            k, size = _keys[key]
            size += len(value) + 4
            encoded = b"".join((b"\x4a", _SMALL[size] if size < 0x80 else varint(size), k, _STR_HEAD[len(value)],
                                value.encode()))
        elif kind is int and 0 <= value < 0x80:
            k, size = _keys[key]
            encoded = b"".join((b"\x4a", _SMALL[size + 4] if size < 0x7C else varint(size + 4), k, _INT_SMALL[value]))
        else:
            encoded = _attribute(key, value)
            if kind is str and len(value) > 256:
                return encoded
        if len(self) >= _CACHE_ENTRIES:
            self.clear()
        self[kv] = encoded
        return encoded


class _Table(dict[Any, Any]):
    """Encodings made by `make`, by what they encode; emptied when full."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> Any:
        if len(self) >= _CACHE_ENTRIES:
            self.clear()
        encoded = self[key] = self.make(key)
        return encoded


Shape = tuple[int, bytes, bytes]  # a span's constant parts: their size, name and kind (5, 6), status and flags (15, 16)


def _shape(name: str, kind: int, error: str | None, remote: bool, head: int) -> Shape:
    name_kind = field(0x2A, utf8(name)) + _KIND[kind]
    status = _STATUS_OK if error is None else field(0x7A, field(0x12, utf8(error)) + _STATUS_ERROR_CODE)
    status_flags = status + (FLAGS_REMOTE if remote else FLAGS_LOCAL)
    return head + _TIMES.size + len(name_kind) + len(status_flags), name_kind, status_flags


_attributes = _Attributes()
_prefixes = _Table(lambda n: b"\x12" + varint(n))  # a span's tag (`ScopeSpans.spans`, 2) and length
_shapes = _Table(lambda k: _shape(k[0], k[1], k[2], False, _IDS.size))  # a child span's, by (name, kind, error)
# a root span's, by (name, kind, error, remote parent), its ids' size left out (it may have a parent or not)
_root_shapes = _Table(lambda k: _shape(k[0], k[1], k[2], k[3], 0))


# A span's attributes: its keys and their values, position by position (None: not set, left out). The
# keys of a kind of span are one constant tuple and its values a tuple built as it ends: a third of the
# instructions of a dict of the same entries, which a traced request builds several of. Values: str,
# int, float, bool or a tuple of them, one type per key (`_Attributes`).
Attributes = tuple[tuple[str, ...], tuple[Any, ...]]
NO_ATTRIBUTES: Attributes = ((), ())
# A span once it has ended: (name, span_id, parent_id, kind, attributes, start_ns, end_ns, error). Ids
# are ints (parent 0: none); kind is INTERNAL, SERVER or CLIENT; error, the status description of a
# failed span (None: status UNSET).
Span = tuple[str, int, int, int, Attributes, int, int, "str | None"]
Encoder = Callable[[int, Span, Sequence[Span], bool], bytes]  # `encode_spans`


def _slow_attributes(attributes: Attributes) -> bytes:
    """The attributes of a span with a value the table cannot take (an unhashable one)."""
    return b"".join(_attributes[kv] if type(kv[1]) in (str, int, float, bool) else _attribute(*kv)
                    for kv in zip(*attributes, strict=True))


def python_encode_spans(trace_id: int, root: Span, children: Sequence[Span], remote_parent: bool = False) -> bytes:
    """`encode_spans` in Python. Written for instruction count: per span two `struct` packs (the ids
    big-endian, the times little-endian), every attribute in one C-level `map` over a table of encoded
    (key, value) pairs, one table lookup for the constant parts (name, kind, status, flags) and one for
    the length prefix."""
    pre = b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08"  # trace_id (1), the tag of span_id (2)
    ids, times, shapes, prefixes, join = _IDS.pack, _TIMES.pack, _shapes, _prefixes, b"".join
    attribute, length = _attributes.__getitem__, len
    name, span_id, parent, kind, attrs, start, end, error = root
    head = ids(pre, span_id, 0x2208, parent) if parent else _IDS_ROOT.pack(pre, span_id)
    size, name_kind, status_flags = _root_shapes[name, kind, error, remote_parent]
    try:
        encoded = join(map(attribute, zip(*attrs, strict=True)))
        out = [prefixes[size + length(head) + length(encoded)], head, name_kind, times(0x39, start, 0x41, end),
               encoded, status_flags]
        for name, span_id, parent, kind, attrs, start, end, error in children:
            encoded = join(map(attribute, zip(*attrs, strict=True))) if attrs[0] else b""
            size, name_kind, status_flags = shapes[name, kind, error]
            out += (prefixes[size + length(encoded)], ids(pre, span_id, 0x2208, parent), name_kind,
                    times(0x39, start, 0x41, end), encoded, status_flags)
    except TypeError:  # an attribute value the table cannot take (unhashable): the slow way
        return _encode_slowly(pre, root, children, remote_parent)
    return join(out)


encode_spans: Encoder = python_encode_spans
"""`encode_spans(trace_id, root, children, remote_parent)`: a request's spans, each a `ScopeSpans.spans` (2)
field, concatenated: `root` (the server span, whose parent is remote when `remote_parent`, and may be none)
and `children` (each with a parent). Fields are in field-number order.

The compiled encoder (`_otlp.c`, built by setup.py where a C compiler is) writes them where built; it hands a
request with an unusual value to `python_encode_spans` itself (one C call per request: a Python function
choosing between the two cost ~1k instructions more)."""
if _encoder is not None:
    encode_spans = _encoder(python_encode_spans)


def _encode_slowly(pre: bytes, root: Span, children: Sequence[Span], remote_parent: bool) -> bytes:
    out: list[bytes] = []
    for span in (root, *children):
        name, span_id, parent, kind, attrs, start, end, error = span
        head = _IDS.pack(pre, span_id, 0x2208, parent) if parent else _IDS_ROOT.pack(pre, span_id)
        size, name_kind, status_flags = _root_shapes[name, kind, error, remote_parent and span is root]
        encoded = _slow_attributes(attrs)
        out += (_prefixes[size + len(head) + len(encoded)], head, name_kind, _TIMES.pack(0x39, start, 0x41, end),
                encoded, status_flags)
    return b"".join(out)


class BatchHead:
    """The constant part of every export request: the resource and the instrumentation scope."""

    def __init__(self, resource_attributes: Mapping[str, Any], scope_name: str) -> None:
        pairs = (key_value(k, v) for k, v in resource_attributes.items())
        self.resource = field(0x0A, b"".join(field(0x0A, p) for p in pairs if p is not None))
        self.scope = field(0x0A, field(0x0A, scope_name.encode()))

    def request(self, chunks: Iterable[bytes], size: int) -> bytes:
        """An `ExportTraceServiceRequest` of encoded spans (`size`: their bytes together)."""
        scope_spans = len(self.scope) + size
        head = self.resource + b"\x12" + varint(scope_spans) + self.scope
        return b"".join((b"\x0a", varint(len(head) + size), head, *chunks))
