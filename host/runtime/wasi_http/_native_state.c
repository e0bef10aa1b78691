/* The hot wasi:http functions of a held request in C, on the request's state (included by _native.c).
 *
 * A request the host holds whole (its body a BytesSource, its response collected in a CollectSink:
 * every request but a streamed exchange's) calls the same dozen functions every time. Their state
 * is the Python objects of types.py / io.py / trellis/kit/bodies.py, all `__slots__` classes, i.e.
 * C structs with a Python face: this file reads and writes those slots at their offsets (found
 * once, from the classes' member descriptors, in init_state) and makes new objects the same way,
 * so the Python implementations and these share one state and one another's objects.
 *
 * Each function here takes the argument list the Python one takes. It first checks that the
 * call is the plain case (the exact classes, a held body, no exchange, nothing over the inline
 * bound, nothing to refuse); anything else is handed, untouched, to the Python implementation
 * (`py`), which then does all of it. So the Python code stays the one definition of every
 * corner (errors, streams, pipes, reroutes); this is its common path without bytecode.
 */

/* --- the classes and their slots --- */

enum { REQ, FIELDS, IBODY, ISTREAM, BYTES, ORESP, OBODY, OSTREAM, COLLECT, OUTPARAM, TRAILERS, NCLS };
#define MAXSLOTS 8

typedef struct { PyTypeObject *type; int n; Py_ssize_t off[MAXSLOTS]; } cls_t;
static cls_t CLS[NCLS];
/* the slots used below, in the order init_state is given their names */
enum { REQ_METHOD, REQ_PATH, REQ_BODY, REQ_SCHEME, REQ_AUTHORITY };
enum { FIELDS_ENTRIES, FIELDS_IMMUTABLE };
enum { IBODY_SOURCE, IBODY_STREAMED };
enum { IS_SOURCE, IS_POS, IS_ON_END, IS_STREAMED };
enum { BYTES_DATA, BYTES_POS };
enum { ORESP_STATUS, ORESP_HEADERS, ORESP_BODY, ORESP_SINK };
enum { OBODY_STREAM, OBODY_TAKEN, OBODY_FINISHED, OBODY_WHAT };
enum { OS_SINK, OS_SIZE, OS_CLOSED, OS_WHAT };
enum { CS_CHUNKS, CS_SIZE, CS_LIMIT, CS_WHAT, CS_DONE };
enum { OP_RESPONSE, OP_ERROR, OP_SET, OP_EXCHANGE, OP_SINK };

#define SLOT(o, c, i) (*(PyObject **)((char *)(o) + CLS[c].off[i]))
#define IS(o, c) ((o) != NULL && Py_TYPE(o) == CLS[c].type)

static PyObject *st_closed;        /* io.CLOSED: {"closed": None} */
static PyObject *st_forbidden;     /* types.FORBIDDEN */
static PyObject *st_max_body;      /* types.MAX_BODY (int) */
static PyObject *st_response_body; /* "response body" */
static PyObject *st_ready;         /* io.READY: the pollable that is always ready */
static Py_ssize_t st_chunk, st_inline_bytes;
static int state_ready;

/* set slot i of o to v (a new reference is taken; the old one released) */
static void set_slot(PyObject *o, int c, int i, PyObject *v) {
    PyObject **p = &SLOT(o, c, i);
    PyObject *old = *p;
    Py_INCREF(v);
    *p = v;
    Py_XDECREF(old);
}

/* a new object of class c with its slots set from vals (borrowed; as many as the class has) */
static PyObject *make(int c, PyObject **vals) {
    PyTypeObject *t = CLS[c].type;
    PyObject *o = t->tp_alloc(t, 0);
    if (o == NULL) return NULL;
    for (int i = 0; i < CLS[c].n; i++) set_slot(o, c, i, vals[i]);
    return o;
}

/* HostResource(obj), stealing obj (a frozen dataclass: set past its __setattr__, as dataclasses do) */
static PyObject *own(PyObject *obj) {
    if (obj == NULL) return NULL;
    PyTypeObject *t = (PyTypeObject *)host_resource;
    PyObject *o = t->tp_alloc(t, 0);
    if (o != NULL && PyObject_GenericSetAttr(o, s_obj, obj) < 0) Py_CLEAR(o);
    Py_DECREF(obj);
    return o;
}

/* {key: value}, stealing value */
static PyObject *one(PyObject *key, PyObject *value) {
    if (value == NULL) return NULL;
    PyObject *d = PyDict_New();
    if (d != NULL && PyDict_SetItem(d, key, value) < 0) Py_CLEAR(d);
    Py_DECREF(value);
    return d;
}

static PyObject *ok_none(void) { Py_INCREF(Py_None); return one(s_ok, Py_None); }
static PyObject *err_none(void) { Py_INCREF(Py_None); return one(s_err, Py_None); }

#define ARG(i) PyList_GET_ITEM(args, i)
#define FALLBACK() return PyObject_CallOneArg(py, args)

/* --- the functions: (args, the Python implementation) -> plain result --- */

typedef PyObject *(*fast_f)(PyObject *args, PyObject *py);

static PyObject *f_method(PyObject *args, PyObject *py) {
    if (!IS(ARG(0), REQ)) FALLBACK();
    PyObject *v = SLOT(ARG(0), REQ, REQ_METHOD);
    Py_INCREF(v);
    return v;
}

static PyObject *f_path(PyObject *args, PyObject *py) {
    if (!IS(ARG(0), REQ)) FALLBACK();
    PyObject *v = SLOT(ARG(0), REQ, REQ_PATH);
    Py_INCREF(v);
    return v;
}

static PyObject *f_scheme(PyObject *args, PyObject *py) {
    if (!IS(ARG(0), REQ)) FALLBACK();
    PyObject *v = SLOT(ARG(0), REQ, REQ_SCHEME);
    Py_INCREF(v);
    return v;
}

static PyObject *f_authority(PyObject *args, PyObject *py) {
    if (!IS(ARG(0), REQ)) FALLBACK();
    PyObject *v = SLOT(ARG(0), REQ, REQ_AUTHORITY);
    Py_INCREF(v);
    return v;
}

/* monotonic-clock.now: time.monotonic_ns()'s clock */
static PyObject *f_now(PyObject *args, PyObject *py) {
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) FALLBACK();
    return PyLong_FromUnsignedLongLong((unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);
}

static PyObject *f_consume(PyObject *args, PyObject *py) {
    PyObject *req = ARG(0);
    if (!IS(req, REQ)) FALLBACK();
    PyObject *body = SLOT(req, REQ, REQ_BODY);
    if (body == Py_None) return err_none();
    Py_INCREF(body);
    set_slot(req, REQ, REQ_BODY, Py_None);
    return one(s_ok, own(body));
}

static PyObject *f_stream(PyObject *args, PyObject *py) {
    PyObject *body = ARG(0);
    if (!IS(body, IBODY) || !IS(SLOT(body, IBODY, IBODY_SOURCE), BYTES)) FALLBACK();
    if (SLOT(body, IBODY, IBODY_STREAMED) == Py_True) return err_none();
    PyObject *zero = PyLong_FromLong(0);
    if (zero == NULL) return NULL;
    PyObject *vals[] = {SLOT(body, IBODY, IBODY_SOURCE), zero, Py_None, Py_False};  /* a held source */
    PyObject *stream = make(ISTREAM, vals);
    Py_DECREF(zero);
    if (stream == NULL) return NULL;
    set_slot(body, IBODY, IBODY_STREAMED, Py_True);
    return one(s_ok, own(stream));
}

/* input-stream.read / blocking-read of a held body (io.InputStream.read over a BytesSource) */
static PyObject *f_read(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0);
    if (!IS(s, ISTREAM)) FALLBACK();
    PyObject *src = SLOT(s, ISTREAM, IS_SOURCE);
    PyObject *data = IS(src, BYTES) ? SLOT(src, BYTES, BYTES_DATA) : NULL;
    if (data == NULL || !PyMemoryView_Check(data) || !PyLong_CheckExact(SLOT(src, BYTES, BYTES_POS)) ||
        !PyLong_CheckExact(SLOT(s, ISTREAM, IS_POS)))
        FALLBACK();
    unsigned long long want = PyLong_AsUnsignedLongLong(ARG(1));
    if (want == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); FALLBACK(); }
    Py_ssize_t n = want > (unsigned long long)st_chunk ? st_chunk : (Py_ssize_t)want;
    Py_buffer *buf = PyMemoryView_GET_BUFFER(data);
    Py_ssize_t pos = PyLong_AsSsize_t(SLOT(src, BYTES, BYTES_POS));
    Py_ssize_t mine = PyLong_AsSsize_t(SLOT(s, ISTREAM, IS_POS));
    if (pos < 0 || mine < 0 || !PyBuffer_IsContiguous(buf, 'C')) { PyErr_Clear(); FALLBACK(); }
    if (pos >= buf->len) {  /* the end */
        if (SLOT(s, ISTREAM, IS_ON_END) != Py_None) FALLBACK();
        Py_INCREF(st_closed);
        return one(s_err, st_closed);
    }
    Py_ssize_t k = buf->len - pos < n ? buf->len - pos : n;
    if (mine + k > st_inline_bytes) FALLBACK();  /* an inline call may have to go to a thread */
    PyObject *piece = PyBytes_FromStringAndSize((const char *)buf->buf + pos, k);
    PyObject *new_pos = PyLong_FromSsize_t(pos + k), *new_mine = PyLong_FromSsize_t(mine + k);
    if (piece == NULL || new_pos == NULL || new_mine == NULL) {
        Py_XDECREF(piece); Py_XDECREF(new_pos); Py_XDECREF(new_mine);
        return NULL;
    }
    set_slot(src, BYTES, BYTES_POS, new_pos);
    set_slot(s, ISTREAM, IS_POS, new_mine);
    Py_DECREF(new_pos); Py_DECREF(new_mine);
    return one(s_ok, piece);
}

/* a held input stream's pollable, or a collected output stream's: always ready (io.READY) */
static PyObject *f_subscribe_in(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0);
    if (!IS(s, ISTREAM) || !IS(SLOT(s, ISTREAM, IS_SOURCE), BYTES)) FALLBACK();
    Py_INCREF(st_ready);
    return own(st_ready);
}

static PyObject *f_subscribe_out(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0);
    if (!IS(s, OSTREAM) || !IS(SLOT(s, OSTREAM, OS_SINK), COLLECT)) FALLBACK();
    Py_INCREF(st_ready);
    return own(st_ready);
}

/* output-stream.check-write of a collected body: min(room, CHUNK), at least 1 (io.OutputStream.check_write) */
static PyObject *f_check_write(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0);
    if (!IS(s, OSTREAM)) FALLBACK();
    PyObject *sink = SLOT(s, OSTREAM, OS_SINK);
    if (!IS(sink, COLLECT) || SLOT(s, OSTREAM, OS_CLOSED) != Py_False || SLOT(sink, COLLECT, CS_DONE) != Py_False ||
        !PyLong_CheckExact(SLOT(sink, COLLECT, CS_SIZE)) || !PyLong_CheckExact(SLOT(sink, COLLECT, CS_LIMIT)))
        FALLBACK();
    Py_ssize_t held = PyLong_AsSsize_t(SLOT(sink, COLLECT, CS_SIZE));
    Py_ssize_t limit = PyLong_AsSsize_t(SLOT(sink, COLLECT, CS_LIMIT));
    if (held < 0 || limit < 0) { PyErr_Clear(); FALLBACK(); }
    Py_ssize_t room = limit - held > 0 ? limit - held : 1;
    return one(s_ok, PyLong_FromSsize_t(room < st_chunk ? room : st_chunk));
}

/* output-stream.flush / blocking-flush of a collected body: nothing to wait for */
static PyObject *f_flush(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0);
    if (!IS(s, OSTREAM)) FALLBACK();
    PyObject *sink = SLOT(s, OSTREAM, OS_SINK);
    if (!IS(sink, COLLECT) || SLOT(sink, COLLECT, CS_DONE) != Py_False) FALLBACK();
    if (SLOT(s, OSTREAM, OS_CLOSED) != Py_False) {
        Py_INCREF(st_closed);
        return one(s_err, st_closed);
    }
    return ok_none();
}

static PyObject *f_clone(PyObject *args, PyObject *py) {
    PyObject *f = ARG(0);
    if (!IS(f, FIELDS) || !PyList_CheckExact(SLOT(f, FIELDS, FIELDS_ENTRIES))) FALLBACK();
    PyObject *entries = PyList_GetSlice(SLOT(f, FIELDS, FIELDS_ENTRIES), 0, PY_SSIZE_T_MAX);
    if (entries == NULL) return NULL;
    PyObject *vals[] = {entries, Py_False};
    PyObject *copy = make(FIELDS, vals);
    Py_DECREF(entries);
    return copy == NULL ? NULL : own(copy);
}

static PyObject *f_finish_incoming(PyObject *args, PyObject *py) {
    PyObject *t = make(TRAILERS, NULL);
    return t == NULL ? NULL : own(t);
}

/* a header name the Python code would accept as it is: a token, not a forbidden one */
static int plain_name(PyObject *name, PyObject **lowered) {
    *lowered = NULL;
    if (!PyUnicode_CheckExact(name) || !PyUnicode_IS_ASCII(name) || PyUnicode_GET_LENGTH(name) == 0) return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(name);
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(name);
    int upper = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        Py_UCS1 ch = c[i];
        if (ch >= 'A' && ch <= 'Z') { upper = 1; continue; }
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) continue;
        if (!strchr("!#$%&'*+-.^_`|~", ch) || ch == 0) return 0;
    }
    PyObject *low;
    if (upper) {
        low = PyUnicode_New(len, 127);
        if (low == NULL) { PyErr_Clear(); return 0; }
        Py_UCS1 *d = PyUnicode_1BYTE_DATA(low);
        for (Py_ssize_t i = 0; i < len; i++) d[i] = (Py_UCS1)((c[i] >= 'A' && c[i] <= 'Z') ? c[i] + 32 : c[i]);
    } else {
        low = name;
        Py_INCREF(low);
    }
    int bad = PySet_Contains(st_forbidden, low);
    if (bad != 0) { Py_DECREF(low); PyErr_Clear(); return 0; }
    *lowered = low;
    return 1;
}

/* a header value the Python code would accept: bytes without NUL, CR or LF */
static int plain_value(PyObject *value) {
    if (!PyBytes_CheckExact(value)) return 0;
    const char *v = PyBytes_AS_STRING(value);
    Py_ssize_t len = PyBytes_GET_SIZE(value);
    for (Py_ssize_t i = 0; i < len; i++)
        if (v[i] == 0 || v[i] == '\r' || v[i] == '\n') return 0;
    return 1;
}

static PyObject *f_from_list(PyObject *args, PyObject *py) {
    PyObject *items = ARG(0);
    if (!PyList_CheckExact(items)) FALLBACK();
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *entries = PyList_New(n);
    if (entries == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *low = NULL, *pair = NULL;
        if ((PyList_CheckExact(item) || PyTuple_CheckExact(item)) && PySequence_Fast_GET_SIZE(item) == 2 &&
            plain_value(PySequence_Fast_GET_ITEM(item, 1)) && plain_name(PySequence_Fast_GET_ITEM(item, 0), &low))
            pair = PyTuple_Pack(2, low, PySequence_Fast_GET_ITEM(item, 1));
        Py_XDECREF(low);
        if (pair == NULL) {  /* something to refuse (or no memory): the Python code says what */
            Py_DECREF(entries);
            PyErr_Clear();
            FALLBACK();
        }
        PyList_SET_ITEM(entries, i, pair);
    }
    PyObject *vals[] = {entries, Py_False};
    PyObject *fields = make(FIELDS, vals);
    Py_DECREF(entries);
    return fields == NULL ? NULL : one(s_ok, own(fields));
}

static PyObject *f_new_response(PyObject *args, PyObject *py) {
    PyObject *headers = ARG(0);
    if (!IS(headers, FIELDS)) FALLBACK();
    PyObject *status = PyLong_FromLong(200);
    if (status == NULL) return NULL;
    PyObject *vals[] = {status, headers, Py_None, Py_None};
    PyObject *r = make(ORESP, vals);
    Py_DECREF(status);
    if (r == NULL) return NULL;
    set_slot(headers, FIELDS, FIELDS_IMMUTABLE, Py_True);
    return own(r);
}

static PyObject *f_set_status(PyObject *args, PyObject *py) {
    PyObject *r = ARG(0), *code = ARG(1);
    if (!IS(r, ORESP) || !PyLong_CheckExact(code)) FALLBACK();
    long c = PyLong_AsLong(code);
    if (c == -1 && PyErr_Occurred()) { PyErr_Clear(); FALLBACK(); }
    if (c < 100 || c > 599) return err_none();
    set_slot(r, ORESP, ORESP_STATUS, code);
    return ok_none();
}

/* outgoing-response.body: an OutgoingBody over an OutputStream over a CollectSink (types._take_body) */
static PyObject *f_response_body(PyObject *args, PyObject *py) {
    PyObject *r = ARG(0);
    if (!IS(r, ORESP) || SLOT(r, ORESP, ORESP_SINK) != Py_None) FALLBACK();  /* a streamed response */
    if (SLOT(r, ORESP, ORESP_BODY) != Py_None) return err_none();
    PyObject *chunks = PyList_New(0), *zero = PyLong_FromLong(0);
    PyObject *sink = NULL, *stream = NULL, *body = NULL;
    if (chunks == NULL || zero == NULL) goto done;
    PyObject *sv[] = {chunks, zero, st_max_body, st_response_body, Py_False};
    if ((sink = make(COLLECT, sv)) == NULL) goto done;
    PyObject *ov[] = {sink, zero, Py_False, st_response_body};
    if ((stream = make(OSTREAM, ov)) == NULL) goto done;
    PyObject *bv[] = {stream, Py_False, Py_False, st_response_body};
    if ((body = make(OBODY, bv)) == NULL) goto done;
    set_slot(r, ORESP, ORESP_BODY, body);
done:
    Py_XDECREF(chunks); Py_XDECREF(zero); Py_XDECREF(sink); Py_XDECREF(stream);
    return body == NULL ? NULL : one(s_ok, own(body));
}

static PyObject *f_outparam_set(PyObject *args, PyObject *py) {
    PyObject *param = ARG(0), *result = ARG(1);
    if (!IS(param, OUTPARAM) || SLOT(param, OUTPARAM, OP_SET) != Py_False ||
        SLOT(param, OUTPARAM, OP_EXCHANGE) != Py_None || !PyDict_CheckExact(result) || PyDict_GET_SIZE(result) != 1)
        FALLBACK();
    PyObject *ok = PyDict_GetItemWithError(result, s_ok);  /* borrowed */
    if (ok == NULL) FALLBACK();
    set_slot(param, OUTPARAM, OP_SET, Py_True);
    set_slot(param, OUTPARAM, OP_RESPONSE, ok);
    Py_RETURN_NONE;
}

static PyObject *f_body_write(PyObject *args, PyObject *py) {
    PyObject *body = ARG(0);
    if (!IS(body, OBODY)) FALLBACK();
    if (SLOT(body, OBODY, OBODY_TAKEN) == Py_True) return err_none();
    set_slot(body, OBODY, OBODY_TAKEN, Py_True);
    PyObject *stream = SLOT(body, OBODY, OBODY_STREAM);
    Py_INCREF(stream);
    return one(s_ok, own(stream));
}

/* output-stream.write / blocking-write-and-flush into a collected body (io.OutputStream.write) */
static PyObject *f_write(PyObject *args, PyObject *py) {
    PyObject *s = ARG(0), *data = ARG(1);
    if (!IS(s, OSTREAM) || !PyBytes_CheckExact(data) || !PyLong_CheckExact(SLOT(s, OSTREAM, OS_SIZE))) FALLBACK();
    PyObject *sink = SLOT(s, OSTREAM, OS_SINK);
    if (!IS(sink, COLLECT) || SLOT(sink, COLLECT, CS_DONE) != Py_False || SLOT(s, OSTREAM, OS_CLOSED) != Py_False ||
        !PyLong_CheckExact(SLOT(sink, COLLECT, CS_SIZE)) || !PyLong_CheckExact(SLOT(sink, COLLECT, CS_LIMIT)) ||
        !PyList_CheckExact(SLOT(sink, COLLECT, CS_CHUNKS)))
        FALLBACK();
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    Py_ssize_t size = PyLong_AsSsize_t(SLOT(s, OSTREAM, OS_SIZE));
    Py_ssize_t held = PyLong_AsSsize_t(SLOT(sink, COLLECT, CS_SIZE));
    Py_ssize_t limit = PyLong_AsSsize_t(SLOT(sink, COLLECT, CS_LIMIT));
    if (size < 0 || held < 0 || limit < 0) { PyErr_Clear(); FALLBACK(); }
    if (size + len > st_inline_bytes || held + len > limit) FALLBACK();  /* a reroute, or too large */
    PyObject *new_size = PyLong_FromSsize_t(size + len), *new_held = PyLong_FromSsize_t(held + len);
    if (new_size == NULL || new_held == NULL) { Py_XDECREF(new_size); Py_XDECREF(new_held); return NULL; }
    if (len && PyList_Append(SLOT(sink, COLLECT, CS_CHUNKS), data) < 0) {
        Py_DECREF(new_size); Py_DECREF(new_held);
        return NULL;
    }
    set_slot(s, OSTREAM, OS_SIZE, new_size);
    if (len) set_slot(sink, COLLECT, CS_SIZE, new_held);
    Py_DECREF(new_size); Py_DECREF(new_held);
    return ok_none();
}

static PyObject *f_finish_outgoing(PyObject *args, PyObject *py) {
    PyObject *body = ARG(0);
    if (!IS(body, OBODY)) FALLBACK();
    PyObject *stream = SLOT(body, OBODY, OBODY_STREAM);
    if (!IS(stream, OSTREAM) || !IS(SLOT(stream, OSTREAM, OS_SINK), COLLECT)) FALLBACK();
    set_slot(body, OBODY, OBODY_FINISHED, Py_True);
    set_slot(stream, OSTREAM, OS_CLOSED, Py_True);
    set_slot(SLOT(stream, OSTREAM, OS_SINK), COLLECT, CS_DONE, Py_True);
    return ok_none();
}

/* by (unversioned interface, function): the index make_func takes */
static const struct { const char *interface, *function; fast_f fn; int nargs; } FAST[] = {
    {"wasi:http/types", "[method]incoming-request.method", f_method, 1},
    {"wasi:http/types", "[method]incoming-request.path-with-query", f_path, 1},
    {"wasi:http/types", "[method]incoming-request.consume", f_consume, 1},
    {"wasi:http/types", "[method]incoming-request.scheme", f_scheme, 1},
    {"wasi:http/types", "[method]incoming-request.authority", f_authority, 1},
    {"wasi:clocks/monotonic-clock", "now", f_now, 0},
    {"wasi:io/streams", "[method]input-stream.subscribe", f_subscribe_in, 1},
    {"wasi:io/streams", "[method]output-stream.subscribe", f_subscribe_out, 1},
    {"wasi:io/streams", "[method]output-stream.check-write", f_check_write, 1},
    {"wasi:io/streams", "[method]output-stream.flush", f_flush, 1},
    {"wasi:io/streams", "[method]output-stream.blocking-flush", f_flush, 1},
    {"wasi:http/types", "[method]fields.clone", f_clone, 1},
    {"wasi:http/types", "[method]incoming-body.stream", f_stream, 1},
    {"wasi:io/streams", "[method]input-stream.read", f_read, 2},
    {"wasi:io/streams", "[method]input-stream.blocking-read", f_read, 2},
    {"wasi:http/types", "[static]incoming-body.finish", f_finish_incoming, 1},
    {"wasi:http/types", "[static]fields.from-list", f_from_list, 1},
    {"wasi:http/types", "[constructor]outgoing-response", f_new_response, 1},
    {"wasi:http/types", "[method]outgoing-response.set-status-code", f_set_status, 2},
    {"wasi:http/types", "[method]outgoing-response.body", f_response_body, 1},
    {"wasi:http/types", "[static]response-outparam.set", f_outparam_set, 2},
    {"wasi:http/types", "[method]outgoing-body.write", f_body_write, 1},
    {"wasi:io/streams", "[method]output-stream.write", f_write, 2},
    {"wasi:io/streams", "[method]output-stream.blocking-write-and-flush", f_write, 2},
    {"wasi:http/types", "[static]outgoing-body.finish", f_finish_outgoing, 2},
    {NULL, NULL, NULL, 0},
};

/* the function a call runs: FAST[fast] (falling back to py), or py */
static PyObject *run_impl(int fast, PyObject *py, PyObject *args) {
    if (fast >= 0 && state_ready && PyList_CheckExact(args) && PyList_GET_SIZE(args) == FAST[fast].nargs)
        return FAST[fast].fn(args, py);
    return PyObject_CallOneArg(py, args);
}

static PyObject *py_fast_names(PyObject *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && FAST[i].fn; i++) {
        PyObject *t = Py_BuildValue("(ss)", FAST[i].interface, FAST[i].function);
        if (t == NULL || PyList_Append(out, t) < 0) Py_CLEAR(out);
        Py_XDECREF(t);
    }
    return out;
}

/* init_state({name: (class, [slot names])}, closed, ready, forbidden, max_body, chunk, inline_bytes) */
static PyObject *py_init_state(PyObject *self, PyObject *args) {
    static const char *names[NCLS] = {"IncomingRequest", "Fields", "IncomingBody", "InputStream", "BytesSource",
                                      "OutgoingResponse", "OutgoingBody", "OutputStream", "CollectSink",
                                      "ResponseOutparam", "_DoneTrailers"};
    PyObject *classes, *closed, *ready, *forbidden, *max_body;
    Py_ssize_t chunk, inline_bytes;
    if (!PyArg_ParseTuple(args, "O!OOO!O!nn", &PyDict_Type, &classes, &closed, &ready, &PyFrozenSet_Type, &forbidden,
                          &PyLong_Type, &max_body, &chunk, &inline_bytes))
        return NULL;
    for (int c = 0; c < NCLS; c++) {
        PyObject *entry = PyDict_GetItemString(classes, names[c]);  /* borrowed */
        PyObject *cls, *slots;
        if (entry == NULL || !PyArg_ParseTuple(entry, "O!O!", &PyType_Type, &cls, &PyList_Type, &slots))
            return PyErr_Format(PyExc_TypeError, "init_state: class %s", names[c]);
        if (PyList_GET_SIZE(slots) > MAXSLOTS) return PyErr_Format(PyExc_ValueError, "%s: too many slots", names[c]);
        CLS[c].n = (int)PyList_GET_SIZE(slots);
        for (int i = 0; i < CLS[c].n; i++) {
            PyObject *d = PyObject_GetAttr(cls, PyList_GET_ITEM(slots, i));
            if (d == NULL) return NULL;
            int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                     ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
            if (ok) CLS[c].off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
            Py_DECREF(d);
            if (!ok) return PyErr_Format(PyExc_TypeError, "%s.%U is not a __slots__ slot", names[c],
                                         PyList_GET_ITEM(slots, i));
        }
        Py_INCREF(cls);
        Py_XSETREF(CLS[c].type, (PyTypeObject *)cls);
    }
    Py_INCREF(closed); Py_XSETREF(st_closed, closed);
    Py_INCREF(ready); Py_XSETREF(st_ready, ready);
    Py_INCREF(forbidden); Py_XSETREF(st_forbidden, forbidden);
    Py_INCREF(max_body); Py_XSETREF(st_max_body, max_body);
    if (st_response_body == NULL) st_response_body = PyUnicode_InternFromString("response body");
    st_chunk = chunk;
    st_inline_bytes = inline_bytes;
    state_ready = st_response_body != NULL;
    Py_RETURN_NONE;
}
