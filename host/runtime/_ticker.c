/* The epoch ticker as a C thread (engine.py's _NativeTicker): no Python, no GIL.
 *
 * Built and loaded by native_build.py. The same counting as engine.py's _EpochTicker: ticks are
 * made (wasmtime_engine_increment_epoch, every `period`) while the count is below the target;
 * need() raises the target (a deadline armed), enter()/leave() count the calls running, and when
 * none runs the ticks owed only to deadlines armed inside calls are dropped. The thread waits on a
 * condition variable while nothing is owed. What the Python thread cost per wake-up under load
 * was mostly taking the GIL from the event loop's thread; this one never takes it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef void (*increment_f)(void *engine);

typedef struct {
    PyObject_HEAD
    PyObject *engine_obj;      /* the wasmtime.Engine, kept alive while the thread runs */
    void *engine;
    increment_f increment;
    long long period_ns;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t count, target, unscoped;
    long running;
    int idle, stop;
} Ticker;

static void *run(void *arg) {
    Ticker *t = arg;
    pthread_mutex_lock(&t->mu);
    while (!t->stop) {
        if (t->count >= t->target) {
            t->idle = 1;
            pthread_cond_wait(&t->cv, &t->mu);
            t->idle = 0;
            continue;
        }
        struct timespec due;
        clock_gettime(CLOCK_MONOTONIC, &due);
        long long ns = due.tv_nsec + t->period_ns;
        due.tv_sec += (time_t)(ns / 1000000000LL);
        due.tv_nsec = (long)(ns % 1000000000LL);
        while (!t->stop && pthread_cond_timedwait(&t->cv, &t->mu, &due) != ETIMEDOUT) {}
        if (t->stop) break;
        pthread_mutex_unlock(&t->mu);
        t->increment(t->engine);
        pthread_mutex_lock(&t->mu);
        t->count++;
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static void halt(Ticker *t) {
    if (!t->started) return;
    pthread_mutex_lock(&t->mu);
    t->stop = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->mu);
    Py_BEGIN_ALLOW_THREADS
    pthread_join(t->thread, NULL);
    Py_END_ALLOW_THREADS
    t->started = 0;
}

static PyObject *ticker_new(PyTypeObject *cls, PyObject *args, PyObject *kw) {
    PyObject *engine_obj, *engine_addr, *increment_addr;
    long long period_ns;
    if (!PyArg_ParseTuple(args, "OOOL", &engine_obj, &engine_addr, &increment_addr, &period_ns)) return NULL;
    void *engine = PyLong_AsVoidPtr(engine_addr);
    void *increment = PyLong_AsVoidPtr(increment_addr);
    if (engine == NULL || increment == NULL || period_ns <= 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "an engine, its increment function and a period");
        return NULL;
    }
    Ticker *t = (Ticker *)cls->tp_alloc(cls, 0);
    if (t == NULL) return NULL;
    t->engine_obj = engine_obj;
    Py_INCREF(engine_obj);
    t->engine = engine;
    t->increment = (increment_f)increment;
    t->period_ns = period_ns;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&t->thread, NULL, run, t) != 0) {
        Py_DECREF(t);
        return PyErr_Format(PyExc_RuntimeError, "cannot start the epoch ticker thread");
    }
    t->started = 1;
    return (PyObject *)t;
}

static void ticker_dealloc(Ticker *t) {
    halt(t);
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    Py_XDECREF(t->engine_obj);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* need(ticks, scoped): a deadline `ticks` from now was armed (inside a call on its thread: scoped) */
static PyObject *ticker_need(Ticker *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "need(ticks, scoped)"); return NULL; }
    unsigned long long ticks = PyLong_AsUnsignedLongLong(args[0]);
    if (ticks == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int scoped = PyObject_IsTrue(args[1]);
    pthread_mutex_lock(&t->mu);
    uint64_t target = t->count + ticks + 1;
    if (!scoped && target > t->unscoped) t->unscoped = target;
    if (target > t->target) {
        t->target = target;
        if (t->idle) pthread_cond_signal(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    Py_RETURN_NONE;
}

static PyObject *ticker_enter(Ticker *t, PyObject *unused) {
    pthread_mutex_lock(&t->mu);
    t->running++;
    pthread_mutex_unlock(&t->mu);
    Py_RETURN_NONE;
}

static PyObject *ticker_leave(Ticker *t, PyObject *unused) {
    pthread_mutex_lock(&t->mu);
    t->running--;
    if (t->running <= 0 && t->target > t->unscoped) t->target = t->count > t->unscoped ? t->count : t->unscoped;
    pthread_mutex_unlock(&t->mu);
    Py_RETURN_NONE;
}

static PyObject *ticker_stop(Ticker *t, PyObject *unused) {
    halt(t);
    Py_RETURN_NONE;
}

/* (count, target, asleep): for tests */
static PyObject *ticker_state(Ticker *t, PyObject *unused) {
    pthread_mutex_lock(&t->mu);
    unsigned long long count = t->count, target = t->target;
    int asleep = t->idle && t->count >= t->target;
    pthread_mutex_unlock(&t->mu);
    return Py_BuildValue("(KKO)", count, target, asleep ? Py_True : Py_False);
}

static PyMethodDef ticker_methods[] = {
    {"need", (PyCFunction)(void (*)(void))ticker_need, METH_FASTCALL, "need(ticks, scoped)"},
    {"enter", (PyCFunction)ticker_enter, METH_NOARGS, "a call starts"},
    {"leave", (PyCFunction)ticker_leave, METH_NOARGS, "a call ended"},
    {"stop", (PyCFunction)ticker_stop, METH_NOARGS, "stop the thread (joined)"},
    {"state", (PyCFunction)ticker_state, METH_NOARGS, "(count, target, asleep)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TickerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_trellis_ticker.Ticker",
    .tp_basicsize = sizeof(Ticker),
    .tp_dealloc = (destructor)ticker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ticker(engine, engine_address, increment_address, period_ns): the epoch ticker thread",
    .tp_new = ticker_new,
    .tp_methods = ticker_methods,
};


/* The tick callback of a store whose calls keep the GIL (gil_hold.py): wasmtime calls it
 * (wasmtime_store_epoch_deadline_callback) on the calling thread each time the store's epoch
 * deadline, one tick away, is reached. In C, so a tick costs no Python frame and no ctypes
 * callback. It traps ("wasm trap: interrupt", a timeout for classify_failure) once the call's own
 * deadline (`end`, in the ticker's count) has passed or when the store is not holding (end 0:
 * then this is the store's ordinary deadline). Otherwise, holding the GIL, it hands the GIL over
 * only once the thread has run `slice_ns` of CPU since the call began or since its last
 * hand-over: PyEval_SaveThread/RestoreThread, which switches to another thread only if one
 * waits (at once if one asked for a switch, having waited the switch interval). A guest that
 * reaches its next import within its slice keeps the GIL until then; one that spins hands it
 * over about every tick. */
typedef void *(*error_new_f)(const char *message);

typedef struct {
    PyObject_HEAD
    Ticker *ticker;           /* the engine's ticker (a reference), counting the ticks */
    error_new_f error_new;    /* wasmtime_error_new */
    uint64_t end;             /* the call's deadline in ticks; 0: not holding */
    long long slice_ns;       /* thread CPU between hand-overs (<= 0: at every tick) */
    long long mark_ns;        /* thread CPU at the call's first tick or the last hand-over; -1: unset */
    unsigned long long ticks, handovers;
} Hold;

static unsigned long long all_ticks, all_handovers;

static long long thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *on_tick(void *context, void *env, uint64_t *delta, uint8_t *kind) {
    (void)context;
    Hold *h = env;
    uint64_t count = __atomic_load_n(&h->ticker->count, __ATOMIC_RELAXED);
    if (h->end == 0 || count >= h->end) return h->error_new("wasm trap: interrupt");
    h->ticks++;
    __atomic_fetch_add(&all_ticks, 1, __ATOMIC_RELAXED);
    if (PyGILState_Check()) {
        long long now = h->slice_ns > 0 ? thread_cpu_ns() : 0;
        if (h->slice_ns > 0 && h->mark_ns < 0) {
            h->mark_ns = now;  /* the first tick of this call */
        } else if (h->slice_ns <= 0 || now - h->mark_ns >= h->slice_ns) {
            PyThreadState *ts = PyEval_SaveThread();
            PyEval_RestoreThread(ts);
            h->handovers++;
            __atomic_fetch_add(&all_handovers, 1, __ATOMIC_RELAXED);
            h->mark_ns = h->slice_ns > 0 ? thread_cpu_ns() : 0;
        }
    }
    *delta = 1;
    *kind = 0;  /* WASMTIME_UPDATE_DEADLINE_CONTINUE */
    return NULL;
}

static PyObject *hold_new(PyTypeObject *cls, PyObject *args, PyObject *kw) {
    PyObject *error_new;
    if (!PyArg_ParseTuple(args, "O", &error_new)) return NULL;
    void *fn = PyLong_AsVoidPtr(error_new);
    if (fn == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "the address of wasmtime_error_new");
        return NULL;
    }
    Hold *h = (Hold *)cls->tp_alloc(cls, 0);
    if (h == NULL) return NULL;
    h->error_new = (error_new_f)fn;
    h->mark_ns = -1;
    return (PyObject *)h;
}

static void hold_dealloc(Hold *h) {
    Py_XDECREF((PyObject *)h->ticker);
    Py_TYPE(h)->tp_free((PyObject *)h);
}

/* arm(ticker, end, slice_ns): the next call holds the GIL until tick `end` (0: it does not hold) */
static PyObject *hold_arm(Hold *h, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &TickerType)) {
        PyErr_SetString(PyExc_TypeError, "arm(ticker, end, slice_ns)");
        return NULL;
    }
    unsigned long long end = PyLong_AsUnsignedLongLong(args[1]);
    if (end == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    long long slice = PyLong_AsLongLong(args[2]);
    if (slice == -1 && PyErr_Occurred()) return NULL;
    if ((PyObject *)h->ticker != args[0]) {
        Py_INCREF(args[0]);
        Py_XSETREF(h->ticker, (Ticker *)args[0]);
    }
    h->end = end;
    h->slice_ns = slice;
    h->mark_ns = -1;
    Py_RETURN_NONE;
}

static PyObject *hold_disarm(Hold *h, PyObject *unused) {
    h->end = 0;
    Py_RETURN_NONE;
}

static PyObject *hold_holding(Hold *h, PyObject *unused) {
    return PyBool_FromLong(h->end != 0 && h->ticker != NULL);
}

/* (ticks, handovers) of this store */
static PyObject *hold_stats(Hold *h, PyObject *unused) {
    return Py_BuildValue("(KK)", h->ticks, h->handovers);
}

static PyObject *hold_address(Hold *h, PyObject *unused) {
    return PyLong_FromVoidPtr(h);
}

static PyMethodDef hold_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))hold_arm, METH_FASTCALL, "arm(ticker, end, slice_ns)"},
    {"disarm", (PyCFunction)hold_disarm, METH_NOARGS, "calls do not hold: a tick is the deadline"},
    {"holding", (PyCFunction)hold_holding, METH_NOARGS, "whether the next call holds the GIL"},
    {"stats", (PyCFunction)hold_stats, METH_NOARGS, "(ticks, handovers)"},
    {"address", (PyCFunction)hold_address, METH_NOARGS, "the env pointer for the callback"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HoldType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "_trellis_ticker.Hold",
    .tp_basicsize = sizeof(Hold),
    .tp_dealloc = (destructor)hold_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Hold(error_new_address): a holding store's state for the C tick callback",
    .tp_new = hold_new,
    .tp_methods = hold_methods,
};

static PyObject *mod_callback(PyObject *m, PyObject *unused) {
    return PyLong_FromVoidPtr((void *)on_tick);
}

/* (ticks, handovers) of every holding store of the process */
static PyObject *mod_counters(PyObject *m, PyObject *unused) {
    return Py_BuildValue("(KK)", __atomic_load_n(&all_ticks, __ATOMIC_RELAXED),
                         __atomic_load_n(&all_handovers, __ATOMIC_RELAXED));
}

static PyMethodDef module_methods[] = {
    {"callback", (PyCFunction)mod_callback, METH_NOARGS, "the address of the tick callback"},
    {"counters", (PyCFunction)mod_counters, METH_NOARGS, "(ticks, handovers) in this process"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trellis_ticker", NULL, -1, module_methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__trellis_ticker(void) {
    if (PyType_Ready(&TickerType) < 0 || PyType_Ready(&HoldType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&TickerType);
    if (PyModule_AddObject(m, "Ticker", (PyObject *)&TickerType) < 0) { Py_DECREF(m); return NULL; }
    Py_INCREF(&HoldType);
    if (PyModule_AddObject(m, "Hold", (PyObject *)&HoldType) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
