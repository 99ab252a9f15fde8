/* What the compiled module's files share (`_otlp.c`: the encoder and the module; `_otlp_stages.c`: stage
 * spans). */

#ifndef EDGEGW_OTLP_H
#define EDGEGW_OTLP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* An int in [0, 2**64) (span ids, times); -1 with TypeError or OverflowError set otherwise. */
int otlp_as_u64(PyObject *v, uint64_t *out);

/* `stage_spans(spans, server_id, stages, marks, failed, now)` (`_otlp_stages.c`). */
PyObject *otlp_stage_spans(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The stage spans' constants, made once as the module is imported; -1 with an exception set. */
int otlp_stages_init(void);

#endif
