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

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_trellis_ticker", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__trellis_ticker(void) {
    if (PyType_Ready(&TickerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&TickerType);
    if (PyModule_AddObject(m, "Ticker", (PyObject *)&TickerType) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
