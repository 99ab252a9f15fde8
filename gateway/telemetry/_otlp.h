/* What the compiled module's files share (`_otlp.c`: the spans' encoder and the module; `_otlp_values.c`:
 * attribute values; `_otlp_stages.c`: stage spans): protobuf's small pieces, inline, and each file's
 * entry points. */

#ifndef EDGEGW_OTLP_H
#define EDGEGW_OTLP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---- protobuf's pieces --------------------------------------------------------------------------- */

#define UNSUPPORTED (-2) /* a size function's answer for a value this does not encode */

static inline size_t varint_size(uint64_t n) {
    size_t size = 1;
    while (n >= 0x80) {
        n >>= 7;
        size++;
    }
    return size;
}

static inline unsigned char *put_varint(unsigned char *out, uint64_t n) {
    while (n >= 0x80) {
        *out++ = (unsigned char)(n | 0x80);
        n >>= 7;
    }
    *out++ = (unsigned char)n;
    return out;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__GNUC__)
static inline unsigned char *put_le64(unsigned char *out, uint64_t n) {
    memcpy(out, &n, 8);
    return out + 8;
}

static inline unsigned char *put_be64(unsigned char *out, uint64_t n) {
    n = __builtin_bswap64(n);
    memcpy(out, &n, 8);
    return out + 8;
}
#else
static inline unsigned char *put_le64(unsigned char *out, uint64_t n) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (8 * i));
    return out + 8;
}

static inline unsigned char *put_be64(unsigned char *out, uint64_t n) {
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)(n >> (56 - 8 * i));
    return out + 8;
}
#endif

/* A length-delimited field's size with its tag (one byte) and length prefix. */
static inline size_t delimited(size_t payload) { return 1 + varint_size(payload) + payload; }

static inline unsigned char *put_delimited(unsigned char *out, unsigned char tag, const void *data, size_t n) {
    *out++ = tag;
    out = put_varint(out, n);
    memcpy(out, data, n);
    return out + n;
}

/* A str's UTF-8 bytes (cached in the object by CPython); NULL, no exception set: not valid UTF-8. */
static inline const char *utf8(PyObject *s, Py_ssize_t *n) {
    if (PyUnicode_IS_READY(s) && PyUnicode_IS_COMPACT_ASCII(s)) { /* its own bytes: most, without a call */
        *n = PyUnicode_GET_LENGTH(s);
        return (const char *)PyUnicode_DATA(s);
    }
    const char *data = PyUnicode_AsUTF8AndSize(s, n);
    if (data == NULL) PyErr_Clear();
    return data;
}

/* ---- AnyValue (`_otlp_values.c`) ----------------------------------------------------------------- */

/* The size of an AnyValue message's payload for `v`, or UNSUPPORTED. */
Py_ssize_t otlp_value_size(PyObject *v);

/* Writes the AnyValue payload sized by `otlp_value_size` (which accepted `v`). */
unsigned char *otlp_put_value(unsigned char *out, PyObject *v);

/* ---- the rest ------------------------------------------------------------------------------------ */

/* An int in [0, 2**64) (span ids, times); -1 with TypeError or OverflowError set otherwise. */
int otlp_as_u64(PyObject *v, uint64_t *out);

/* `stage_spans(spans, server_id, stages, marks, failed, now)` (`_otlp_stages.c`). */
PyObject *otlp_stage_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The stage spans' constants, made once as the module is imported; -1 with an exception set. */
int otlp_stages_init(void);

#endif
