/* The compiled GenAI helpers. `tally` (below), `read_answer` (what an answer says about itself,
 * `gateway.telemetry.answer.python_read_answer`, ~80 bytecodes on every traced request) and `request_params`
 * (what the request asked for, `gateway.telemetry.request_params.python_request_params`).
 *
 * `tally` is the compiled form of `gateway.telemetry.metrics.python_tally`: one request's GenAI histogram observations
 * (duration, tokens, time to first token, time per output token) counted into plain lists. Every inference
 * request pays it while telemetry is on; in Python it is ~100 bytecodes and four `bisect`s (~8k
 * instructions), here a fifth of that. tests/telemetry/test_genai_batching.py compares both on random
 * observations. Values of other types (an int beyond 64 bits, a float subclass) are handed back: `tally`
 * returns False having changed nothing, and the Python version counts them. The GIL is held throughout,
 * so a flush on another thread sees an observation whole or not at all. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

enum { DURATION, INPUT, OUTPUT, TTFT, TPOT, HISTOGRAMS };

/* bisect_left over a list of bounds (floats or ints, ascending, +Inf last): the first bucket whose bound is
 * >= `value`; -1 with an exception set for a bound that is not a number. */
static Py_ssize_t bucket(PyObject *bounds, double value) {
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(bounds);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        double bound = PyFloat_AsDouble(PyList_GET_ITEM(bounds, mid));
        if (bound == -1.0 && PyErr_Occurred()) return -1;
        if (bound < value) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

typedef struct {
    Py_ssize_t index[HISTOGRAMS]; /* the bucket of each histogram observed, -1: not observed */
    double value[HISTOGRAMS];
} Observation;

/* Counts one observation into `counts[h]` (a list of ints per histogram) and `sums` (a list of floats). */
static int count(PyObject *counts, PyObject *sums, const Observation *o) {
    static PyObject *one;
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) return -1;
    for (int h = 0; h < HISTOGRAMS; h++) {
        if (o->index[h] < 0) continue;
        PyObject *buckets = PyList_GET_ITEM(counts, h);
        PyObject *n = PyNumber_Add(PyList_GET_ITEM(buckets, o->index[h]), one);
        PyObject *sum = PyFloat_FromDouble(PyFloat_AS_DOUBLE(PyList_GET_ITEM(sums, h)) + o->value[h]);
        if (n == NULL || sum == NULL) {
            Py_XDECREF(n);
            Py_XDECREF(sum);
            return -1;
        }
        PyList_SetItem(buckets, o->index[h], n); /* (steal the references) */
        PyList_SetItem(sums, h, sum);
    }
    return 0;
}

/* A token count as a double (exactly as Python adds it to a float); 0: handed back (not an int within 64
 * bits), -1: an error. */
static int tokens(PyObject *v, long long *n, double *d) {
    int overflow;
    if (!PyLong_Check(v)) return 0;
    *n = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (*n == -1 && PyErr_Occurred()) return -1;
    if (overflow) return 0;
    *d = PyLong_AsDouble(v);
    return *d == -1.0 && PyErr_Occurred() ? -1 : 1;
}

/* Fills `o` for `python_tally`'s arguments; 0: handed back, -1: an error. */
static int observation(PyObject *const *args, Observation *o) {
    PyObject *bounds = args[0], *elapsed = args[3], *input = args[4], *output = args[5], *first = args[6];
    long long in = 0, out = 0;
    double in_d = 0, out_d = 0;
    for (int h = 0; h < HISTOGRAMS; h++) o->index[h] = -1;
    if (!PyFloat_CheckExact(elapsed) || (first != Py_None && !PyFloat_CheckExact(first))) return 0;
    int known = input == Py_None ? 1 : tokens(input, &in, &in_d);
    if (known == 1 && input != Py_None) known = tokens(output, &out, &out_d);
    if (known != 1) return known;
    o->value[DURATION] = PyFloat_AS_DOUBLE(elapsed);
    o->value[INPUT] = in_d;
    o->value[OUTPUT] = out_d;
    if (first != Py_None) {
        o->value[TTFT] = PyFloat_AS_DOUBLE(first);
        double gap = o->value[DURATION] - o->value[TTFT];
        /* max(0.0, elapsed - first_s) / (output_tokens - 1): the int converted as Python converts it */
        o->value[TPOT] = (gap > 0.0 ? gap : 0.0) / (double)(out - 1);
    }
    int observed[HISTOGRAMS] = {1, input != Py_None, input != Py_None, first != Py_None,
                                first != Py_None && input != Py_None && out > 1};
    for (int h = 0; h < HISTOGRAMS; h++) {
        if (!observed[h]) continue;
        o->index[h] = bucket(PyTuple_GET_ITEM(bounds, h), o->value[h]);
        if (o->index[h] < 0) return -1;
    }
    return 1;
}

/* The lists have the shapes `GenAiSeries` gives them, so the writes below cannot fail half-way. */
static int shaped(PyObject *bounds, PyObject *counts, PyObject *sums) {
    if (!PyTuple_CheckExact(bounds) || PyTuple_GET_SIZE(bounds) != HISTOGRAMS || !PyList_CheckExact(counts) ||
        PyList_GET_SIZE(counts) != HISTOGRAMS || !PyList_CheckExact(sums) || PyList_GET_SIZE(sums) != HISTOGRAMS)
        return 0;
    for (int h = 0; h < HISTOGRAMS; h++) {
        PyObject *b = PyTuple_GET_ITEM(bounds, h), *c = PyList_GET_ITEM(counts, h);
        if (!PyList_CheckExact(b) || !PyList_CheckExact(c) || PyList_GET_SIZE(b) != PyList_GET_SIZE(c) ||
            !PyFloat_CheckExact(PyList_GET_ITEM(sums, h)))
            return 0;
    }
    return 1;
}

/* `tally(bounds, counts, sums, elapsed, input_tokens, output_tokens, first_s) -> bool` */
static PyObject *tally(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "tally(bounds, counts, sums, elapsed, input_tokens, output_tokens, first_s)");
        return NULL;
    }
    Observation o;
    if (!shaped(args[0], args[1], args[2])) Py_RETURN_FALSE;
    int known = observation(args, &o);
    if (known < 0) return NULL;
    for (int h = 0; known && h < HISTOGRAMS; h++) /* a bucket past the last (NaN bounds): Python's IndexError */
        if (o.index[h] >= PyList_GET_SIZE(PyList_GET_ITEM(args[1], h))) known = 0;
    if (!known) Py_RETURN_FALSE;
    if (count(args[1], args[2], &o) < 0) return NULL;
    Py_RETURN_TRUE;
}

/* ---- answers ------------------------------------------------------------------------------------- */

static PyObject *MODEL, *ID, *CHOICES, *FINISH_REASON, *FINISH_REASONS; /* interned names */

/* The reasons of `choices` (a list, or whatever else the answer held there) are plain: no dict or list
 * subclass, whose methods Python code could override. */
static int plain_choices(PyObject *choices) {
    if (choices == NULL || !PyList_Check(choices)) return 1;
    if (!PyList_CheckExact(choices)) return 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(choices); i++) {
        PyObject *choice = PyList_GET_ITEM(choices, i);
        if (PyDict_Check(choice) && !PyDict_CheckExact(choice)) return 0;
    }
    return 1;
}

/* `dict.get(key)` of an exact dict: a borrowed reference, NULL for none (and NULL with an exception set). */
static PyObject *get(PyObject *dict, PyObject *key) { return PyDict_GetItemWithError(dict, key); }

/* Sets `answer.NAME` to `value` when that is a str. */
static int set_str(PyObject *answer, PyObject *name, PyObject *value) {
    if (value == NULL) return PyErr_Occurred() ? -1 : 0;
    return PyUnicode_Check(value) ? PyObject_SetAttr(answer, name, value) : 0;
}

/* Writes what `data` (an exact dict, whose `choices` these are) says into `answer`; its finish reasons into
 * `reasons` (an exact list). */
static int read_plain(PyObject *answer, PyObject *data, PyObject *choices, PyObject *reasons) {
    if (set_str(answer, MODEL, get(data, MODEL)) < 0 || set_str(answer, ID, get(data, ID)) < 0) return -1;
    for (Py_ssize_t i = 0; choices != NULL && PyList_CheckExact(choices) && i < PyList_GET_SIZE(choices); i++) {
        PyObject *choice = PyList_GET_ITEM(choices, i);
        PyObject *reason = PyDict_CheckExact(choice) ? get(choice, FINISH_REASON) : NULL;
        if (reason == NULL && PyErr_Occurred()) return -1;
        if (reason != NULL && PyUnicode_Check(reason) && PyList_Append(reasons, reason) < 0) return -1;
    }
    return PyErr_Occurred() ? -1 : 0;
}

/* `read_answer(answer, data)`, made by `answer_reader(fallback)`: as `answer.python_read_answer`, which
 * (`fallback`, the function's self) reads what is not orjson's plain dicts and lists. */
static PyObject *read_answer(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read_answer(answer, data)");
        return NULL;
    }
    PyObject *answer = args[0], *data = args[1];
    if (!PyDict_Check(data)) Py_RETURN_NONE; /* not an object: nothing to read */
    PyObject *reasons = PyObject_GetAttr(answer, FINISH_REASONS);
    if (reasons == NULL) return NULL;
    PyObject *choices = NULL;
    int plain = PyDict_CheckExact(data) && PyList_CheckExact(reasons);
    if (plain) {
        choices = get(data, CHOICES);
        plain = PyErr_Occurred() ? -1 : plain_choices(choices);
    }
    int read = plain == 1 ? read_plain(answer, data, choices, reasons) : plain;
    Py_DECREF(reasons);
    if (read < 0) return NULL;
    return plain ? Py_NewRef(Py_None) : PyObject_Vectorcall(fallback, args, 2, NULL);
}

static PyMethodDef reader = {"read_answer", (PyCFunction)(void (*)(void))read_answer, METH_FASTCALL,
                             "read_answer(answer, data) -> None: as answer.python_read_answer."};

static PyObject *answer_reader(PyObject *module, PyObject *fallback) {
    (void)module;
    return PyCFunction_New(&reader, fallback);
}

/* ---- a request's generation parameters ------------------------------------------------------------ */

static PyObject *GET;            /* "get" */
static PyObject *PARAM_KEYS[5];  /* as `request_params.PARAMS` */
static const int PARAM_IS_FLOAT[5] = {0, 1, 1, 1, 0};

/* `body.get(key)`: a new reference (None for none), NULL with an exception set. */
static PyObject *lookup(PyObject *body, PyObject *key) {
    if (!PyDict_CheckExact(body)) return PyObject_CallMethodOneArg(body, GET, key);
    PyObject *value = PyDict_GetItemWithError(body, key);
    return value != NULL ? Py_NewRef(value) : PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
}

/* One parameter's value as its convention's type, or None (as `python_request_params`); steals `value`. */
static PyObject *param(PyObject *value, int is_float) {
    PyObject *out = NULL;
    if (PyFloat_CheckExact(value)) {
        double d = PyFloat_AS_DOUBLE(value);
        if (is_float) out = Py_NewRef(value);
        else if (d >= -0x1p63 && d < 0x1p63 && (double)(long long)d == d) out = PyLong_FromLongLong((long long)d);
    } else if (PyLong_CheckExact(value)) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow) out = is_float ? PyFloat_FromDouble((double)n) : Py_NewRef(value);
    }
    Py_DECREF(value);
    return out != NULL || PyErr_Occurred() ? out : Py_NewRef(Py_None);
}

/* `request_params(body)`: as `request_params.python_request_params`. */
static PyObject *request_params(PyObject *module, PyObject *body) {
    (void)module;
    PyObject *out = PyTuple_New(5);
    if (out == NULL) return NULL;
    for (int i = 0; i < 5; i++) {
        PyObject *value = lookup(body, PARAM_KEYS[i]);
        PyObject *item = value != NULL ? param(value, PARAM_IS_FLOAT[i]) : NULL;
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyMethodDef methods[] = {
    {"request_params", request_params, METH_O,
     "request_params(body) -> tuple: as request_params.python_request_params."},
    {"tally", (PyCFunction)(void (*)(void))tally, METH_FASTCALL,
     "tally(bounds, counts, sums, elapsed, input_tokens, output_tokens, first_s) -> bool: as "
     "metrics.python_tally; False (nothing counted) for values it hands back."},
    {"answer_reader", answer_reader, METH_O,
     "answer_reader(fallback) -> read_answer: the compiled answer.python_read_answer, which calls `fallback` "
     "(that function) for answers other than plain dicts and lists."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_genai",
    .m_doc = "Compiled GenAI helpers: the histogram tally (gateway.telemetry.metrics), an answer's model, id and "
              "finish reasons (gateway.telemetry.answer) and a request's parameters (gateway.telemetry.request_params).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__genai(void) {
    MODEL = PyUnicode_InternFromString("model");
    ID = PyUnicode_InternFromString("id");
    CHOICES = PyUnicode_InternFromString("choices");
    FINISH_REASON = PyUnicode_InternFromString("finish_reason");
    FINISH_REASONS = PyUnicode_InternFromString("finish_reasons");
    if (!MODEL || !ID || !CHOICES || !FINISH_REASON || !FINISH_REASONS) return NULL;
    static const char *params[5] = {"max_tokens", "temperature", "top_p", "frequency_penalty", "seed"};
    for (int i = 0; i < 5; i++)
        if ((PARAM_KEYS[i] = PyUnicode_InternFromString(params[i])) == NULL) return NULL;
    if ((GET = PyUnicode_InternFromString("get")) == NULL) return NULL;
    return PyModule_Create(&module);
}
