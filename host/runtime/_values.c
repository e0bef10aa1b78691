/* Plain values written into and read out of wasmtime's component value slots, in C.
 *
 * Built and loaded by native_values.py (compiled on first use into a cache keyed by this file's
 * hash). A `Type` is a tree built once per WIT type from a spec (native_values.spec_of). It is
 *
 *   - a reader, called as lift_in_place's readers are: `t(buf, off)` reads the value whose slot
 *     starts at `off` in `buf` (the slot's bytes; the data they point to is wasmtime's) into its
 *     plain form (a record as a dict in field order, a tuple as a list, list<u8> as bytes, a
 *     variant or result as {case: payload}, an option as None / its payload, an enum as its name);
 *   - a writer: `lower(t, value)` writes a plain value into a slot of its own (a `Lowered`, moved
 *     into a call's argument slot by `move_into(address)`), or answers None, having written nothing
 *     that is left, when the value is not one it takes as it is (then the codec and lower_in_place
 *     convert it, and say what is wrong with it). It takes: bool, the integers in range, f32/f64
 *     from float, char, string (exact str), list<u8> from bytes, lists (list), tuples (list or
 *     tuple of the right length), records (a dict with exactly the fields); not variants, options,
 *     results, enums, flags or resources.
 *
 * A container is allocated with wasmtime's *_new_uninit and every element set to a slot of its
 * kind with a zero payload (a valid empty value) before any is filled, so a value given up half
 * way is freed with one wasmtime_component_val_delete. wasmtime's functions come as addresses from
 * the libwasmtime wasmtime-py loaded (init); the layout assumed is checked in native_values.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_wasmtime_val.h"

enum { N_BOOL, N_S8, N_U8, N_S16, N_U16, N_S32, N_U32, N_S64, N_U64, N_F32, N_F64, N_CHAR, N_STRING, N_BYTES,
       N_LIST, N_TUPLE, N_RECORD, N_OPTION, N_RESULT, N_VARIANT, N_ENUM };

typedef struct node {
    int kind;                 /* N_* */
    uint8_t vkind;            /* the slot's K_* */
    int lowerable;            /* lower() writes it (and all below it) */
    int nested;               /* an option whose payload is an option: {"some": ...} */
    Py_ssize_t n;             /* children / fields / cases */
    struct node **kids;       /* a child may be NULL (a case or result side without payload) */
    PyObject **names;         /* record fields, variant cases (str) */
    PyObject **encoded;       /* record fields, variant cases (bytes, UTF-8) */
} node_t;

typedef void (*vec_new_f)(vec_t *out, size_t n, const void *data);
typedef void (*vec_uninit_f)(vec_t *out, size_t n);
typedef void (*ptr_f)(void *);
static struct { vec_new_f vec_new; vec_uninit_f list_uninit, tuple_uninit, record_uninit; ptr_f val_delete; } W;
static int ready;
static PyObject *s_some, *s_ok, *s_err;

static const uint8_t VKIND[] = {K_BOOL, K_S8, K_U8, K_S16, K_U16, K_S32, K_U32, K_S64, K_U64, K_F32, K_F64,
                                K_CHAR, K_STRING, K_LIST, K_LIST, K_TUPLE, K_RECORD, K_OPTION, K_RESULT,
                                K_VARIANT, K_ENUM};
static const char *NAMES[] = {"bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "f32", "f64", "char",
                              "string", "bytes", "list", "tuple", "record", "option", "result", "variant", "enum",
                              NULL};

/* --- the type tree --- */

static void free_node(node_t *n) {
    if (n == NULL) return;
    for (Py_ssize_t i = 0; i < n->n; i++) {
        if (n->kids) free_node(n->kids[i]);
        if (n->names) Py_XDECREF(n->names[i]);
        if (n->encoded) Py_XDECREF(n->encoded[i]);
    }
    PyMem_Free(n->kids); PyMem_Free(n->names); PyMem_Free(n->encoded);
    PyMem_Free(n);
}

static node_t *build(PyObject *spec);

/* children from a sequence of specs (None: no payload) */
static int build_kids(node_t *n, PyObject *seq, int named) {
    PyObject *items = PySequence_Tuple(seq);
    if (items == NULL) return -1;
    n->n = PyTuple_GET_SIZE(items);
    n->kids = PyMem_Calloc((size_t)n->n + 1, sizeof(node_t *));
    if (named) {
        n->names = PyMem_Calloc((size_t)n->n + 1, sizeof(PyObject *));
        n->encoded = PyMem_Calloc((size_t)n->n + 1, sizeof(PyObject *));
    }
    if (n->kids == NULL || (named && (n->names == NULL || n->encoded == NULL))) {
        Py_DECREF(items); PyErr_NoMemory(); return -1;
    }
    n->lowerable = 1;
    for (Py_ssize_t i = 0; i < n->n; i++) {
        PyObject *item = PyTuple_GET_ITEM(items, i), *sub = item;
        if (named) {
            PyObject *name;
            if (!PyArg_ParseTuple(item, "UO", &name, &sub)) { Py_DECREF(items); return -1; }
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            n->names[i] = name;
            n->encoded[i] = PyUnicode_AsUTF8String(name);
            if (n->encoded[i] == NULL) { Py_DECREF(items); return -1; }
        }
        if (sub != Py_None) {
            n->kids[i] = build(sub);
            if (n->kids[i] == NULL) { Py_DECREF(items); return -1; }
            n->lowerable &= n->kids[i]->lowerable;
        }
    }
    Py_DECREF(items);
    return 0;
}

static node_t *build(PyObject *spec) {
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(spec, 0))) {
        PyErr_SetString(PyExc_TypeError, "a type spec is a tuple (kind, ...)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 0));
    if (name == NULL) return NULL;
    int kind = -1;
    for (int i = 0; NAMES[i]; i++) if (strcmp(NAMES[i], name) == 0) kind = i;
    if (kind < 0) { PyErr_Format(PyExc_ValueError, "unknown type kind %s", name); return NULL; }
    node_t *n = PyMem_Calloc(1, sizeof(node_t));
    if (n == NULL) { PyErr_NoMemory(); return NULL; }
    n->kind = kind;
    n->vkind = VKIND[kind];
    n->lowerable = 1;
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    int ok = 0;
    switch (kind) {
    case N_LIST: case N_OPTION:
        if (size != 2 && !(kind == N_OPTION && size == 3)) goto bad;
        n->n = 1;
        n->kids = PyMem_Calloc(1, sizeof(node_t *));
        if (n->kids == NULL) { PyErr_NoMemory(); goto fail; }
        n->kids[0] = build(PyTuple_GET_ITEM(spec, 1));
        if (n->kids[0] == NULL) goto fail;
        n->lowerable = kind == N_LIST && n->kids[0]->lowerable;
        if (kind == N_OPTION) n->nested = size == 3 && PyObject_IsTrue(PyTuple_GET_ITEM(spec, 2));
        break;
    case N_TUPLE: if (size != 2 || build_kids(n, PyTuple_GET_ITEM(spec, 1), 0) < 0) goto fail; break;
    case N_RECORD: if (size != 2 || build_kids(n, PyTuple_GET_ITEM(spec, 1), 1) < 0) goto fail; break;
    case N_VARIANT: if (size != 2 || build_kids(n, PyTuple_GET_ITEM(spec, 1), 1) < 0) goto fail;
        n->lowerable = 0; break;
    case N_RESULT: {
        if (size != 3) goto bad;
        PyObject *pair = PyTuple_Pack(2, PyTuple_GET_ITEM(spec, 1), PyTuple_GET_ITEM(spec, 2));
        if (pair == NULL) goto fail;
        ok = build_kids(n, pair, 0);
        Py_DECREF(pair);
        if (ok < 0) goto fail;
        n->lowerable = 0;
        break;
    }
    case N_ENUM: n->lowerable = 0; if (size != 1) goto bad; break;
    default: if (size != 1) goto bad; break;
    }
    return n;
bad:
    PyErr_Format(PyExc_ValueError, "bad spec for %s", name);
fail:
    free_node(n);
    return NULL;
}

/* --- reading: a slot into its plain form --- */

static PyObject *read_val(node_t *n, const val_t *v);

static PyObject *payload(node_t *k, const val_t *p) {
    if (k == NULL || p == NULL) Py_RETURN_NONE;
    return read_val(k, p);
}

static PyObject *one(PyObject *key, PyObject *value) {
    if (value == NULL) return NULL;
    PyObject *d = PyDict_New();
    if (d != NULL && PyDict_SetItem(d, key, value) < 0) Py_CLEAR(d);
    Py_DECREF(value);
    return d;
}

static PyObject *read_val(node_t *n, const val_t *v) {
    switch (n->kind) {
    case N_BOOL: return PyBool_FromLong(v->of.b != 0);
    case N_S8: return PyLong_FromLong(*(const int8_t *)v->of.raw);
    case N_U8: return PyLong_FromUnsignedLong(v->of.u8);
    case N_S16: return PyLong_FromLong(*(const int16_t *)v->of.raw);
    case N_U16: return PyLong_FromUnsignedLong(*(const uint16_t *)v->of.raw);
    case N_S32: return PyLong_FromLong(*(const int32_t *)v->of.raw);
    case N_U32: return PyLong_FromUnsignedLong(v->of.u32);
    case N_S64: return PyLong_FromLongLong(v->of.s64);
    case N_U64: return PyLong_FromUnsignedLongLong(v->of.u64);
    case N_F32: return PyFloat_FromDouble((double)v->of.f32);
    case N_F64: return PyFloat_FromDouble(v->of.f64);
    case N_CHAR: return PyUnicode_FromOrdinal((int)v->of.u32);
    case N_STRING: case N_ENUM:
        return PyUnicode_DecodeUTF8((const char *)v->of.vec.data, (Py_ssize_t)v->of.vec.size, "strict");
    case N_BYTES: {
        size_t size = v->of.vec.size;
        const val_t *el = (const val_t *)v->of.vec.data;
        PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (out == NULL) return NULL;
        char *dst = PyBytes_AS_STRING(out);
        for (size_t i = 0; i < size; i++) dst[i] = (char)el[i].of.u8;
        return out;
    }
    case N_LIST: case N_TUPLE: {
        size_t size = v->of.vec.size;
        const val_t *el = (const val_t *)v->of.vec.data;
        PyObject *out = PyList_New((Py_ssize_t)size);
        for (size_t i = 0; out != NULL && i < size; i++) {
            PyObject *item = read_val(n->kind == N_LIST ? n->kids[0] : n->kids[i], &el[i]);
            if (item == NULL) { Py_CLEAR(out); break; }
            PyList_SET_ITEM(out, (Py_ssize_t)i, item);
        }
        return out;
    }
    case N_RECORD: {
        const entry_t *e = (const entry_t *)v->of.vec.data;
        PyObject *out = _PyDict_NewPresized(n->n);
        for (Py_ssize_t i = 0; out != NULL && i < n->n; i++) {
            PyObject *item = read_val(n->kids[i], &e[i].val);
            if (item == NULL || PyDict_SetItem(out, n->names[i], item) < 0) Py_CLEAR(out);
            Py_XDECREF(item);
        }
        return out;
    }
    case N_OPTION: {
        if (v->of.option == NULL) Py_RETURN_NONE;
        PyObject *inner = read_val(n->kids[0], v->of.option);
        return n->nested ? one(s_some, inner) : inner;
    }
    case N_RESULT: {
        int ok = v->of.result.is_ok != 0;
        return one(ok ? s_ok : s_err, payload(n->kids[ok ? 0 : 1], v->of.result.val));
    }
    case N_VARIANT: {
        vec_t name = v->of.variant.name;
        for (Py_ssize_t i = 0; i < n->n; i++) {
            PyObject *enc = n->encoded[i];
            if ((size_t)PyBytes_GET_SIZE(enc) == name.size && memcmp(PyBytes_AS_STRING(enc), name.data, name.size) == 0)
                return one(n->names[i], payload(n->kids[i], v->of.variant.val));
        }
        PyObject *key = PyBytes_FromStringAndSize((const char *)name.data, (Py_ssize_t)name.size);
        if (key != NULL) { PyErr_SetObject(PyExc_KeyError, key); Py_DECREF(key); }
        return NULL;
    }
    }
    PyErr_SetString(PyExc_SystemError, "unknown node");
    return NULL;
}

/* --- writing: a plain value into a slot --- */

/* returns 1: written; 0: not a value taken here as it is (what was written is left valid, to be
   freed by the caller); -1: an error (memory) */
static int write_val(node_t *n, PyObject *o, val_t *v);

static int write_int(node_t *n, PyObject *o, val_t *v) {
    if (!PyLong_CheckExact(o)) return 0;
    if (n->kind == N_U64) {
        unsigned long long x = PyLong_AsUnsignedLongLong(o);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
        v->of.u64 = x;
        return 1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); return 0; }
    switch (n->kind) {
    case N_S8: if (x < INT8_MIN || x > INT8_MAX) return 0; *(int8_t *)v->of.raw = (int8_t)x; break;
    case N_U8: if (x < 0 || x > UINT8_MAX) return 0; v->of.u8 = (uint8_t)x; break;
    case N_S16: if (x < INT16_MIN || x > INT16_MAX) return 0; *(int16_t *)v->of.raw = (int16_t)x; break;
    case N_U16: if (x < 0 || x > UINT16_MAX) return 0; *(uint16_t *)v->of.raw = (uint16_t)x; break;
    case N_S32: if (x < INT32_MIN || x > INT32_MAX) return 0; *(int32_t *)v->of.raw = (int32_t)x; break;
    case N_U32: if (x < 0 || x > UINT32_MAX) return 0; v->of.u32 = (uint32_t)x; break;
    case N_S64: v->of.s64 = x; break;
    default: return 0;
    }
    return 1;
}

/* a container's n elements allocated into `vec` and each set to an empty value of its kind */
static val_t *elements(vec_uninit_f uninit, vec_t *vec, size_t count, node_t **kids, int same) {
    uninit(vec, count);
    val_t *el = (val_t *)vec->data;
    if (count == 0) return el;
    memset(el, 0, count * sizeof(val_t));
    for (size_t i = 0; i < count; i++) el[i].kind = kids[same ? 0 : i]->vkind;
    return el;
}

static int write_val(node_t *n, PyObject *o, val_t *v) {
    memset(v->of.raw, 0, sizeof v->of.raw);
    v->kind = n->vkind;  /* a zero payload: a valid (empty) value from here on */
    switch (n->kind) {
    case N_BOOL:
        if (o == Py_True) v->of.b = 1;
        else if (o != Py_False) return 0;
        return 1;
    case N_S8: case N_U8: case N_S16: case N_U16: case N_S32: case N_U32: case N_S64: case N_U64:
        return write_int(n, o, v);
    case N_F64: case N_F32: {
        if (!PyFloat_CheckExact(o)) return 0;
        double d = PyFloat_AS_DOUBLE(o);
        if (n->kind == N_F64) { v->of.f64 = d; return 1; }
        if (isfinite(d) && fabs(d) > FLT_MAX) return 0;  /* struct.pack refuses it: the codec's path says so */
        v->of.f32 = (float)d;
        return 1;
    }
    case N_CHAR: {
        if (!PyUnicode_CheckExact(o) || PyUnicode_GET_LENGTH(o) != 1) return 0;
        Py_UCS4 c = PyUnicode_READ_CHAR(o, 0);
        if (c >= 0xD800 && c <= 0xDFFF) return 0;
        v->of.u32 = (uint32_t)c;
        return 1;
    }
    case N_STRING: {
        if (!PyUnicode_CheckExact(o)) return 0;
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(o, &len);
        if (s == NULL) { PyErr_Clear(); return 0; }  /* lone surrogates: the codec's error */
        W.vec_new(&v->of.vec, (size_t)len, s);
        return 1;
    }
    case N_BYTES: {
        if (!PyBytes_CheckExact(o)) return 0;
        size_t size = (size_t)PyBytes_GET_SIZE(o);
        const uint8_t *src = (const uint8_t *)PyBytes_AS_STRING(o);
        W.list_uninit(&v->of.vec, size);
        val_t *el = (val_t *)v->of.vec.data;
        if (size) memset(el, 0, size * sizeof(val_t));
        for (size_t i = 0; i < size; i++) { el[i].kind = K_U8; el[i].of.u8 = src[i]; }
        return 1;
    }
    case N_LIST: {
        if (!PyList_CheckExact(o)) return 0;
        Py_ssize_t size = PyList_GET_SIZE(o);
        val_t *el = elements(W.list_uninit, &v->of.vec, (size_t)size, n->kids, 1);
        for (Py_ssize_t i = 0; i < size && i < (Py_ssize_t)v->of.vec.size; i++) {
            int r = write_val(n->kids[0], PyList_GET_ITEM(o, i), &el[i]);
            if (r <= 0) return r;
        }
        return PyList_GET_SIZE(o) == size;  /* (a list changed under us: not taken) */
    }
    case N_TUPLE: {
        PyObject **items;
        if (PyTuple_CheckExact(o) && PyTuple_GET_SIZE(o) == n->n) items = &PyTuple_GET_ITEM(o, 0);
        else if (PyList_CheckExact(o) && PyList_GET_SIZE(o) == n->n) items = ((PyListObject *)o)->ob_item;
        else return 0;
        val_t *el = elements(W.tuple_uninit, &v->of.vec, (size_t)n->n, n->kids, 0);
        for (Py_ssize_t i = 0; i < n->n; i++) {
            int r = write_val(n->kids[i], items[i], &el[i]);
            if (r <= 0) return r;
        }
        return 1;
    }
    case N_RECORD: {
        if (!PyDict_CheckExact(o) || PyDict_GET_SIZE(o) != n->n) return 0;
        W.record_uninit(&v->of.vec, (size_t)n->n);
        entry_t *e = (entry_t *)v->of.vec.data;
        if (n->n == 0) return 1;
        memset(e, 0, (size_t)n->n * sizeof(entry_t));
        for (Py_ssize_t i = 0; i < n->n; i++) e[i].val.kind = n->kids[i]->vkind;
        for (Py_ssize_t i = 0; i < n->n; i++) {
            PyObject *enc = n->encoded[i];
            W.vec_new(&e[i].name, (size_t)PyBytes_GET_SIZE(enc), PyBytes_AS_STRING(enc));
        }
        for (Py_ssize_t i = 0; i < n->n; i++) {
            PyObject *field = PyDict_GetItemWithError(o, n->names[i]);  /* borrowed */
            if (field == NULL) { if (PyErr_Occurred()) PyErr_Clear(); return 0; }
            int r = write_val(n->kids[i], field, &e[i].val);
            if (r <= 0) return r;
        }
        return 1;
    }
    }
    return 0;
}

/* --- Type: the tree, as a reader --- */

typedef struct { PyObject_HEAD node_t *root; vectorcallfunc call; } TypeObject;

static void type_dealloc(TypeObject *self) {
    free_node(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* t(buf, off): the plain form of the value whose slot is at `off` in bytes `buf` */
static PyObject *type_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || kwnames != NULL || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "a reader takes (buf: bytes, off: int)");
        return NULL;
    }
    Py_ssize_t off = PyLong_AsSsize_t(args[1]);
    if (off == -1 && PyErr_Occurred()) return NULL;
    if (off < 0 || off + (Py_ssize_t)sizeof(val_t) > PyBytes_GET_SIZE(args[0])) {
        PyErr_SetString(PyExc_IndexError, "the slot is outside the buffer");
        return NULL;
    }
    val_t v;
    memcpy(&v, PyBytes_AS_STRING(args[0]) + off, sizeof v);  /* aligned */
    return read_val(((TypeObject *)self)->root, &v);
}

static PyObject *type_new(PyTypeObject *cls, PyObject *args, PyObject *kw) {
    PyObject *spec;
    if (!PyArg_ParseTuple(args, "O", &spec)) return NULL;
    node_t *root = build(spec);
    if (root == NULL) return NULL;
    TypeObject *self = (TypeObject *)cls->tp_alloc(cls, 0);
    if (self == NULL) { free_node(root); return NULL; }
    self->root = root;
    self->call = type_call;
    return (PyObject *)self;
}

static PyObject *type_lowerable(TypeObject *self, void *unused) { return PyBool_FromLong(self->root->lowerable); }

static PyGetSetDef type_getset[] = {
    {"lowerable", (getter)type_lowerable, NULL, "whether lower() writes values of it", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TypeType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_trellis_values.Type",
    .tp_basicsize = sizeof(TypeObject),
    .tp_dealloc = (destructor)type_dealloc,
    .tp_vectorcall_offset = offsetof(TypeObject, call),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Type(spec): a WIT type's reader and writer (see the module's source)",
    .tp_new = type_new,
    .tp_getset = type_getset,
};

/* --- Lowered: a value written, waiting for its argument slot --- */

typedef struct { PyObject_HEAD val_t v; int owned; } LoweredObject;

static void lowered_dealloc(LoweredObject *self) {
    if (self->owned) W.val_delete(&self->v);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* move_into(address): the value into the slot at `address` (which owns it from then on) */
static PyObject *lowered_move_into(LoweredObject *self, PyObject *arg) {
    void *slot = PyLong_AsVoidPtr(arg);
    if (slot == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no slot");
        return NULL;
    }
    if (!self->owned) { PyErr_SetString(PyExc_RuntimeError, "the value was moved already"); return NULL; }
    memcpy(slot, &self->v, sizeof(val_t));
    self->owned = 0;
    Py_RETURN_NONE;
}

static PyMethodDef lowered_methods[] = {
    {"move_into", (PyCFunction)lowered_move_into, METH_O, "move_into(address): the value into that slot"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject LoweredType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_trellis_values.Lowered",
    .tp_basicsize = sizeof(LoweredObject),
    .tp_dealloc = (destructor)lowered_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "a value written by lower(), freed unless moved into a slot",
    .tp_methods = lowered_methods,
};

/* lower(type, value): a Lowered, or None when `value` is not one this writes as it is */
static PyObject *py_lower(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &TypeType)) {
        PyErr_SetString(PyExc_TypeError, "lower(type, value)");
        return NULL;
    }
    node_t *root = ((TypeObject *)args[0])->root;
    if (!ready || !root->lowerable) Py_RETURN_NONE;
    LoweredObject *out = PyObject_New(LoweredObject, &LoweredType);
    if (out == NULL) return NULL;
    memset(&out->v, 0, sizeof out->v);
    out->owned = 1;
    int r = write_val(root, args[1], &out->v);
    if (r == 1) return (PyObject *)out;
    Py_DECREF(out);  /* frees what was written */
    if (r < 0) return NULL;
    Py_RETURN_NONE;
}

/* lift(type, address): the plain form of the value at `address`, which is freed, whatever happens */
static PyObject *py_lift(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &TypeType)) {
        PyErr_SetString(PyExc_TypeError, "lift(type, address)");
        return NULL;
    }
    val_t *v = PyLong_AsVoidPtr(args[1]);
    if (v == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "no value");
        return NULL;
    }
    PyObject *out = read_val(((TypeObject *)args[0])->root, v);
    W.val_delete(v);
    return out;
}

static PyObject *py_init(PyObject *self, PyObject *fns) {
    static const char *const names[] = {"vec_new", "list_uninit", "tuple_uninit", "record_uninit", "val_delete",
                                        NULL};
    void **const slots[] = {(void **)&W.vec_new, (void **)&W.list_uninit, (void **)&W.tuple_uninit,
                            (void **)&W.record_uninit, (void **)&W.val_delete};
    if (take_functions(fns, names, slots) < 0) return NULL;
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", py_init, METH_O, "init(functions): wasmtime's functions by name, as addresses"},
    {"layout", val_layout, METH_NOARGS, "the value layout this module was compiled for"},
    {"lower", (PyCFunction)(void (*)(void))py_lower, METH_FASTCALL, "lower(type, value) -> Lowered | None"},
    {"lift", (PyCFunction)(void (*)(void))py_lift, METH_FASTCALL, "lift(type, address) -> plain value (freed)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trellis_values", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__trellis_values(void) {
    if (PyType_Ready(&TypeType) < 0 || PyType_Ready(&LoweredType) < 0) return NULL;
    s_some = PyUnicode_InternFromString("some");
    s_ok = PyUnicode_InternFromString("ok");
    s_err = PyUnicode_InternFromString("err");
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&TypeType);
    Py_INCREF(&LoweredType);
    if (PyModule_AddObject(m, "Type", (PyObject *)&TypeType) < 0 ||
        PyModule_AddObject(m, "Lowered", (PyObject *)&LoweredType) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
