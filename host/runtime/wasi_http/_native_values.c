/* The values of _native.c: wasmtime's value slots read into plain Python values and written from
 * them, by a type tree built once per function (included by _native.c: one translation unit). */

/* --- reading arguments --- */

/* whether reading `v` of type `n` stays native (else the whole call is fastcall.py's) */
static int peek(node_t *n, val_t *v) {
    if (!n->slow_inside) return 1;
    switch (n->kind) {
    case N_SLOW: return 0;
    case N_OPTION: return v->of.option == NULL || peek(n->kids[0], v->of.option);
    case N_RESULT: {
        node_t *k = n->kids[v->of.result.is_ok ? 0 : 1];
        return k == NULL || v->of.result.val == NULL || peek(k, v->of.result.val);
    }
    default: return 0;  /* variants, lists, tuples with a slow part: not read here */
    }
}

static PyObject *read_val(node_t *n, val_t *v, void *context, PyObject *entries, PyObject *where, int top);

static PyObject *read_resource(node_t *n, val_t *v, void *context, PyObject *entries, PyObject *where) {
    void *any = v->of.resource;
    v->of.resource = NULL;  /* taken: ours to delete; the slot a payload-less value (a bool) for whoever frees it */
    v->kind = K_BOOL;
    void *host = NULL;
    void *err = W.to_host(context, any, &host);
    if (err != NULL) {
        W.any_delete(any);
        PyErr_Format(codec_error, "%U: guest-defined resources cannot be passed to the host", where);
        return NULL;
    }
    uint32_t rep = W.host_rep(host), ty = W.host_type(host);
    W.host_delete(host);
    W.any_delete(any);
    PyObject *key = PyLong_FromUnsignedLong(rep);
    if (key == NULL) return NULL;
    PyObject *entry = PyDict_GetItemWithError(entries, key);  /* borrowed */
    if (entry == NULL || ty != n->type_id || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        Py_DECREF(key);
        if (!PyErr_Occurred())
            PyErr_Format(codec_error, "%U: unknown %U handle (rep %lu)", where, n->name, (unsigned long)rep);
        return NULL;
    }
    PyObject *obj = PyTuple_GET_ITEM(entry, 1);
    Py_INCREF(obj);
    if (n->kind == N_OWN && PyDict_DelItem(entries, key) < 0) {
        Py_DECREF(obj); Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(key);
    return obj;
}

static PyObject *read_val(node_t *n, val_t *v, void *context, PyObject *entries, PyObject *where, int top) {
    PyObject *out;
    switch (n->kind) {
    case N_BOOL: return PyBool_FromLong(v->of.b);
    case N_U8: return PyLong_FromUnsignedLong(v->of.u8);
    case N_S8: return PyLong_FromLong(*(int8_t *)v->of.raw);
    case N_U16: return PyLong_FromUnsignedLong(*(uint16_t *)v->of.raw);
    case N_S16: return PyLong_FromLong(*(int16_t *)v->of.raw);
    case N_U32: return PyLong_FromUnsignedLong(*(uint32_t *)v->of.raw);
    case N_S32: return PyLong_FromLong(*(int32_t *)v->of.raw);
    case N_U64: return PyLong_FromUnsignedLongLong(v->of.u64);
    case N_S64: return PyLong_FromLongLong(v->of.s64);
    case N_STRING:
        out = PyUnicode_DecodeUTF8((const char *)v->of.vec.data, (Py_ssize_t)v->of.vec.size, "strict");
        if (top) W.vec_delete(&v->of.vec);
        return out;
    case N_BYTES: {
        size_t size = v->of.vec.size;
        val_t *el = (val_t *)v->of.vec.data;
        out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
        if (out != NULL) {
            char *dst = PyBytes_AS_STRING(out);
            for (size_t i = 0; i < size; i++) dst[i] = (char)el[i].of.u8;
        }
        if (top) W.list_delete(&v->of.vec);
        return out;
    }
    case N_LIST: case N_TUPLE: {
        size_t size = v->of.vec.size;
        val_t *el = (val_t *)v->of.vec.data;
        out = PyList_New((Py_ssize_t)size);
        for (size_t i = 0; out != NULL && i < size; i++) {
            node_t *k = n->kind == N_LIST ? n->kids[0] : n->kids[i];
            PyObject *item = read_val(k, &el[i], context, entries, where, 0);
            if (item == NULL) { Py_CLEAR(out); break; }
            PyList_SET_ITEM(out, (Py_ssize_t)i, item);
        }
        if (top) (n->kind == N_LIST ? W.list_delete : W.tuple_delete)(&v->of.vec);
        return out;
    }
    case N_OPTION:
        if (v->of.option == NULL) Py_RETURN_NONE;
        return read_val(n->kids[0], v->of.option, context, entries, where, 0);
    case N_RESULT: {
        int ok = v->of.result.is_ok != 0;
        node_t *k = n->kids[ok ? 0 : 1];
        PyObject *payload;
        if (k == NULL || v->of.result.val == NULL) { payload = Py_None; Py_INCREF(payload); }
        else payload = read_val(k, v->of.result.val, context, entries, where, 0);
        if (payload == NULL) return NULL;
        out = PyDict_New();
        if (out != NULL && PyDict_SetItem(out, ok ? s_ok : s_err, payload) < 0) Py_CLEAR(out);
        Py_DECREF(payload);
        return out;
    }
    case N_VARIANT: {
        vec_t name = v->of.variant.name;
        for (Py_ssize_t i = 0; i < n->n; i++) {
            Py_ssize_t len;
            const char *c = PyUnicode_AsUTF8AndSize(n->case_names[i], &len);
            if (c == NULL) return NULL;
            if ((size_t)len != name.size || memcmp(c, name.data, name.size) != 0) continue;
            PyObject *payload;
            if (n->kids[i] == NULL || v->of.variant.val == NULL) { payload = Py_None; Py_INCREF(payload); }
            else payload = read_val(n->kids[i], v->of.variant.val, context, entries, where, 0);
            if (payload == NULL) return NULL;
            out = PyDict_New();
            if (out != NULL && PyDict_SetItem(out, n->case_names[i], payload) < 0) Py_CLEAR(out);
            Py_DECREF(payload);
            return out;
        }
        PyErr_Format(codec_error, "%U: unknown variant case", where);
        return NULL;
    }
    case N_OWN: case N_BORROW: return read_resource(n, v, context, entries, where);
    default:
        PyErr_Format(codec_error, "%U: a value the native binding does not read", where);
        return NULL;
    }
}

/* --- writing the result --- */

/* the (key, payload) of a one-key dict, borrowed; 0 if it is not one */
static int one_key(PyObject *value, PyObject **key, PyObject **payload) {
    Py_ssize_t pos = 0;
    if (!PyDict_CheckExact(value) || PyDict_GET_SIZE(value) != 1) return 0;
    return PyDict_Next(value, &pos, key, payload);
}

static Py_ssize_t case_index(node_t *n, PyObject *key) {
    for (Py_ssize_t i = 0; i < n->n; i++) {
        if (n->case_names[i] == key) return i;
        int eq = PyUnicode_Check(key) ? PyUnicode_Compare(n->case_names[i], key) == 0 : 0;
        if (eq) return i;
    }
    return -1;
}

/* whether `value` can be written natively (without side effects; 0: the Python writer) */
static int can_write(node_t *n, PyObject *value) {
    PyObject *key, *payload;
    Py_ssize_t i;
    if (!n->slow_inside) {
        switch (n->kind) {  /* cheap shape checks where a wrong shape is common */
        case N_RESULT:
            if (!one_key(value, &key, &payload)) return 0;
            return (key == s_ok || key == s_err || (PyUnicode_Check(key) &&
                    (PyUnicode_Compare(key, s_ok) == 0 || PyUnicode_Compare(key, s_err) == 0)));
        case N_VARIANT:
            return one_key(value, &key, &payload) && case_index(n, key) >= 0;
        case N_OWN:
            return Py_TYPE(value) == (PyTypeObject *)host_resource;
        default:
            return 1;
        }
    }
    switch (n->kind) {
    case N_SLOW: return 0;
    case N_OPTION: return value == Py_None || can_write(n->kids[0], value);
    case N_RESULT:
        if (!one_key(value, &key, &payload)) return 0;
        if (PyUnicode_Check(key) && PyUnicode_Compare(key, s_ok) == 0)
            return n->kids[0] == NULL || can_write(n->kids[0], payload);
        if (PyUnicode_Check(key) && PyUnicode_Compare(key, s_err) == 0)
            return n->kids[1] == NULL || can_write(n->kids[1], payload);
        return 0;
    case N_VARIANT:
        if (!one_key(value, &key, &payload) || (i = case_index(n, key)) < 0) return 0;
        return n->kids[i] == NULL || can_write(n->kids[i], payload);
    case N_LIST: case N_TUPLE: {
        PyObject *seq = PySequence_Fast(value, "");
        if (seq == NULL) { PyErr_Clear(); return 0; }
        Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
        int ok = n->kind == N_LIST || len == n->n;
        for (i = 0; ok && i < len; i++)
            ok = can_write(n->kind == N_LIST ? n->kids[0] : n->kids[i], PySequence_Fast_GET_ITEM(seq, i));
        Py_DECREF(seq);
        return ok;
    }
    default: return 0;
    }
}

typedef struct { void *context; PyObject *table; PyObject *entries; PyObject *where; } env_t;

static int write_val(node_t *n, PyObject *value, val_t *out, env_t *env);

/* `value` of type `n` into a heap value (NULL payload for a NULL node) */
static int write_heap(node_t *n, PyObject *value, val_t **out, env_t *env) {
    *out = NULL;
    if (n == NULL) return 0;
    val_t tmp;
    memset(&tmp, 0, sizeof tmp);  /* a bool: valid, nothing to free */
    if (write_val(n, value, &tmp, env) < 0) {
        W.val_delete(&tmp);
        return -1;
    }
    *out = W.val_new(&tmp);
    return 0;
}

static int write_own(node_t *n, PyObject *value, val_t *out, env_t *env) {
    if (Py_TYPE(value) != (PyTypeObject *)host_resource)
        return set_error(env->where, "expected HostResource(obj) for a resource");
    PyObject *obj = PyObject_GetAttr(value, s_obj);
    if (obj == NULL) return -1;
    PyObject *reps = PyObject_GetAttr(env->table, s_reps);
    PyObject *rep_obj = reps != NULL ? PyIter_Next(reps) : NULL;
    Py_XDECREF(reps);
    if (rep_obj == NULL) { Py_DECREF(obj); if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "reps"); return -1; }
    uint32_t rep = (uint32_t)PyLong_AsUnsignedLong(rep_obj);
    PyObject *entry = PyTuple_Pack(2, n->ref, obj);
    Py_DECREF(obj);
    if (entry == NULL || PyDict_SetItem(env->entries, rep_obj, entry) < 0) {
        Py_XDECREF(entry); Py_DECREF(rep_obj);
        return -1;
    }
    Py_DECREF(entry);
    void *host = W.host_new(1, rep, n->type_id);
    void *any = NULL;
    void *err = W.host_to_any(env->context, host, &any);
    W.host_delete(host);
    if (err != NULL) {
        PyDict_DelItem(env->entries, rep_obj);
        Py_DECREF(rep_obj);
        PyErr_Format(codec_error, "%U: cannot hand out a %U handle", env->where, n->name);
        return -1;
    }
    Py_DECREF(rep_obj);
    out->of.resource = any;
    out->kind = K_RESOURCE;
    return 0;
}

static int write_bytes(PyObject *value, val_t *out) {
    Py_buffer buf;
    if (PyObject_GetBuffer(value, &buf, PyBUF_SIMPLE) < 0) return -1;
    vec_t list;
    W.list_uninit(&list, (size_t)buf.len);
    val_t *el = (val_t *)list.data;
    const uint8_t *src = buf.buf;
    for (Py_ssize_t i = 0; i < buf.len; i++) {
        memset(&el[i], 0, sizeof(val_t));
        el[i].kind = K_U8;
        el[i].of.u8 = src[i];
    }
    PyBuffer_Release(&buf);
    out->of.vec = list;
    out->kind = K_LIST;
    return 0;
}

static int write_seq(node_t *n, PyObject *value, val_t *out, env_t *env) {
    PyObject *seq = PySequence_Fast(value, "expected a list");
    if (seq == NULL) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (n->kind == N_TUPLE && len != n->n) {
        Py_DECREF(seq);
        return set_error(env->where, "a tuple of the wrong size");
    }
    vec_t list;
    (n->kind == N_LIST ? W.list_uninit : W.tuple_uninit)(&list, (size_t)len);
    val_t *el = (val_t *)list.data;
    if (len) memset(el, 0, (size_t)len * sizeof(val_t));  /* bools: valid until written */
    out->of.vec = list;
    out->kind = n->kind == N_LIST ? K_LIST : K_TUPLE;  /* valid from here: freed with `out` on failure */
    for (Py_ssize_t i = 0; i < len; i++) {
        node_t *k = n->kind == N_LIST ? n->kids[0] : n->kids[i];
        if (write_val(k, PySequence_Fast_GET_ITEM(seq, i), &el[i], env) < 0) { Py_DECREF(seq); return -1; }
    }
    Py_DECREF(seq);
    return 0;
}

static int write_val(node_t *n, PyObject *value, val_t *out, env_t *env) {
    PyObject *key, *payload;
    switch (n->kind) {
    case N_BOOL: {
        int t = PyObject_IsTrue(value);
        if (t < 0) return -1;
        out->of.b = (uint8_t)t; out->kind = K_BOOL; return 0;
    }
    case N_U8: case N_U16: case N_U32: case N_U64: {
        unsigned long long x = PyLong_AsUnsignedLongLong(value);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        static const int kinds[] = {[N_U8] = K_U8, [N_U16] = K_U16, [N_U32] = K_U32, [N_U64] = K_U64};
        static const int bits[] = {[N_U8] = 8, [N_U16] = 16, [N_U32] = 32, [N_U64] = 64};
        if (bits[n->kind] < 64 && x >> bits[n->kind])
            return set_error(env->where, "a number out of range");
        out->of.u64 = 0;
        memcpy(out->of.raw, &x, (size_t)bits[n->kind] / 8);
        out->kind = (uint8_t)kinds[n->kind];
        return 0;
    }
    case N_S8: case N_S16: case N_S32: case N_S64: {
        long long x = PyLong_AsLongLong(value);
        if (x == -1 && PyErr_Occurred()) return -1;
        static const int kinds[] = {[N_S8] = K_S8, [N_S16] = K_S16, [N_S32] = K_S32, [N_S64] = K_S64};
        static const int bits[] = {[N_S8] = 8, [N_S16] = 16, [N_S32] = 32, [N_S64] = 64};
        int b = bits[n->kind];
        if (b < 64 && (x < -(1LL << (b - 1)) || x >= (1LL << (b - 1))))
            return set_error(env->where, "a number out of range");
        out->of.u64 = 0;
        memcpy(out->of.raw, &x, (size_t)b / 8);
        out->kind = (uint8_t)kinds[n->kind];
        return 0;
    }
    case N_STRING: {
        Py_ssize_t len;
        const char *c = PyUnicode_Check(value) ? PyUnicode_AsUTF8AndSize(value, &len) : NULL;
        if (c == NULL) {
            if (!PyErr_Occurred()) set_error(env->where, "expected a string");
            return -1;
        }
        W.vec_new(&out->of.vec, (size_t)len, c);
        out->kind = K_STRING;
        return 0;
    }
    case N_BYTES: return write_bytes(value, out);
    case N_LIST: case N_TUPLE: return write_seq(n, value, out, env);
    case N_OPTION:
        out->of.option = NULL;
        out->kind = K_OPTION;
        if (value == Py_None) return 0;
        return write_heap(n->kids[0], value, &out->of.option, env);
    case N_RESULT: {
        if (!one_key(value, &key, &payload))
            return set_error(env->where, "expected {'ok': ...} or {'err': ...}");
        int ok = PyUnicode_Compare(key, s_ok) == 0;
        if (!ok && PyUnicode_Compare(key, s_err) != 0)
            return set_error(env->where, "expected {'ok': ...} or {'err': ...}");
        val_t *heap;
        if (write_heap(n->kids[ok ? 0 : 1], payload, &heap, env) < 0) return -1;
        out->of.result.is_ok = (uint8_t)ok;
        out->of.result.val = heap;
        out->kind = K_RESULT;
        return 0;
    }
    case N_VARIANT: {
        Py_ssize_t i;
        if (!one_key(value, &key, &payload) || (i = case_index(n, key)) < 0)
            return set_error(env->where, "not a case of the variant");
        val_t *heap;
        if (write_heap(n->kids[i], payload, &heap, env) < 0) return -1;
        Py_ssize_t len;
        const char *c = PyUnicode_AsUTF8AndSize(n->case_names[i], &len);
        W.vec_new(&out->of.variant.name, (size_t)len, c);
        out->of.variant.val = heap;
        out->kind = K_VARIANT;
        return 0;
    }
    case N_OWN: return write_own(n, value, out, env);
    default:
        return set_error(env->where, "a value the native binding does not write");
    }
}

/* --- building the type tree and the functions (from native.py) --- */

static void free_node(node_t *n) {
    if (n == NULL) return;
    for (Py_ssize_t i = 0; i < n->n; i++) {
        free_node(n->kids[i]);
        if (n->case_names) Py_XDECREF(n->case_names[i]);
    }
    PyMem_Free(n->kids);
    PyMem_Free(n->case_names);
    Py_XDECREF(n->ref);
    Py_XDECREF(n->name);
    PyMem_Free(n);
}

static const char *KINDS[] = {"bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "string", "bytes",
                              "list", "tuple", "option", "result", "variant", "own", "borrow", "slow", NULL};

/* a node from its spec: None (no payload), ("u64",), ("own", type_id, ref, name),
   ("list", spec), ("tuple", [specs]), ("option", spec), ("result", ok, err),
   ("variant", [(name, spec), ...]), ("slow",) */
static int build_node(PyObject *spec, node_t **out) {
    *out = NULL;
    if (spec == Py_None) return 0;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1) { PyErr_SetString(PyExc_TypeError, "node spec"); return -1; }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 0));
    if (kind == NULL) return -1;
    int k = -1;
    for (int i = 0; KINDS[i]; i++) if (strcmp(KINDS[i], kind) == 0) k = i;
    if (k < 0) { PyErr_Format(PyExc_ValueError, "unknown node kind %s", kind); return -1; }
    node_t *n = PyMem_Calloc(1, sizeof(node_t));
    if (n == NULL) { PyErr_NoMemory(); return -1; }
    n->kind = k;
    *out = n;
    PyObject *kids = NULL;
    switch (k) {
    case N_OWN: case N_BORROW:
        if (!PyArg_ParseTuple(spec, "sIOO", &kind, &n->type_id, &n->ref, &n->name)) return -1;
        Py_INCREF(n->ref); Py_INCREF(n->name);
        return 0;
    case N_SLOW: n->slow_inside = 1; return 0;
    case N_LIST: case N_OPTION: kids = PyTuple_GetSlice(spec, 1, 2); break;
    case N_RESULT: kids = PyTuple_GetSlice(spec, 1, 3); break;
    case N_TUPLE: kids = PySequence_Tuple(PyTuple_GET_ITEM(spec, 1)); break;
    case N_VARIANT: {
        PyObject *cases = PySequence_Tuple(PyTuple_GET_ITEM(spec, 1));
        if (cases == NULL) return -1;
        n->n = PyTuple_GET_SIZE(cases);
        n->kids = PyMem_Calloc((size_t)n->n + 1, sizeof(node_t *));
        n->case_names = PyMem_Calloc((size_t)n->n + 1, sizeof(PyObject *));
        for (Py_ssize_t i = 0; i < n->n; i++) {
            PyObject *c = PyTuple_GET_ITEM(cases, i);
            n->case_names[i] = PyTuple_GET_ITEM(c, 0);
            Py_INCREF(n->case_names[i]);
            PyUnicode_InternInPlace(&n->case_names[i]);
            if (build_node(PyTuple_GET_ITEM(c, 1), &n->kids[i]) < 0) { Py_DECREF(cases); return -1; }
            if (n->kids[i] && n->kids[i]->slow_inside) n->slow_inside = 1;
        }
        Py_DECREF(cases);
        return 0;
    }
    default: return 0;
    }
    if (kids == NULL) return -1;
    n->n = PyTuple_GET_SIZE(kids);
    n->kids = PyMem_Calloc((size_t)n->n + 1, sizeof(node_t *));
    for (Py_ssize_t i = 0; i < n->n; i++) {
        if (build_node(PyTuple_GET_ITEM(kids, i), &n->kids[i]) < 0) { Py_DECREF(kids); return -1; }
        if (n->kids[i] && n->kids[i]->slow_inside) n->slow_inside = 1;
    }
    Py_DECREF(kids);
    return 0;
}
