/* The compiled form of `gateway.telemetry.tracing.python_stage_spans`: the pipeline's stage spans, made
 * from the times it marked (`RequestTrace.mark`) as the request ends. In Python that loop is ~50
 * bytecodes a stage (~3.5k instructions), on every traced request; here, the tuples alone.
 * tests/telemetry/test_otlp_wire.py compares both on random stages, marks and failures. */

#include "_otlp.h"

static PyObject *NAME;     /* "name": a stage's name attribute */
static PyObject *ERROR_KEYS; /* ("error.type",): the attribute keys of the failed stage's span */
static PyObject *NO_ATTRS;   /* ((), ()): the attributes of every other stage span */

int otlp_stages_init(void) {
    NAME = PyUnicode_InternFromString("name");
    ERROR_KEYS = Py_BuildValue("(s)", "error.type");
    NO_ATTRS = Py_BuildValue("(()())");
    return NAME == NULL || ERROR_KEYS == NULL || NO_ATTRS == NULL ? -1 : 0;
}

/* One stage span: `(name, server_id ^ k, server_id, INTERNAL, attributes, start, end, error)`; NULL with an
 * exception set. */
static PyObject *stage_span(PyObject *stage, uint64_t id, PyObject *server, PyObject *start, PyObject *end,
                            PyObject *error) {
    PyObject *name = PyObject_GetAttr(stage, NAME);
    PyObject *span_id = PyLong_FromUnsignedLongLong(id);
    PyObject *kind = PyLong_FromLong(0); /* INTERNAL */
    PyObject *attrs = error == Py_None ? Py_NewRef(NO_ATTRS) : Py_BuildValue("(O(O))", ERROR_KEYS, error);
    PyObject *span = PyTuple_New(8);
    if (name == NULL || span_id == NULL || kind == NULL || attrs == NULL || span == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(span_id);
        Py_XDECREF(kind);
        Py_XDECREF(attrs);
        Py_XDECREF(span);
        return NULL;
    }
    PyObject *items[8] = {name, span_id, Py_NewRef(server), kind, attrs, Py_NewRef(start), Py_NewRef(end),
                          Py_NewRef(error)};
    for (int i = 0; i < 8; i++) PyTuple_SET_ITEM(span, i, items[i]); /* (steals each reference) */
    return span;
}

/* `stage_spans(spans, server_id, stages, marks, failed, now)`: appends to the list `spans` a span per stage
 * of `stages` (objects with a `name`): stage k (from 1) ran from marks[k - 1] to marks[k], and failed with
 * `failed` when k is the last mark; one without an end mark ran until `now`. */
PyObject *otlp_stage_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "stage_spans(spans, server_id, stages, marks, failed, now)");
        return NULL;
    }
    PyObject *spans = args[0], *server = args[1], *failed = args[4], *now = args[5];
    uint64_t server_id;
    if (!PyList_Check(spans) || otlp_as_u64(server, &server_id) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "spans is a list");
        return NULL;
    }
    /* copies: a stage's `name` could be a property, whose code could change the lists */
    PyObject *stages = PySequence_Tuple(args[2]), *marks = stages ? PySequence_Tuple(args[3]) : NULL;
    PyObject *result = NULL;
    if (marks == NULL) goto done;
    Py_ssize_t last = PyTuple_GET_SIZE(marks) - 1;
    if (last < 0) {
        PyErr_SetString(PyExc_ValueError, "no marks: the stages never began");
        goto done;
    }
    PyObject *start = PyTuple_GET_ITEM(marks, 0);
    for (Py_ssize_t k = 1; k <= PyTuple_GET_SIZE(stages); k++) {
        PyObject *end = k <= last ? PyTuple_GET_ITEM(marks, k) : now;
        PyObject *error = k == last ? failed : Py_None;
        PyObject *span = stage_span(PyTuple_GET_ITEM(stages, k - 1), server_id ^ (uint64_t)k, server, start, end,
                                    error);
        if (span == NULL) goto done;
        int appended = PyList_Append(spans, span);
        Py_DECREF(span);
        if (appended < 0) goto done;
        start = end;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(stages);
    Py_XDECREF(marks);
    return result;
}
