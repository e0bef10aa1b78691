/* wasmtime's component value (wasmtime_component_val_t) as the C extensions of the runtime read and
 * write it: _values.c (native_values.py) and wasi_http/_native.c (wasi_http/native.py). Each exports
 * val_layout as its `layout()`, which native_val.py checks against wasmtime-py's ctypes structs (with
 * these kinds) when it loads, and takes wasmtime's functions as addresses with take_functions.
 * Included after Python.h. */
#ifndef TRELLIS_WASMTIME_VAL_H
#define TRELLIS_WASMTIME_VAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct { size_t size; uint8_t *data; } vec_t;
typedef struct val {
    uint8_t kind;
    uint8_t pad[7];
    union {
        uint64_t u64; int64_t s64; uint8_t u8; uint8_t b; uint32_t u32; float f32; double f64;
        vec_t vec;                                       /* string, enum, list, tuple, record */
        struct { uint8_t is_ok; uint8_t pad[7]; struct val *val; } result;
        struct { vec_t name; struct val *val; } variant;
        struct val *option;
        void *resource;
        uint8_t raw[24];
    } of;
} val_t;
typedef struct { vec_t name; val_t val; } entry_t;  /* a record's field */

/* WASMTIME_COMPONENT_* */
enum { K_BOOL = 0, K_S8, K_U8, K_S16, K_U16, K_S32, K_U32, K_S64, K_U64, K_F32, K_F64, K_CHAR, K_STRING,
       K_LIST, K_RECORD, K_TUPLE, K_VARIANT, K_ENUM, K_OPTION, K_RESULT, K_FLAGS, K_RESOURCE };

/* layout(): the offsets this was compiled with */
static PyObject *val_layout(PyObject *self, PyObject *unused) {
    (void)self; (void)unused;
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n,s:n,s:n}", "stride", (Py_ssize_t)sizeof(val_t),
                         "value", (Py_ssize_t)offsetof(val_t, of),
                         "result_val", (Py_ssize_t)(offsetof(val_t, of.result.val) - offsetof(val_t, of)),
                         "variant_val", (Py_ssize_t)(offsetof(val_t, of.variant.val) - offsetof(val_t, of)),
                         "vec_data", (Py_ssize_t)offsetof(vec_t, data),
                         "entry", (Py_ssize_t)sizeof(entry_t), "entry_val", (Py_ssize_t)offsetof(entry_t, val));
}

/* each of `names` (NULL-terminated) looked up in `fns` (name -> address) into its slot: 0, or -1 with
 * an exception set */
static int take_functions(PyObject *fns, const char *const *names, void **const *slots) {
    for (int i = 0; names[i]; i++) {
        PyObject *addr = PyDict_GetItemString(fns, names[i]);
        if (addr == NULL) { PyErr_Format(PyExc_KeyError, "wasmtime function %s", names[i]); return -1; }
        *slots[i] = PyLong_AsVoidPtr(addr);
        if (*slots[i] == NULL) { PyErr_Format(PyExc_ValueError, "wasmtime function %s", names[i]); return -1; }
    }
    return 0;
}

#endif
