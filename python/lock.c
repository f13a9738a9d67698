/*
 * python/lock.c — shval.Lock and shval.RLock: a lock entry, or a value's own lock.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

#include <pthread.h>

/* The fork generation: a LockObject's holder record is only believed in
 * the process that made it (a child does not hold its parent's locks). */
unsigned long fork_gen;

/* The fork count (shval_py.h): bumped before every fork, so that both the
 * parent and the child see that a value created before it may have
 * escaped (PRIVATE_OWNED, create.c).  Bumped atomically: the prepare
 * handler runs in whatever thread forks, which need not hold the GIL. */
unsigned long fork_count;

static void fork_gen_bump(void)
{
	fork_gen++;
}

static void fork_count_bump(void)
{
	__atomic_fetch_add(&fork_count, 1, __ATOMIC_RELAXED);
}

/* Registers both handlers, once per process (module exec calls it). */
void fork_gen_init(void)
{
	static int done;
	if (!done) {
		done = 1;
		(void)pthread_atfork(fork_count_bump, NULL, fork_gen_bump);
	}
}

void note_acquired(LockObject *l)
{
	unsigned long t = PyThread_get_thread_ident();
	if (l->depth && l->holder_gen == fork_gen && l->holder == t) {
		l->depth++;
	} else {
		l->holder = t;
		l->holder_gen = fork_gen;
		l->depth = 1;
	}
}

void note_released(LockObject *l)
{
	if (held_here(l))
		l->depth--;
}

/* ------------------------------------------------------------------------ */
/* Lock / RLock                                                              */

int is_lock(shval_state *st, PyObject *o)
{
	return PyObject_TypeCheck(o, st->LockType) || PyObject_TypeCheck(o, st->RLockType);
}

PyObject *lock_wrap(shval *h, SegObject *seg, int recursive,
			   int own_value_lock)
{
	shval_state *st = seg->st;
	PyTypeObject *tp = recursive ? st->RLockType : st->LockType;
	LockObject *l = (LockObject *)tp->tp_alloc(tp, 0);
	if (!l) {
		shval_close(h);
		return NULL;
	}
	l->st = st;
	l->recursive = recursive;
	l->h = h;
	Py_INCREF(seg);
	l->seg = seg;
	l->owner = 0;
	l->owner_pid = 0;
	l->shared_out = 0;
	l->fork_mark = 0;
	l->own_value_lock = own_value_lock;
	l->holder = 0;
	l->holder_gen = 0;
	l->depth = 0;
	struct shval_info info;
	l->name[0] = '\0';
	if (shval_info(h, &info) == 0)
		snprintf(l->name, sizeof l->name, "%s", info.name);
	return (PyObject *)l;
}

static void lock_dealloc(LockObject *l)
{
	PyTypeObject *tp = Py_TYPE(l);
	PyObject_GC_UnTrack(l);
	shval_close(l->h);
	if (PRIVATE_OWNED(l))
		(void)shval_remove(l->seg->seg, l->name); /* EMISUSE if in use */
	Py_XDECREF(l->seg);
	tp->tp_free(l);
	Py_DECREF(tp);
}

/* No tp_clear: a lock refers to its segment (which refers to nothing) and
 * to its type, so it is never the object that has to break a cycle; the
 * segment stays until dealloc, which needs it to remove the entry. */
static int lock_traverse(LockObject *l, visitproc visit, void *arg)
{
	Py_VISIT(Py_TYPE(l));
	Py_VISIT(l->seg);
	return 0;
}

PyObject *lock_new_common(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"ctx", NULL};
	PyObject *ctx = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|O:Lock", kwlist, &ctx))
		return NULL;
	shval_state *st = state_of_type(tp);
	if (!st)
		return NULL;
	shval *h;
	SegObject *seg;
	int recursive = PyType_IsSubtype(tp, st->RLockType);
	if (anon_lock_create(st, recursive, &h, &seg) < 0)
		return NULL;
	LockObject *l = (LockObject *)lock_wrap(h, seg, recursive, 0);
	Py_DECREF(seg); /* l holds it */
	if (!l)
		return NULL;
	l->owner = 1;
	l->owner_pid = getpid();
	l->fork_mark = fork_count;
	return (PyObject *)l;
}

/* shval_unlock(); on a Redis segment (remote) a round trip, the commit of
 * the section: with the GIL released, as every network wait here */
int unlock_handle(shval *h, int remote)
{
	int r;
	if (!remote)
		return shval_unlock(h);
	Py_BEGIN_ALLOW_THREADS
	r = shval_unlock(h);
	Py_END_ALLOW_THREADS
	return r;
}

/* 1 acquired, 0 not (timeout / non-blocking), -1 error;
 * nested_ok: 2 if this thread already holds a non-recursive lock (the
 * library's own calls nest inside it); remote: a Redis segment's lock,
 * whose trylock is a round trip (made with the GIL released) */
int acquire_handle2(shval_state *st, shval *h, int block, int64_t tmo, int nested_ok,
		    int remote)
{
	int r;
	if (!remote)
		r = shval_trylock(h);
	else { /* a round trip (the lease) */
		Py_BEGIN_ALLOW_THREADS
		r = shval_trylock(h);
		Py_END_ALLOW_THREADS
	}
	if (r == -EBUSY) {
		if (!block)
			return 0;
		int64_t deadline = tmo < 0 ? -1 : now_ns() + tmo;
		for (;;) {
			int64_t slice = LOCK_SLICE_NS;
			if (deadline >= 0) {
				int64_t left = deadline - now_ns();
				if (left <= 0)
					return 0;
				if (left < slice)
					slice = left;
			}
			Py_BEGIN_ALLOW_THREADS
			r = shval_timedlock(h, slice);
			Py_END_ALLOW_THREADS
			if (r == SHVAL_EMISUSE && nested_ok)
				return 2;
			if (r == SHVAL_EMISUSE && deadline >= 0) {
				/* a non-recursive lock this thread holds: as
				 * multiprocessing, time out (a blocking acquire
				 * raises instead of hanging forever) */
				struct timespec ts = {0, (long)slice};
				Py_BEGIN_ALLOW_THREADS
				nanosleep(&ts, NULL);
				Py_END_ALLOW_THREADS
				r = -ETIMEDOUT;
			}
			if (r != -ETIMEDOUT)
				break;
			if (PyErr_CheckSignals() < 0)
				return -1;
		}
	}
	if (r == SHVAL_EOWNERDEAD) {
		if (PyErr_WarnEx(st->OwnerDiedWarning,
				 "the previous owner of a shval lock died holding "
				 "it; the value was rolled back to its last "
				 "committed state and the lock is now held",
				 1) < 0) {
			shval_unlock(h);
			return -1;
		}
		return 1;
	}
	if (r) {
		seg_error(st, shval_segment(h), r);
		return -1;
	}
	return 1;
}

int acquire_handle(shval_state *st, shval *h, int block, int64_t tmo, int remote)
{
	return acquire_handle2(st, h, block, tmo, 0, remote);
}

PyObject *lock_acquire(LockObject *l, PyObject *const *args, Py_ssize_t nargs,
			PyObject *kwnames)
{
	int block = 1;
	int64_t t = -1;
	if (nargs || kwnames) {
		static const char *const names[] = {"block", "timeout", NULL};
		PyObject *a[2] = {NULL, NULL};
		if (fast_args("acquire", args, nargs, kwnames, names, 2, 0, a) < 0)
			return NULL;
		if (a[0] && (block = PyObject_IsTrue(a[0])) < 0)
			return NULL;
		t = timeout_ns(a[1]);
	}
	if (t == -2)
		return NULL;
	int r = acquire_handle(l->st, l->h, block, t, l->seg->remote);
	if (r < 0)
		return NULL;
	if (r)
		note_acquired(l);
	return PyBool_FromLong(r);
}

static int release_handle(shval_state *st, shval *h, int recursive, int remote)
{
	int r = unlock_handle(h, remote);
	if (r == SHVAL_ENOTOWNER) {
		if (recursive)
			PyErr_SetString(PyExc_AssertionError,
					"attempt to release recursive lock not owned by thread");
		else /* issue 12 item 11: a robust mutex has an owner */
			PyErr_SetString(PyExc_ValueError,
					"release of a shval.Lock not held by this thread: "
					"a shval lock is owned by the thread that acquired "
					"it (a robust mutex, so that its owner's death can "
					"be recovered) and only that thread can release it; "
					"for a lock released by another thread or process "
					"use shval.Semaphore(1)");
		return -1;
	}
	if (r) {
		seg_error(st, shval_segment(h), r);
		return -1;
	}
	return 0;
}

PyObject *lock_release(LockObject *l, PyObject *Py_UNUSED(a))
{
	if (release_handle(l->st, l->h, l->recursive, l->seg->remote) < 0)
		return NULL;
	note_released(l);
	Py_RETURN_NONE;
}

PyObject *lock_enter(LockObject *l, PyObject *Py_UNUSED(a))
{
	int r = acquire_handle(l->st, l->h, 1, -1, l->seg->remote);
	if (r < 0)
		return NULL;
	note_acquired(l);
	return PyBool_FromLong(r);
}

static PyObject *lock_reduce(LockObject *l, PyObject *Py_UNUSED(a))
{
	if (check_open(l->seg) < 0)
		return NULL;
	PyObject *ref = Py_NewRef((PyObject *)l->seg);
	l->shared_out = 1;
	PyObject *mod = PyImport_ImportModule("shval._shval");
	if (!mod) {
		Py_DECREF(ref);
		return NULL;
	}
	PyObject *fn = PyObject_GetAttrString(mod, "_rebuild_lock");
	Py_DECREF(mod);
	if (!fn) {
		Py_DECREF(ref);
		return NULL;
	}
	return Py_BuildValue("(N(Nsi))", fn, ref, l->name, l->recursive);
}

static PyObject *lock_repr(LockObject *l)
{
	return PyUnicode_FromFormat("<shval.%s %s>", l->recursive ? "RLock" : "Lock",
				    l->name);
}

/* __exit__(*exc_info): METH_FASTCALL, no argument tuple on every `with` */
static PyObject *lock_exit_fast(LockObject *l, PyObject *const *Py_UNUSED(args),
				Py_ssize_t Py_UNUSED(n))
{
	return lock_release(l, NULL);
}

static PyMethodDef lock_methods[] = {
	{"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
	 "acquire($self, /, block=True, timeout=None)\n--\n\n"
	 "Take the lock; True when taken, False after timeout seconds or at once\n"
	 "when block is false.  A dead owner's lock is taken over with\n"
	 "OwnerDiedWarning."},
	{"release", (PyCFunction)lock_release, METH_NOARGS,
	 "release($self, /)\n--\n\nRelease the lock (ValueError / AssertionError if not held)."},
	{"__enter__", (PyCFunction)lock_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nacquire() for `with`."},
	{"__exit__", (PyCFunction)(void (*)(void))lock_exit_fast, METH_FASTCALL,
	 "__exit__($self, /, *exc_info)\n--\n\nrelease() for `with`."},
	{"__reduce__", (PyCFunction)lock_reduce, METH_NOARGS,
	 "__reduce__($self, /)\n--\n\nPickle by reference (the segment and the lock's name)."},
	{NULL, NULL, 0, NULL}
};

static PyType_Slot lock_slots[] = {
	{Py_tp_dealloc, lock_dealloc},
	{Py_tp_traverse, lock_traverse},
	{Py_tp_repr, lock_repr},
	{Py_tp_doc, "Lock(ctx=None)\n--\n\nA non-recursive lock shared between processes."},
	{Py_tp_methods, lock_methods},
	{Py_tp_new, lock_new_common},
	{0, NULL}
};

PyType_Spec lock_spec = {
	.name = "shval.Lock",
	.basicsize = sizeof(LockObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = lock_slots,
};

static PyType_Slot rlock_slots[] = {
	{Py_tp_dealloc, lock_dealloc},
	{Py_tp_traverse, lock_traverse},
	{Py_tp_repr, lock_repr},
	{Py_tp_doc, "RLock(ctx=None)\n--\n\nA recursive lock shared between processes."},
	{Py_tp_methods, lock_methods},
	{Py_tp_new, lock_new_common},
	{0, NULL}
};

PyType_Spec rlock_spec = {
	.name = "shval.RLock",
	.basicsize = sizeof(LockObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = rlock_slots,
};
