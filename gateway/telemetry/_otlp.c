/* The compiled form of `gateway.telemetry.otlp_wire.encode_spans` (and of `propagation.traceparent`): a
 * request's spans as OTLP protobuf bytes, the same bytes as the Python encoder writes
 * (tests/telemetry/test_otlp_wire.py compares both with the SDK's encoder). Built by setup.py when a C
 * compiler is present; without it the Python encoder runs.
 *
 * Two passes over the spans: the first sizes every span (protobuf prefixes each message with its
 * length), the second writes straight into the result. What this does not encode (a value type other
 * than str, bool, int in int64's range, float, bytes or a list or tuple of them; an attribute
 * key that is not a str; a str that is not valid UTF-8) returns None: the Python encoder then handles
 * the request, and logs what it leaves out. An attribute whose value is None is not set: left out. No
 * Python code runs in here (exact types only), so the GIL is held throughout. Attribute values are
 * sized and written by `_otlp_values.c`; the module's stage spans (`tracing.python_stage_spans`) are in
 * `_otlp_stages.c`. */

#include "_otlp.h"

/* An int in [0, 2**64), read digit by digit: PyLong_AsUnsignedLongLong goes through a byte array (3.11),
 * several times the cost for the five numbers of every span. -1 with OverflowError set otherwise. */
int otlp_as_u64(PyObject *v, uint64_t *out) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "span ids and times are ints");
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    /* 3.11's layout: the size's sign is the int's, digits of 30 bits, least significant first */
    Py_ssize_t size = Py_SIZE(v);
    const digit *d = ((PyLongObject *)v)->ob_digit;
    if (size >= 0 && size <= 3 && (size < 3 || d[2] >> (64 - 2 * PyLong_SHIFT) == 0)) {
        uint64_t n = 0;
        for (Py_ssize_t i = size - 1; i >= 0; i--) n = n << PyLong_SHIFT | d[i];
        *out = n;
        return 0;
    }
#endif
    if (_PyLong_Sign(v) < 0 || (int64_t)_PyLong_NumBits(v) > 64) {
        PyErr_SetString(PyExc_OverflowError, "span ids and times are unsigned 64-bit ints");
        return -1;
    }
    *out = PyLong_AsUnsignedLongLongMask(v);
    return 0;
}

/* ---- spans ---------------------------------------------------------------------------------------- */

typedef struct {
    PyObject *name, *keys, *values, *error; /* keys and values: its attributes (two tuples) */
    uint64_t span_id, parent, start, end;
    int kind;
    int remote; /* its parent is remote: flags CONTEXT_IS_REMOTE */
    Py_ssize_t first, count; /* its attributes in the request's `Attrs` */
} Span;

/* An attribute as the sizing pass found it, for the writing pass. */
typedef struct {
    const char *key;
    Py_ssize_t key_len;
    PyObject *value;
    size_t value_size; /* of its AnyValue payload */
} Attr;

#define STACK_ATTRS 128

typedef struct {
    Attr *items, stack[STACK_ATTRS];
    Py_ssize_t len, cap;
} Attrs;

static Attr *next_attr(Attrs *a) {
    if (a->len == a->cap) {
        Py_ssize_t cap = a->cap * 2;
        Attr *items = a->items == a->stack ? PyMem_Malloc(sizeof(Attr) * (size_t)cap)
                                           : PyMem_Realloc(a->items, sizeof(Attr) * (size_t)cap);
        if (items == NULL) return NULL;
        if (a->items == a->stack) memcpy(items, a->stack, sizeof(a->stack));
        a->items = items;
        a->cap = cap;
    }
    return &a->items[a->len++];
}

/* Unpacks `(name, span_id, parent_id, kind, attributes, start_ns, end_ns, error)`; -1 with an exception
 * set when it is not one (a bug in the caller, raised), UNSUPPORTED for values this does not encode. */
static int unpack(PyObject *t, Span *s) {
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 8) {
        PyErr_SetString(PyExc_TypeError, "a span is an 8-tuple");
        return -1;
    }
    s->name = PyTuple_GET_ITEM(t, 0);
    PyObject *attrs = PyTuple_GET_ITEM(t, 4);
    s->error = PyTuple_GET_ITEM(t, 7);
    if (!PyUnicode_CheckExact(s->name) || !PyTuple_CheckExact(attrs) || PyTuple_GET_SIZE(attrs) != 2)
        return UNSUPPORTED;
    s->keys = PyTuple_GET_ITEM(attrs, 0);
    s->values = PyTuple_GET_ITEM(attrs, 1);
    /* (lists, or keys and values of different lengths: the Python encoder's, which raises for the latter) */
    if (!PyTuple_CheckExact(s->keys) || !PyTuple_CheckExact(s->values) ||
        PyTuple_GET_SIZE(s->keys) != PyTuple_GET_SIZE(s->values))
        return UNSUPPORTED;
    if (s->error != Py_None && !PyUnicode_CheckExact(s->error)) return UNSUPPORTED;
    if (otlp_as_u64(PyTuple_GET_ITEM(t, 1), &s->span_id) < 0 || otlp_as_u64(PyTuple_GET_ITEM(t, 2), &s->parent) < 0 ||
        otlp_as_u64(PyTuple_GET_ITEM(t, 5), &s->start) < 0 || otlp_as_u64(PyTuple_GET_ITEM(t, 6), &s->end) < 0)
        return -1;
    s->kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
    if (s->kind == -1 && PyErr_Occurred()) return -1;
    if (s->kind < 0 || s->kind > 4) {
        PyErr_SetString(PyExc_ValueError, "span kind out of range");
        return -1;
    }
    return 0;
}

static Py_ssize_t status_payload(PyObject *error) {
    Py_ssize_t n;
    if (utf8(error, &n) == NULL) return UNSUPPORTED;
    return (Py_ssize_t)delimited((size_t)n) + 2; /* message (2), code (3) = ERROR */
}

/* The size of a Span message's payload, or UNSUPPORTED (-1 with an exception: out of memory); its
 * attributes are noted in `attrs` for `put_span`. */
static Py_ssize_t span_size(Span *s, Attrs *attrs) {
    Py_ssize_t n, size = 18 + 10 + (s->parent ? 10 : 0) + 2 + 18 + 6; /* ids, kind, times, flags */
    if (utf8(s->name, &n) == NULL) return UNSUPPORTED;
    size += (Py_ssize_t)delimited((size_t)n);
    if (s->error == Py_None) {
        size += 2;
    } else {
        Py_ssize_t status = status_payload(s->error);
        if (status < 0) return UNSUPPORTED;
        size += (Py_ssize_t)delimited((size_t)status);
    }
    s->first = attrs->len;
    for (Py_ssize_t i = 0, count = PyTuple_GET_SIZE(s->keys); i < count; i++) {
        PyObject *key = PyTuple_GET_ITEM(s->keys, i), *value = PyTuple_GET_ITEM(s->values, i);
        if (value == Py_None) continue; /* not set */
        const char *text;
        if (!PyUnicode_CheckExact(key) || (text = utf8(key, &n)) == NULL) return UNSUPPORTED;
        Py_ssize_t v = otlp_value_size(value);
        if (v < 0) return UNSUPPORTED;
        Attr *attr = next_attr(attrs);
        if (attr == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *attr = (Attr){text, n, value, (size_t)v};
        size += (Py_ssize_t)delimited(delimited((size_t)n) + delimited((size_t)v)); /* attributes (9) */
    }
    s->count = attrs->len - s->first;
    return size;
}

static unsigned char *put_span(unsigned char *out, const Span *s, const Attrs *attrs, size_t size,
                               const unsigned char *trace_id) {
    Py_ssize_t n;
    const char *text;
    *out++ = 0x12; /* ScopeSpans.spans (2) */
    out = put_varint(out, size);
    *out++ = 0x0A; /* trace_id (1) */
    *out++ = 16;
    memcpy(out, trace_id, 16);
    out += 16;
    *out++ = 0x12; /* span_id (2) */
    *out++ = 8;
    out = put_be64(out, s->span_id);
    if (s->parent) { /* parent_span_id (4) */
        *out++ = 0x22;
        *out++ = 8;
        out = put_be64(out, s->parent);
    }
    text = utf8(s->name, &n);
    out = put_delimited(out, 0x2A, text, (size_t)n); /* name (5) */
    *out++ = 0x30; /* kind (6): the API's value + 1 */
    *out++ = (unsigned char)(s->kind + 1);
    *out++ = 0x39; /* start_time_unix_nano (7) */
    out = put_le64(out, s->start);
    *out++ = 0x41; /* end_time_unix_nano (8) */
    out = put_le64(out, s->end);
    for (const Attr *a = attrs->items + s->first, *end = a + s->count; a < end; a++) {
        /* attributes (9): KeyValue { key (1), value (2) } */
        *out++ = 0x4A;
        out = put_varint(out, delimited((size_t)a->key_len) + delimited(a->value_size));
        out = put_delimited(out, 0x0A, a->key, (size_t)a->key_len);
        *out++ = 0x12;
        out = put_varint(out, a->value_size);
        out = otlp_put_value(out, a->value);
    }
    if (s->error == Py_None) { /* status (15): present and empty (UNSET), as the SDK writes it */
        *out++ = 0x7A;
        *out++ = 0;
    } else {
        text = utf8(s->error, &n);
        *out++ = 0x7A;
        out = put_varint(out, (uint64_t)status_payload(s->error));
        out = put_delimited(out, 0x12, text, (size_t)n);
        *out++ = 0x18;
        *out++ = 2;
    }
    *out++ = 0x85; /* flags (16), fixed32: CONTEXT_HAS_IS_REMOTE, and IS_REMOTE for a remote parent */
    *out++ = 0x01;
    *out++ = 0;
    *out++ = s->remote ? 3 : 1;
    *out++ = 0;
    *out++ = 0;
    return out;
}

/* A 128-bit trace id's two halves; -1 with TypeError or OverflowError (negative, or beyond 128 bits). */
static int trace_id_halves(PyObject *v, uint64_t *high, uint64_t *low) {
    if (!PyLong_Check(v)) {
        PyErr_SetString(PyExc_TypeError, "trace_id is an int");
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000 && defined(__SIZEOF_INT128__)
    /* as in otlp_as_u64: up to five digits of 30 bits, without the shift's new int */
    Py_ssize_t size = Py_SIZE(v);
    const digit *d = ((PyLongObject *)v)->ob_digit;
    if (size >= 0 && size <= 5 && (size < 5 || d[4] >> (128 - 4 * PyLong_SHIFT) == 0)) {
        unsigned __int128 n = 0;
        for (Py_ssize_t i = size - 1; i >= 0; i--) n = n << PyLong_SHIFT | d[i];
        *high = (uint64_t)(n >> 64);
        *low = (uint64_t)n;
        return 0;
    }
#endif
    *low = PyLong_AsUnsignedLongLongMask(v);
    PyObject *shift = PyLong_FromLong(64), *upper = shift ? PyNumber_Rshift(v, shift) : NULL;
    Py_XDECREF(shift);
    if (upper == NULL) return -1;
    int bad = otlp_as_u64(upper, high);
    Py_DECREF(upper);
    return bad;
}

static const char HEX[] = "0123456789abcdef";

static void put_hex64(Py_UCS1 *out, uint64_t n) {
    for (int i = 15; i >= 0; i--, n >>= 4) out[i] = (Py_UCS1)HEX[n & 0xF];
}

/* `traceparent(trace_id, span_id, sampled)`: the W3C header value, `00-{trace_id:032x}-{span_id:016x}-0{sampled}`
 * (formatting the two ints in Python costs ~4k instructions, a cost every traced request pays). */
static PyObject *traceparent(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "traceparent(trace_id, span_id, sampled)");
        return NULL;
    }
    uint64_t high, low, span_id;
    if (trace_id_halves(args[0], &high, &low) < 0 || otlp_as_u64(args[1], &span_id) < 0) return NULL;
    int sampled = PyObject_IsTrue(args[2]);
    if (sampled < 0) return NULL;
    PyObject *text = PyUnicode_New(55, 127);
    if (text == NULL) return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    memcpy(out, "00-", 3);
    put_hex64(out + 3, high);
    put_hex64(out + 19, low);
    out[35] = '-';
    put_hex64(out + 36, span_id);
    memcpy(out + 52, sampled ? "-01" : "-00", 3);
    return text;
}

#define STACK_SPANS 32

static PyObject *encode_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "encode_spans(trace_id, root, children, remote_parent)");
        return NULL;
    }
    unsigned char trace_id[16];
    uint64_t high, low;
    if (trace_id_halves(args[0], &high, &low) < 0) return NULL;
    put_be64(put_be64(trace_id, high), low);
    PyObject *children = PySequence_Fast(args[2], "children is a sequence of spans");
    if (children == NULL) return NULL;
    int remote = PyObject_IsTrue(args[3]);
    Py_ssize_t count = PySequence_Fast_GET_SIZE(children) + 1;
    Span stack[STACK_SPANS], *spans = count <= STACK_SPANS ? stack : PyMem_Malloc(sizeof(Span) * (size_t)count);
    Py_ssize_t stack_sizes[STACK_SPANS], *sizes = count <= STACK_SPANS ? stack_sizes
                                                                        : PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)count);
    PyObject *result = NULL;
    Attrs attrs; /* (its stack array is not zeroed: written before read) */
    attrs.len = 0;
    attrs.cap = STACK_ATTRS;
    attrs.items = attrs.stack;
    if (remote < 0 || spans == NULL || sizes == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    size_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        int ok = unpack(i == 0 ? args[1] : PySequence_Fast_GET_ITEM(children, i - 1), &spans[i]);
        spans[i].remote = i == 0 && remote;
        if (ok == -1) goto done;
        sizes[i] = ok == 0 ? span_size(&spans[i], &attrs) : UNSUPPORTED;
        if (sizes[i] == -1) goto done;
        if (sizes[i] < 0) {
            result = Py_NewRef(Py_None);
            goto done;
        }
        total += delimited((size_t)sizes[i]);
    }
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (result == NULL) goto done;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) out = put_span(out, &spans[i], &attrs, (size_t)sizes[i], trace_id);
done:
    if (spans != stack) PyMem_Free(spans);
    if (sizes != stack_sizes) PyMem_Free(sizes);
    if (attrs.items != attrs.stack) PyMem_Free(attrs.items);
    Py_DECREF(children);
    return result;
}

/* `encoder(fallback)`'s function: `encode_spans`, and for a request it hands back `fallback(...)` (the Python
 * encoder) with the same arguments, in one call from Python instead of two and a Python frame. */
static PyObject *encode_or_fall_back(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs) {
    PyObject *encoded = encode_spans(NULL, args, nargs);
    if (encoded != Py_None) return encoded; /* the bytes, or NULL: an error */
    Py_DECREF(encoded);
    return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
}

static PyMethodDef encoder_method = {
    "encode_spans", (PyCFunction)(void (*)(void))encode_or_fall_back, METH_FASTCALL,
    "encode_spans(trace_id, root, children, remote_parent) -> bytes: as otlp_wire.encode_spans."};

static PyObject *encoder(PyObject *module, PyObject *fallback) {
    (void)module;
    return PyCFunction_New(&encoder_method, fallback);
}

static PyMethodDef methods[] = {
    {"encoder", encoder, METH_O,
     "encoder(fallback) -> encode_spans: the compiled encoder, calling `fallback` (the Python encoder, with the "
     "same arguments) for a request it hands back."},
    {"encode_spans", (PyCFunction)(void (*)(void))encode_spans, METH_FASTCALL,
     "encode_spans(trace_id, root, children, remote_parent) -> bytes | None: as otlp_wire.encode_spans; None "
     "where a value needs the Python encoder."},
    {"traceparent", (PyCFunction)(void (*)(void))traceparent, METH_FASTCALL,
     "traceparent(trace_id, span_id, sampled) -> str: the W3C traceparent header value."},
    {"stage_spans", (PyCFunction)(void (*)(void))otlp_stage_spans, METH_FASTCALL,
     "stage_spans(spans, server_id, stages, marks, failed, now) -> None: appends the pipeline's stage spans, "
     "as tracing.python_stage_spans."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_otlp",
    .m_doc = "Compiled OTLP span encoder (otlp_wire), stage spans (tracing) and traceparent formatting (propagation).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__otlp(void) { return otlp_stages_init() < 0 ? NULL : PyModule_Create(&module); }
