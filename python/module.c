/*
 * python/module.c — the module: functions (Value, Array, RawValue, RawArray, copy,
 * synchronized, unlink, the _rebuild_* helpers of pickling), module init.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* The number of module objects made in this process (the `id` in the
 * names of anonymous values); process-wide by nature. */
static unsigned long module_instances;

static inline shval_state *mstate(PyObject *m)
{
	return (shval_state *)PyModule_GetState(m);
}

/* The module state of an instance of (a subtype of) one of our types. */
shval_state *state_of_type(PyTypeObject *tp)
{
	PyObject *m = PyType_GetModuleByDef(tp, &shval_moduledef);
	return m ? mstate(m) : NULL;
}

/* ------------------------------------------------------------------------ */
/* module functions                                                          */

/* Value(typecode_or_type, *args, lock=True, ctx=None) */
static PyObject *m_Value(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	shval_state *st = mstate(m);
	PyObject *lock = Py_True;
	if (nargs < 1) {
		PyErr_SetString(PyExc_TypeError, "Value() missing required argument 'typecode_or_type'");
		return NULL;
	}
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *key = PyTuple_GET_ITEM(kwnames, k);
		if (PyUnicode_CompareWithASCIIString(key, "lock") == 0) {
			lock = args[nargs + k];
		} else if (PyUnicode_CompareWithASCIIString(key, "ctx") != 0) {
			PyErr_Format(PyExc_TypeError, "Value() got an unexpected keyword argument %R", key);
			return NULL;
		}
	}
	enum lockmode lm;
	tinfo probe;
	/* typecode errors first, as multiprocessing (RawValue runs first) */
	if (resolve_type(st, args[0], &probe, 0) < 0 || parse_lock(st, lock, &lm) < 0)
		return NULL;
	return make_value(st, args[0], args + 1, nargs - 1, lm, lock);
}

static PyObject *m_RawValue(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs < 1) {
		PyErr_SetString(PyExc_TypeError, "RawValue() missing required argument 'typecode_or_type'");
		return NULL;
	}
	return make_value(mstate(m), args[0], args + 1, nargs - 1, LK_RAW, NULL);
}

static PyObject *m_Array(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	shval_state *st = mstate(m);
	static const char *const names[] = {"typecode_or_type", "size_or_initializer", "lock", "ctx",
					    NULL};
	PyObject *a[4] = {NULL, NULL, NULL, NULL};
	if (fast_args("Array", args, nargs, kwnames, names, 2, 2, a) < 0)
		return NULL;
	PyObject *t = a[0], *init = a[1], *lock = a[2] ? a[2] : Py_True;
	tinfo probe;
	if (!(PyType_Check(t) && issub(t, st->ct_struct)) && resolve_type(st, t, &probe, 1) < 0)
		return NULL;
	enum lockmode lm;
	if (parse_lock(st, lock, &lm) < 0)
		return NULL;
	return make_array(st, t, init, lm, lock);
}

static PyObject *m_RawArray(PyObject *m, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 2) {
		PyErr_Format(PyExc_TypeError, "RawArray expected 2 arguments, got %zd", nargs);
		return NULL;
	}
	return make_array(mstate(m), args[0], args[1], LK_RAW, NULL);
}

static PyObject *m_copy(PyObject *m, PyObject *obj)
{
	shval_state *st = mstate(m);
	if (is_val(st, obj)) {
		ValObject *v = (ValObject *)obj;
		PyObject *b = read_bytes(v);
		if (!b)
			return NULL;
		tinfo ti;
		memset(&ti, 0, sizeof ti);
		snprintf(ti.type, sizeof ti.type, "%s", v->type);
		ti.ctype = v->ctype;
		PyObject *res = create_anon(st, &ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), LK_RAW, NULL);
		Py_DECREF(b);
		return res;
	}
	/* a ctypes object: its type and bytes */
	PyObject *t = (PyObject *)Py_TYPE(obj);
	tinfo ti;
	if (resolve_type(st, t, &ti, 0) < 0)
		return NULL;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
		return NULL;
	PyObject *res = create_anon(st, &ti, view.buf, (size_t)view.len, LK_RAW, NULL);
	PyBuffer_Release(&view);
	return res;
}

static PyObject *m_synchronized(PyObject *m, PyObject *args, PyObject *kw)
{
	shval_state *st = mstate(m);
	static char *kwlist[] = {"obj", "lock", "ctx", NULL};
	PyObject *obj, *lock = Py_None, *ctx = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:synchronized", kwlist, &obj, &lock, &ctx))
		return NULL;
	if (is_sync(st, obj)) {
		PyErr_SetString(PyExc_AssertionError, "object already synchronized");
		return NULL;
	}
	PyObject *raw;
	if (is_val(st, obj)) {
		raw = obj;
		Py_INCREF(raw);
	} else {
		raw = m_copy(m, obj);
		if (!raw)
			return NULL;
	}
	int truth = PyObject_IsTrue(lock);
	if (truth < 0) {
		Py_DECREF(raw);
		return NULL;
	}
	PyObject *lk;
	if (!truth) {
		PyObject *noargs = PyTuple_New(0);
		lk = noargs ? lock_new_common(st->RLockType, noargs, NULL) : NULL;
		Py_XDECREF(noargs);
	} else if (is_lock(st, lock)) {
		lk = lock;
		Py_INCREF(lk);
	} else {
		PyErr_Format(PyExc_AttributeError,
			     "%R is not a shval.Lock or shval.RLock", lock);
		Py_DECREF(raw);
		return NULL;
	}
	if (!lk) {
		Py_DECREF(raw);
		return NULL;
	}
	ValObject *rv = (ValObject *)raw;
	PyObject *owner = rv->base ? rv->base : raw;
	PyObject *res = val_wrap(pick_type(st, rv->kind, rv->letter, 1), rv->h, rv->seg, owner,
				 rv->ctype, lk, 1);
	Py_DECREF(lk);
	Py_DECREF(raw);
	return res;
}

static PyObject *m_unlink(PyObject *m, PyObject *arg)
{
	const char *name = name_utf8(arg);
	if (!name)
		return NULL;
	int r = shval_seg_unlink(name);
	if (r) {
		set_error(mstate(m), r, "");
		return NULL;
	}
	Py_RETURN_NONE;
}

/* segment reference from a pickle -> Segment (new reference) */
SegObject *resolve_segref(shval_state *st, PyObject *ref)
{
	if (PyUnicode_Check(ref)) {
		/* a Segment of this name still alive (its values hold it):
		 * the same one; the cache is weak (segment.c,
		 * named_cache_forget), so that a process that unpickled a
		 * value of a segment once does not keep the segment mapped,
		 * or its Redis connection open, for the rest of its life */
		PyObject *a = PyDict_GetItemWithError(st->named_cache, ref);
		SegObject *s = a ? PyLong_AsVoidPtr(a) : NULL;
		if (s && s->seg) {
			Py_INCREF(s);
			return s;
		}
		if (PyErr_Occurred())
			return NULL;
		const char *name = name_utf8(ref);
		if (!name)
			return NULL;
		shval_seg *seg;
		int r = shval_seg_open(name, 0, NULL, &seg);
		if (r) {
			set_error(st, r, shval_errmsg(NULL));
			return NULL;
		}
		SegObject *so = seg_wrap(st, seg, 0);
		PyObject *addr = so ? PyLong_FromVoidPtr(so) : NULL;
		if (!addr || PyDict_SetItem(st->named_cache, ref, addr) < 0) {
			Py_XDECREF(addr);
			Py_XDECREF(so);
			return NULL;
		}
		Py_DECREF(addr);
		Py_INCREF(ref);
		so->cache_name = ref;
		return so;
	}
	PyObject *dup;
	unsigned long long dev, ino;
	if (!PyTuple_Check(ref) || PyTuple_GET_SIZE(ref) != 3) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_segment: the reference must be a segment name (str) or "
			     "a (fd holder, st_dev, st_ino) tuple, not %.100s",
			     Py_TYPE(ref)->tp_name);
		return NULL;
	}
	if (!PyArg_ParseTuple(ref, "OKK:segref", &dup, &dev, &ino))
		return NULL;
	if (!PyObject_HasAttrString(dup, "detach")) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_segment: the fd holder must have detach() "
			     "(multiprocessing.reduction.DupFd), not %.100s",
			     Py_TYPE(dup)->tp_name);
		return NULL;
	}
	PyObject *key = devino_key((dev_t)dev, (ino_t)ino);
	if (!key)
		return NULL;
	/* The fd is taken in every case: a passed fd (spawn, forkserver) or
	 * the sender's copy (resource_sharer) is not left behind. */
	PyObject *fdo = PyObject_CallMethod(dup, "detach", NULL);
	if (!fdo) {
		Py_DECREF(key);
		return NULL;
	}
	long fd = PyLong_AsLong(fdo);
	Py_DECREF(fdo);
	if (fd == -1 && PyErr_Occurred()) {
		Py_DECREF(key);
		return NULL;
	}
	SegObject *s = anon_cache_get(st, key); /* weak: see segment.c */
	if (s && s->seg) {
		Py_DECREF(key);
		if (fd != shval_seg_fd(s->seg)) /* never our own */
			close((int)fd);
		return s;
	}
	Py_XDECREF(s);
	if (PyErr_Occurred()) {
		Py_DECREF(key);
		close((int)fd);
		return NULL;
	}
	Py_DECREF(key);
	shval_seg *seg;
	int r = shval_seg_open_fd((int)fd, 0, &seg);
	close((int)fd); /* shval_seg_open_fd keeps its own duplicate */
	if (r) {
		set_error(st, r, shval_errmsg(NULL));
		return NULL;
	}
	SegObject *so = seg_wrap(st, seg, 0);
	if (so && anon_cache_put(so) < 0)
		Py_CLEAR(so);
	return so;
}

static PyObject *m_rebuild_value(PyObject *m, PyObject *args)
{
	shval_state *st = mstate(m);
	PyObject *ref, *ctype, *lock;
	const char *name;
	int sync, extlock;
	if (!PyArg_ParseTuple(args, "OsiOOi", &ref, &name, &sync, &ctype, &lock, &extlock))
		return NULL;
	if (!PyObject_TypeCheck(ref, st->SegmentType) || check_open((SegObject *)ref) < 0) {
		if (!PyErr_Occurred())
			PyErr_SetString(PyExc_TypeError, "_rebuild_value: a Segment is required");
		return NULL;
	}
	/* The lock and ctype are used as such later: anything else would be
	 * read as a LockObject (a crash) or fail far from here (issue 11). */
	if (lock != Py_None && !is_lock(st, lock)) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_value: lock must be a shval Lock or RLock or None, not %.100s",
			     Py_TYPE(lock)->tp_name);
		return NULL;
	}
	if (extlock && lock == Py_None) {
		PyErr_SetString(PyExc_ValueError, "_rebuild_value: extlock needs a lock");
		return NULL;
	}
	if (ctype != Py_None &&
	    (!PyType_Check(ctype) ||
	     !(issub(ctype, st->ct_simple) || issub(ctype, st->ct_array) ||
	       issub(ctype, st->ct_struct) ||
	       issub(ctype, st->ct_union)))) {
		PyErr_Format(PyExc_TypeError,
			     "_rebuild_value: ctype must be a ctypes type or None, not %R", ctype);
		return NULL;
	}
	SegObject *seg = (SegObject *)Py_NewRef(ref);
	shval *h;
	int r = shval_find(seg->seg, name, NULL, &h);
	if (r) {
		seg_error(st, seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	struct shval_info info;
	r = shval_info(h, &info);
	if (r) {
		shval_close(h);
		seg_error(st, seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	size_t tl = strlen(info.type);
	PyTypeObject *tp = pick_type(st, info.kind, tl ? info.type[tl - 1] : 0, sync);
	PyObject *res = val_wrap(tp, h, seg, NULL, ctype == Py_None ? NULL : ctype,
				 lock == Py_None ? NULL : lock, extlock);
	Py_DECREF(seg);
	return res;
}

/* _add_method(type, name, function): put a Python-level method (shval/_aio.py:
 * wait_async, __aenter__, ...) into one of the module's types. */
static PyObject *m_add_method(PyObject *m, PyObject *args)
{
	shval_state *st = mstate(m);
	PyTypeObject *tp;
	PyObject *name, *fn;
	if (!PyArg_ParseTuple(args, "O!UO:_add_method", &PyType_Type, &tp, &name, &fn))
		return NULL;
	PyTypeObject *own[] = {st->SegmentType, st->SharedValueType, st->SynchronizedType,
			       st->SharedArrayType, st->SynchronizedArrayType,
			       st->SynchronizedStringType, st->LockType, st->RLockType};
	size_t i = 0;
	while (i < sizeof own / sizeof own[0] && own[i] != tp)
		i++;
	if (i == sizeof own / sizeof own[0])
		return PyErr_Format(PyExc_TypeError,
				    "_add_method: %R is not one of the module's types", tp);
	/* The types are immutable (Py_TPFLAGS_IMMUTABLETYPE) to Python code;
	 * this is the module completing its own types at import. */
	if (!tp->tp_dict || PyDict_SetItem(tp->tp_dict, name, fn) < 0)
		return NULL;
	PyType_Modified(tp);
	Py_RETURN_NONE;
}

static PyObject *m_rebuild_lock(PyObject *m, PyObject *args)
{
	shval_state *st = mstate(m);
	PyObject *ref;
	const char *name;
	int recursive;
	if (!PyArg_ParseTuple(args, "O!si", st->SegmentType, &ref, &name, &recursive))
		return NULL;
	if (check_open((SegObject *)ref) < 0)
		return NULL;
	SegObject *seg = (SegObject *)Py_NewRef(ref);
	shval *h;
	int r = shval_find(seg->seg, name, NULL, &h);
	if (r) {
		seg_error(st, seg->seg, r);
		Py_DECREF(seg);
		return NULL;
	}
	PyObject *res = lock_wrap(h, seg, recursive, 0);
	Py_DECREF(seg);
	return res;
}

/* ------------------------------------------------------------------------ */
/* module                                                                    */

static PyMethodDef module_methods[] = {
	{"Value", (PyCFunction)(void (*)(void))m_Value, METH_FASTCALL | METH_KEYWORDS,
	 "Value(typecode_or_type, *args, lock=True, ctx=None)\n--\n\n"
	 "A shared value with a lock (lock=False: a raw value), as multiprocessing.Value."},
	{"Array", (PyCFunction)(void (*)(void))m_Array, METH_FASTCALL | METH_KEYWORDS,
	 "Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None)\n--\n\n"
	 "A shared array with a lock, as multiprocessing.Array."},
	{"RawValue", (PyCFunction)(void (*)(void))m_RawValue, METH_FASTCALL,
	 "RawValue(typecode_or_type, *args)\n--\n\n"
	 "A shared value without a lock (scalars are atomic), as multiprocessing.RawValue."},
	{"RawArray", (PyCFunction)(void (*)(void))m_RawArray, METH_FASTCALL,
	 "RawArray(typecode_or_type, size_or_initializer, /)\n--\n\n"
	 "A shared array without a lock, as multiprocessing.RawArray."},
	{"copy", (PyCFunction)m_copy, METH_O,
	 "copy(obj, /)\n--\n\nA new raw shared object with obj's type and contents."},
	{"synchronized", (PyCFunction)(void (*)(void))m_synchronized, METH_VARARGS | METH_KEYWORDS,
	 "synchronized(obj, lock=None, ctx=None)\n--\n\n"
	 "obj (a raw shared value, or a ctypes object: copied) behind a shval lock."},
	{"unlink", (PyCFunction)m_unlink, METH_O,
	 "unlink(name, /)\n--\n\nRemove a named segment."},
	{"_rebuild_value", (PyCFunction)m_rebuild_value, METH_VARARGS,
	 "_rebuild_value(segment, name, sync, ctype, lock, extlock, /)\n--\n\n"
	 "Unpickling of a value (internal)."},
	{"_rebuild_lock", (PyCFunction)m_rebuild_lock, METH_VARARGS,
	 "_rebuild_lock(segment, name, recursive, /)\n--\n\nUnpickling of a lock (internal)."},
	{"_add_method", (PyCFunction)m_add_method, METH_VARARGS,
	 "_add_method(type, name, function, /)\n--\n\nAdd a Python-level method to a type (internal)."},
	{"_rebuild_segment", (PyCFunction)m_rebuild_segment, METH_O,
	 "_rebuild_segment(ref, /)\n--\n\nUnpickling of a segment (internal)."},
	{NULL, NULL, 0, NULL}
};

static int get_ctypes_attr(PyObject *ct, const char *name, PyObject **out)
{
	*out = PyObject_GetAttrString(ct, name);
	if (!*out)
		PyErr_Clear();
	return 0;
}

static PyTypeObject *add_type(PyObject *m, PyType_Spec *spec, PyTypeObject *base)
{
	PyObject *tp = PyType_FromModuleAndSpec(m, spec, (PyObject *)base);
	if (!tp)
		return NULL;
	if (PyModule_AddType(m, (PyTypeObject *)tp) < 0) {
		Py_DECREF(tp);
		return NULL;
	}
	return (PyTypeObject *)tp; /* the state's reference */
}

static int shval_exec(PyObject *m)
{
	shval_state *st = mstate(m);
	st->id = ++module_instances;
	if (!(st->SegmentType = add_type(m, &seg_spec, NULL)) ||
	    !(st->SharedValueType = add_type(m, &val_spec, NULL)) ||
	    !(st->SynchronizedType = add_type(m, &sync_spec, st->SharedValueType)) ||
	    !(st->SharedArrayType = add_type(m, &arr_spec, NULL)) ||
	    !(st->SynchronizedArrayType = add_type(m, &sync_arr_spec, st->SharedArrayType)) ||
	    !(st->SynchronizedStringType = add_type(m, &sync_str_spec, st->SynchronizedArrayType)) ||
	    !(st->LockType = add_type(m, &lock_spec, NULL)) ||
	    !(st->RLockType = add_type(m, &rlock_spec, NULL)))
		return -1;
	st->Error = PyErr_NewExceptionWithDoc("shval.Error",
		"A libshval error without a more specific Python exception.",
		PyExc_RuntimeError, NULL);
	if (!st->Error || PyModule_AddObjectRef(m, "Error", st->Error) < 0)
		return -1;
	st->OwnerDiedWarning = PyErr_NewExceptionWithDoc("shval.OwnerDiedWarning",
		"A process died holding a value's lock; the value was rolled back "
		"to its last committed state and the lock was taken over.",
		PyExc_RuntimeWarning, NULL);
	if (!st->OwnerDiedWarning ||
	    PyModule_AddObjectRef(m, "OwnerDiedWarning", st->OwnerDiedWarning) < 0)
		return -1;
	st->anon_cache = PyDict_New();
	st->named_cache = PyDict_New();
	if (!st->anon_cache || !st->named_cache)
		return -1;
	PyObject *ct = PyImport_ImportModule("ctypes");
	if (!ct)
		return -1;
	get_ctypes_attr(ct, "_SimpleCData", &st->ct_simple);
	get_ctypes_attr(ct, "Array", &st->ct_array);
	get_ctypes_attr(ct, "Structure", &st->ct_struct);
	get_ctypes_attr(ct, "Union", &st->ct_union);
	get_ctypes_attr(ct, "_Pointer", &st->ct_pointer);
	get_ctypes_attr(ct, "_CFuncPtr", &st->ct_funcptr);
	Py_DECREF(ct);
	for (int i = 0; i < SMALL_INT_N; i++)
		if (!(st->small_ints[i] = PyLong_FromLong(SMALL_INT_MIN + i)))
			return -1;
	if (!(st->str_value = PyUnicode_InternFromString("value")))
		return -1;
	fork_gen_init();
	if (PyModule_AddStringConstant(m, "library_version", shval_version_string()) < 0 ||
	    PyModule_AddIntConstant(m, "HAVE_SHARED_LOCKS", 1) < 0)
		return -1;
	return 0;
}

static int shval_traverse(PyObject *m, visitproc visit, void *arg)
{
	shval_state *st = mstate(m);
	Py_VISIT(st->Error);
	Py_VISIT(st->OwnerDiedWarning);
	Py_VISIT(st->anon_cache);
	Py_VISIT(st->cur_pool);
	Py_VISIT(st->named_cache);
	Py_VISIT(st->ct_simple);
	Py_VISIT(st->ct_array);
	Py_VISIT(st->ct_struct);
	Py_VISIT(st->ct_union);
	Py_VISIT(st->ct_pointer);
	Py_VISIT(st->ct_funcptr);
	Py_VISIT(st->SegmentType);
	Py_VISIT(st->SharedValueType);
	Py_VISIT(st->SynchronizedType);
	Py_VISIT(st->SharedArrayType);
	Py_VISIT(st->SynchronizedArrayType);
	Py_VISIT(st->SynchronizedStringType);
	Py_VISIT(st->LockType);
	Py_VISIT(st->RLockType);
	for (int i = 0; i < SMALL_INT_N; i++)
		Py_VISIT(st->small_ints[i]);
	Py_VISIT(st->str_value);
	return 0;
}

static int shval_clear(PyObject *m)
{
	shval_state *st = mstate(m);
	Py_CLEAR(st->Error);
	Py_CLEAR(st->OwnerDiedWarning);
	Py_CLEAR(st->cur_pool); /* before anon_cache: its dealloc forgets it */
	Py_CLEAR(st->anon_cache);
	Py_CLEAR(st->named_cache);
	Py_CLEAR(st->ct_simple);
	Py_CLEAR(st->ct_array);
	Py_CLEAR(st->ct_struct);
	Py_CLEAR(st->ct_union);
	Py_CLEAR(st->ct_pointer);
	Py_CLEAR(st->ct_funcptr);
	Py_CLEAR(st->SegmentType);
	Py_CLEAR(st->SharedValueType);
	Py_CLEAR(st->SynchronizedType);
	Py_CLEAR(st->SharedArrayType);
	Py_CLEAR(st->SynchronizedArrayType);
	Py_CLEAR(st->SynchronizedStringType);
	Py_CLEAR(st->LockType);
	Py_CLEAR(st->RLockType);
	for (int i = 0; i < SMALL_INT_N; i++)
		Py_CLEAR(st->small_ints[i]);
	Py_CLEAR(st->str_value);
	return 0;
}

static void shval_free(void *m)
{
	(void)shval_clear((PyObject *)m);
}

static PyModuleDef_Slot shval_slots[] = {
	{Py_mod_exec, shval_exec},
	{0, NULL}
};

PyModuleDef shval_moduledef = {
	PyModuleDef_HEAD_INIT,
	.m_name = "shval._shval",
	.m_doc = "CPython binding of libshval: typed values shared between processes.",
	.m_size = sizeof(shval_state),
	.m_methods = module_methods,
	.m_slots = shval_slots,
	.m_traverse = shval_traverse,
	.m_clear = shval_clear,
	.m_free = shval_free,
};

/* Multi-phase initialisation (PEP 489): the module object and its state
 * are made by the import machinery, shval_exec() fills them. */
PyMODINIT_FUNC PyInit__shval(void)
{
	return PyModuleDef_Init(&shval_moduledef);
}
