/* Attribute values for the compiled span encoder (`_otlp.c`): an `AnyValue` message's size and bytes,
 * as the SDK's `_encode_value` writes them (str, bool, int in int64's range, float, bytes, and lists or
 * tuples of them); UNSUPPORTED for anything else, which the Python encoder then handles. */

#include "_otlp.h"

static Py_ssize_t array_payload(PyObject *seq) {
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), total = 0;
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size = otlp_value_size(items[i]);
        if (size < 0) return UNSUPPORTED;
        total += (Py_ssize_t)delimited((size_t)size); /* ArrayValue.values (1) */
    }
    return total;
}

Py_ssize_t otlp_value_size(PyObject *v) {
    if (PyBool_Check(v)) return 2;
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        if (utf8(v, &n) == NULL) return UNSUPPORTED;
        return (Py_ssize_t)delimited((size_t)n);
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) return UNSUPPORTED;
        return 1 + (Py_ssize_t)varint_size((uint64_t)x);
    }
    if (PyFloat_CheckExact(v)) return 9;
    if (v == Py_None) return 0;
    if (PyBytes_CheckExact(v)) return (Py_ssize_t)delimited((size_t)PyBytes_GET_SIZE(v));
    if (PyTuple_CheckExact(v) || PyList_CheckExact(v)) {
        Py_ssize_t payload = array_payload(v);
        return payload < 0 ? UNSUPPORTED : (Py_ssize_t)delimited((size_t)payload);
    }
    return UNSUPPORTED;
}

unsigned char *otlp_put_value(unsigned char *out, PyObject *v) {
    if (PyBool_Check(v)) {
        *out++ = 0x10;
        *out++ = v == Py_True;
        return out;
    }
    if (PyUnicode_CheckExact(v)) {
        Py_ssize_t n;
        const char *s = utf8(v, &n);
        return put_delimited(out, 0x0A, s, (size_t)n);
    }
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        *out++ = 0x18;
        return put_varint(out, (uint64_t)x);
    }
    if (PyFloat_CheckExact(v)) {
        double d = PyFloat_AS_DOUBLE(v);
        uint64_t bits;
        memcpy(&bits, &d, 8);
        *out++ = 0x21;
        return put_le64(out, bits);
    }
    if (v == Py_None) return out;
    if (PyBytes_CheckExact(v)) return put_delimited(out, 0x3A, PyBytes_AS_STRING(v), (size_t)PyBytes_GET_SIZE(v));
    /* a list or a tuple: ArrayValue (5) of AnyValues */
    *out++ = 0x2A;
    out = put_varint(out, (uint64_t)array_payload(v));
    Py_ssize_t n = PySequence_Fast_GET_SIZE(v);
    PyObject **items = PySequence_Fast_ITEMS(v);
    for (Py_ssize_t i = 0; i < n; i++) {
        *out++ = 0x0A;
        out = put_varint(out, (uint64_t)otlp_value_size(items[i]));
        out = otlp_put_value(out, items[i]);
    }
    return out;
}
