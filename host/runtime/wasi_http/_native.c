/* The host's hot wasi:io / wasi:http functions as native callbacks of wasmtime's C API.
 *
 * Built and loaded by native.py (compiled on first use into a cache keyed by this file's hash).
 * Each import is registered with wasmtime_component_linker_instance_add_func with
 * `callback` below and a `Func` describing its WIT types: the arguments are read from
 * wasmtime's value slots into plain Python values (a resource: its handle turned into the
 * object of the instance's table, as fastcall.py does), the host's implementation runs
 * (the Python function of types.py / io.py, unchanged), and its plain result is written
 * into the result slot. No ctypes callback, no per-call Python wrapper: what is left in
 * Python is the implementation itself.
 *
 * A value this file does not write (a record payload, an `error-code` case with one)
 * goes to the Python writer (`lower_slow`) before anything was written; an argument it
 * does not read (`error-code` in `response-outparam.set`) sends the whole call to
 * fastcall.py's path (`slow_call`) before anything was read. The resources' drops are
 * `dtor` (out of the table).
 *
 * wasmtime's functions come as addresses from the libwasmtime wasmtime-py loaded (init),
 * so nothing links against it; the value layout it assumes is checked in native.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../_wasmtime_val.h"  /* wasmtime's value layout (checked against wasmtime-py's ctypes structs in native.py) */

/* --- the type tree --- */

enum { N_BOOL, N_S8, N_U8, N_S16, N_U16, N_S32, N_U32, N_S64, N_U64, N_STRING, N_BYTES, N_LIST, N_TUPLE,
       N_OPTION, N_RESULT, N_VARIANT, N_OWN, N_BORROW, N_SLOW };

typedef struct node {
    int kind;
    uint32_t type_id;         /* own / borrow */
    PyObject *ref;            /* own: the ResourceRef the table keeps beside the object */
    PyObject *name;           /* own / borrow: the resource's name, for errors */
    Py_ssize_t n;             /* children (tuple, variant cases; result: 2; option, list: 1) */
    struct node **kids;       /* a child may be NULL: no payload */
    PyObject **case_names;    /* variant: the case names (str) */
    int slow_inside;          /* some value of this type needs the Python writer/reader */
} node_t;

typedef struct {
    PyObject *impl;           /* impl(list of plain args) -> plain result */
    PyObject *slow_call;      /* (context, ty, args, nargs, results) -> error address: fastcall's whole call */
    PyObject *lower_slow;     /* (context, ty, out, results) -> None: the Python writer for the result */
    PyObject *failed;         /* (ctx, exception) -> str: records the failure, the trap's message */
    PyObject *where;          /* "interface.function" */
    int fast;                 /* its C implementation in _native_state.c (FAST), or -1 */
    Py_ssize_t nparams;
    node_t **params;
    node_t *result;           /* NULL: no result */
} func_t;

/* --- wasmtime's functions (addresses from init) --- */

typedef void *(*to_host_f)(void *ctx, void *any, void **host);
typedef uint32_t (*host_u32_f)(void *host);
typedef void (*ptr_f)(void *);
typedef void *(*host_new_f)(int owned, uint32_t rep, uint32_t ty);
typedef void *(*host_to_any_f)(void *ctx, void *host, void **any);
typedef void (*vec_new_f)(vec_t *out, size_t n, const void *data);
typedef void (*vec_uninit_f)(vec_t *out, size_t n);
typedef val_t *(*val_new_f)(val_t *v);
typedef void *(*error_new_f)(const char *msg);

static struct {
    to_host_f to_host;
    host_u32_f host_rep, host_type;
    ptr_f host_delete, any_delete, vec_delete, list_delete, tuple_delete, val_delete;
    host_new_f host_new;
    host_to_any_f host_to_any;
    vec_new_f vec_new;
    vec_uninit_f list_uninit, tuple_uninit;
    val_new_f val_new;
    error_new_f error_new;
} W;

static PyObject *current_call;     /* the ContextVar CURRENT_CALL */
static PyObject *host_resource;    /* the HostResource class */
static PyObject *codec_error;      /* exception class for bad handles */
static PyObject *s_table, *s_entries, *s_reps, *s_obj, *s_ok, *s_err;
static int ready;

/* --- errors --- */

static void *wasm_error(const char *msg) { return W.error_new(msg); }

/* the pending Python exception: recorded on the call (failed), a wasmtime error with its message */
static void *fail(func_t *f, PyObject *ctx) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) PyException_SetTraceback(value, tb);
    PyObject *msg = PyObject_CallFunctionObjArgs(f->failed, ctx ? ctx : Py_None, value ? value : Py_None, NULL);
    void *err;
    const char *text = msg != NULL ? PyUnicode_AsUTF8(msg) : NULL;
    if (text == NULL) {
        PyErr_Clear();
        err = wasm_error("host function failed");
    } else {
        err = wasm_error(text);
    }
    Py_XDECREF(msg);
    Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(tb);
    return err;
}

static int set_error(PyObject *where, const char *what) {
    PyErr_Format(codec_error, "%U: %s", where, what);
    return -1;
}

#include "_native_values.c"
#include "_native_state.c"

/* --- the callback --- */

static PyObject *lookup_ctx(void) {
    PyObject *ctx = NULL;
    if (PyContextVar_Get(current_call, Py_None, &ctx) < 0) return NULL;
    return ctx;
}

static void *call(func_t *f, void *context, const void *ty, val_t *args, size_t nargs, val_t *results,
                  size_t nresults) {
    PyObject *ctx = lookup_ctx();
    if (ctx == NULL) { PyErr_Clear(); return wasm_error("host function failed: no call context"); }
    if (ctx == Py_None) {
        Py_DECREF(ctx);
        PyObject *m = PyUnicode_FromFormat("import %U called outside an invocation", f->where);
        void *err = wasm_error(m != NULL ? PyUnicode_AsUTF8(m) : "import called outside an invocation");
        Py_XDECREF(m);
        PyErr_Clear();
        return err;
    }
    if ((Py_ssize_t)nargs != f->nparams || (f->result != NULL) != (nresults == 1)) {
        Py_DECREF(ctx);
        return wasm_error("host function called with the wrong number of values");
    }
    for (size_t i = 0; i < nargs; i++) {
        if (!peek(f->params[i], &args[i])) {  /* fastcall.py's path for the whole call */
            Py_DECREF(ctx);
            PyObject *r = PyObject_CallFunction(f->slow_call, "KKKnK", (unsigned long long)(uintptr_t)context,
                                                (unsigned long long)(uintptr_t)ty,
                                                (unsigned long long)(uintptr_t)args, (Py_ssize_t)nargs,
                                                (unsigned long long)(uintptr_t)results);
            if (r == NULL) { PyErr_Clear(); return wasm_error("host function failed"); }
            void *err = (void *)(uintptr_t)PyLong_AsUnsignedLongLong(r);
            Py_DECREF(r);
            PyErr_Clear();
            return err;
        }
    }
    void *err = NULL;
    PyObject *table = PyObject_GetAttr(ctx, s_table);
    PyObject *entries = table != NULL ? PyObject_GetAttr(table, s_entries) : NULL;
    PyObject *plain = NULL, *out = NULL;
    if (entries == NULL || !PyDict_Check(entries)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "the call's resource table");
        err = fail(f, ctx);
        goto done;
    }
    plain = PyList_New((Py_ssize_t)nargs);
    if (plain == NULL) { err = fail(f, ctx); goto done; }
    for (size_t i = 0; i < nargs; i++) {
        PyObject *a = read_val(f->params[i], &args[i], context, entries, f->where, 1);
        if (a == NULL) { err = fail(f, ctx); goto done; }
        PyList_SET_ITEM(plain, (Py_ssize_t)i, a);
    }
    out = run_impl(f->fast, f->impl, plain);
    if (out == NULL) { err = fail(f, ctx); goto done; }
    if (f->result == NULL) goto done;
    if (!can_write(f->result, out)) {  /* the Python writer, nothing written yet */
        PyObject *r = PyObject_CallFunction(f->lower_slow, "KKOK", (unsigned long long)(uintptr_t)context,
                                            (unsigned long long)(uintptr_t)ty, out,
                                            (unsigned long long)(uintptr_t)results);
        if (r == NULL) err = fail(f, ctx);
        Py_XDECREF(r);
        goto done;
    }
    {
        env_t env = {context, table, entries, f->where};
        val_t tmp;
        memset(&tmp, 0, sizeof tmp);
        if (write_val(f->result, out, &tmp, &env) < 0) {
            W.val_delete(&tmp);
            err = fail(f, ctx);
        } else {
            memcpy(results, &tmp, sizeof tmp);
        }
    }
done:
    Py_XDECREF(out);
    Py_XDECREF(plain);
    Py_XDECREF(entries);
    Py_XDECREF(table);
    Py_DECREF(ctx);
    return err;
}

static void *callback(void *env, void *context, const void *ty, val_t *args, size_t nargs, val_t *results,
                      size_t nresults) {
    PyGILState_STATE g = PyGILState_Ensure();
    void *err = call((func_t *)env, context, ty, args, nargs, results, nresults);
    PyGILState_Release(g);
    return err;
}

/* a host resource of a shadowed interface dropped by the guest: out of the call's table */
static void *dtor(void *env, void *context, uint32_t rep) {
    (void)env; (void)context;
    if (!Py_IsInitialized()) return NULL;
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *ctx = lookup_ctx();
    if (ctx != NULL && ctx != Py_None) {
        PyObject *table = PyObject_GetAttr(ctx, s_table);
        PyObject *entries = table != NULL ? PyObject_GetAttr(table, s_entries) : NULL;
        PyObject *key = PyLong_FromUnsignedLong(rep);
        if (entries != NULL && key != NULL && PyDict_Check(entries) && PyDict_DelItem(entries, key) < 0)
            PyErr_Clear();  /* not there: nothing to drop */
        Py_XDECREF(key); Py_XDECREF(entries); Py_XDECREF(table);
    }
    Py_XDECREF(ctx);
    PyErr_Clear();
    PyGILState_Release(g);
    return NULL;
}

static void free_func(func_t *f) {
    if (f == NULL) return;
    for (Py_ssize_t i = 0; i < f->nparams; i++) free_node(f->params[i]);
    PyMem_Free(f->params);
    free_node(f->result);
    Py_XDECREF(f->impl); Py_XDECREF(f->slow_call); Py_XDECREF(f->lower_slow); Py_XDECREF(f->failed);
    Py_XDECREF(f->where);
    PyMem_Free(f);
}

static void finalize(void *env) {
    if (!Py_IsInitialized()) return;  /* a linker dropped at exit: the process's memory goes anyway */
    PyGILState_STATE g = PyGILState_Ensure();
    free_func((func_t *)env);
    PyGILState_Release(g);
}

static PyObject *py_make_func(PyObject *self, PyObject *args) {
    PyObject *where, *params, *result, *impl, *slow_call, *lower_slow, *failed;
    int fast = -1;
    if (!PyArg_ParseTuple(args, "UOOOOOO|i", &where, &params, &result, &impl, &slow_call, &lower_slow, &failed,
                          &fast))
        return NULL;
    int nfast = 0;
    while (FAST[nfast].fn) nfast++;
    if (fast >= nfast) return PyErr_Format(PyExc_ValueError, "no C implementation %d", fast);
    PyObject *ps = PySequence_Tuple(params);
    if (ps == NULL) return NULL;
    func_t *f = PyMem_Calloc(1, sizeof(func_t));
    if (f == NULL) { Py_DECREF(ps); return PyErr_NoMemory(); }
    f->where = where; Py_INCREF(where);
    f->fast = fast;
    f->impl = impl; Py_INCREF(impl);
    f->slow_call = slow_call; Py_INCREF(slow_call);
    f->lower_slow = lower_slow; Py_INCREF(lower_slow);
    f->failed = failed; Py_INCREF(failed);
    f->nparams = PyTuple_GET_SIZE(ps);
    f->params = PyMem_Calloc((size_t)f->nparams + 1, sizeof(node_t *));
    for (Py_ssize_t i = 0; i < f->nparams; i++) {
        if (build_node(PyTuple_GET_ITEM(ps, i), &f->params[i]) < 0 || f->params[i] == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a parameter needs a type");
            Py_DECREF(ps); free_func(f); return NULL;
        }
    }
    Py_DECREF(ps);
    if (build_node(result, &f->result) < 0) { free_func(f); return NULL; }
    return PyLong_FromVoidPtr(f);
}

/* own_into(context, slot, rep, type_id): an own<R> handle of the host's (rep, type) in value slot
   `slot` (an export's argument: serve.py's request and outparam, without wasmtime-py's objects) */
static PyObject *py_own_into(PyObject *self, PyObject *args) {
    unsigned long long context, slot;
    unsigned int rep, type_id;
    if (!PyArg_ParseTuple(args, "KKII", &context, &slot, &rep, &type_id)) return NULL;
    void *host = W.host_new(1, rep, type_id);
    void *any = NULL;
    void *err = W.host_to_any((void *)(uintptr_t)context, host, &any);
    W.host_delete(host);
    if (err != NULL) return PyErr_Format(PyExc_RuntimeError, "cannot hand out a handle (rep %u)", rep);
    val_t *v = (val_t *)(uintptr_t)slot;
    memset(v, 0, sizeof *v);
    v->of.resource = any;
    v->kind = K_RESOURCE;
    Py_RETURN_NONE;
}

static PyObject *py_free_func(PyObject *self, PyObject *arg) {
    free_func((func_t *)PyLong_AsVoidPtr(arg));
    Py_RETURN_NONE;
}

static PyObject *py_init(PyObject *self, PyObject *args) {
    PyObject *fns;
    if (!PyArg_ParseTuple(args, "OOOO", &fns, &current_call, &host_resource, &codec_error)) return NULL;
    Py_INCREF(current_call); Py_INCREF(host_resource); Py_INCREF(codec_error);
    static const char *const names[] = {"to_host", "host_rep", "host_type", "host_delete", "any_delete",
                                        "vec_delete", "list_delete", "tuple_delete", "val_delete", "host_new",
                                        "host_to_any", "vec_new", "list_uninit", "tuple_uninit", "val_new",
                                        "error_new", NULL};
    void **const slots[] = {(void **)&W.to_host, (void **)&W.host_rep, (void **)&W.host_type,
                            (void **)&W.host_delete, (void **)&W.any_delete, (void **)&W.vec_delete,
                            (void **)&W.list_delete, (void **)&W.tuple_delete, (void **)&W.val_delete,
                            (void **)&W.host_new, (void **)&W.host_to_any, (void **)&W.vec_new,
                            (void **)&W.list_uninit, (void **)&W.tuple_uninit, (void **)&W.val_new,
                            (void **)&W.error_new};
    if (take_functions(fns, names, slots) < 0) return NULL;
    s_table = PyUnicode_InternFromString("table");
    s_entries = PyUnicode_InternFromString("_entries");
    s_reps = PyUnicode_InternFromString("_reps");
    s_obj = PyUnicode_InternFromString("obj");
    s_ok = PyUnicode_InternFromString("ok");
    s_err = PyUnicode_InternFromString("err");
    ready = 1;
    Py_RETURN_NONE;
}

static void no_finalize(void *env) { (void)env; }

static PyObject *py_addresses(PyObject *self, PyObject *unused) {
    return Py_BuildValue("(NNNN)", PyLong_FromVoidPtr((void *)callback), PyLong_FromVoidPtr((void *)dtor),
                         PyLong_FromVoidPtr((void *)finalize), PyLong_FromVoidPtr((void *)no_finalize));
}

static PyMethodDef methods[] = {
    {"init", py_init, METH_VARARGS, "init(functions, current_call, HostResource, CodecError)"},
    {"layout", val_layout, METH_NOARGS, "the value layout this module was compiled for"},
    {"addresses", py_addresses, METH_NOARGS, "(callback, dtor, finalizer, no-op finalizer) addresses"},
    {"make_func", py_make_func, METH_VARARGS, "a function's native description (address); its last "
     "argument, optional, the index in fast_names() of its C implementation"},
    {"fast_names", py_fast_names, METH_NOARGS, "the (interface, function) implemented in C, by index"},
    {"init_state", py_init_state, METH_VARARGS, "the classes and constants of the request's state"},
    {"free_func", py_free_func, METH_O, "free a description wasmtime did not take"},
    {"own_into", py_own_into, METH_VARARGS, "own_into(context, slot, rep, type_id): an own handle in a value slot"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trellis_wasi_native", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__trellis_wasi_native(void) { return PyModule_Create(&module); }
