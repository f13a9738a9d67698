/*
 * python/create.c — creation of values in the anonymous segment (Value, Array,
 * RawValue, RawArray, copy).
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ------------------------------------------------------------------------ */
/* creation                                                                  */

/* lock argument as multiprocessing.Value/Array treat it */
int parse_lock(shval_state *st, PyObject *lock, enum lockmode *m)
{
	if (lock == Py_False) {
		*m = LK_RAW;
		return 0;
	}
	if (lock == Py_True || lock == Py_None) {
		*m = LK_OWN;
		return 0;
	}
	if (PyLong_CheckExact(lock) && PyLong_AsLong(lock) == 1) {
		*m = LK_OWN;
		return 0;
	}
	PyErr_Clear();
	if (is_lock(st, lock)) {
		*m = LK_SHARED;
		return 0;
	}
	if (!PyObject_HasAttrString(lock, "acquire"))
		PyErr_Format(PyExc_AttributeError, "%R has no method 'acquire'", lock);
	else
		PyErr_Format(PyExc_AttributeError,
			     "%R is not a shval.Lock or shval.RLock: a shval value "
			     "can only be guarded by a shval lock", lock);
	return -1;
}

unsigned raw_mode(const char *type)
{
	size_t l = strlen(type);
	if (l == 1 && is_scalar_letter(type[0]))
		return SHVAL_ATOMIC;
	return SHVAL_RAW;
}

/* Create a value in the anonymous segment and wrap it. */
PyObject *create_anon(shval_state *st, const tinfo *ti, const void *init, size_t init_len,
			     enum lockmode lm, PyObject *lockobj)
{
	SegObject *seg = anon_segobj(st);
	if (!seg)
		return NULL;
	shval *h;
	int r;
	if (lm == LK_SHARED) {
		char name[64];
		snprintf(name, sizeof name, "pyval.%ld.%lu.%lu", (long)getpid(), st->id,
			 ++st->name_counter);
		r = shval_create_guarded(seg->seg, name, ti->type, ((LockObject *)lockobj)->h,
					 init, init_len, &h);
	} else {
		unsigned mode = lm == LK_RAW ? raw_mode(ti->type) : SHVAL_RLOCK;
		r = shval_new(ti->type, mode, init, init_len, &h);
	}
	if (r) {
		seg_error(st, seg->seg, r);
		return NULL;
	}
	struct shval_info info;
	if (shval_info(h, &info) != 0)
		info.kind = SHVAL_KIND_SCALAR;
	size_t tl = strlen(info.type);
	char letter = tl ? info.type[tl - 1] : 0;
	PyTypeObject *tp = pick_type(st, info.kind, letter, lm != LK_RAW);
	ValObject *v = (ValObject *)val_wrap(tp, h, seg, NULL, ti->ctype,
					     lm == LK_SHARED ? lockobj : NULL, 0);
	if (!v) {
		(void)shval_remove(seg->seg, info.name);
		return NULL;
	}
	v->owner = 1;
	v->owner_pid = getpid();
	return (PyObject *)v;
}

/* init bytes from a ctypes composite constructed with args */
PyObject *ctypes_init(PyObject *ctype, PyObject *const *args, Py_ssize_t na)
{
	PyObject *obj = PyObject_Vectorcall(ctype, args, (size_t)na, NULL);
	if (!obj)
		return NULL;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
		Py_DECREF(obj);
		return NULL;
	}
	PyObject *res = PyBytes_FromStringAndSize(view.buf, view.len);
	PyBuffer_Release(&view);
	Py_DECREF(obj);
	return res;
}

PyObject *make_value(shval_state *st, PyObject *t, PyObject *const *args, Py_ssize_t na,
		     enum lockmode lm, PyObject *lockobj)
{
	tinfo ti;
	if (resolve_type(st, t, &ti, 0) < 0)
		return NULL;
	if (ti.is_ctypes_composite) {
		PyObject *b = ctypes_init(ti.ctype, args, na);
		if (!b)
			return NULL;
		PyObject *res = create_anon(st, &ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), lm, lockobj);
		Py_DECREF(b);
		return res;
	}
	if (ti.letter) {
		unsigned char b[16] = {0};
		if (na > 1) {
			PyErr_Format(PyExc_TypeError, "function takes at most 1 argument (%zd given)", na);
			return NULL;
		}
		if (na == 1 && elem_from_py(ti.letter, args[0], b) < 0)
			return NULL;
		return create_anon(st, &ti, b, letter_size(ti.letter), lm, lockobj);
	}
	if (na > 1) {
		PyErr_Format(PyExc_TypeError, "a '%s' value takes at most 1 initializer", ti.type);
		return NULL;
	}
	PyObject *v = create_anon(st, &ti, NULL, 0, lm, lockobj);
	if (v && na == 1 && PyObject_SetAttrString(v, "value", args[0]) < 0)
		Py_CLEAR(v);
	return v;
}

/* Array type string and init bytes from (typecode, size_or_initializer) */
PyObject *array_init(shval_state *st, PyObject *t, PyObject *init, tinfo *ti, size_t *count)
{
	tinfo et;
	if (PyType_Check(t) && issub(t, st->ct_struct) && !issub(t, st->ct_union)) {
		/* array of ctypes Structures: stored as bytes, elements are
		 * ctypes views (checked by struct_type for supported fields) */
		tinfo sti;
		if (struct_type(st, t, &sti) < 0)
			return NULL;
		memset(&et, 0, sizeof et);
		et.letter = 'B';
		et.ctype = t;
		size_t ssz = ctypes_sizeof(t);
		if (!ssz)
			return PyErr_Occurred() ? NULL : PyErr_Format(PyExc_TypeError, "empty structure");
		size_t n;
		PyObject *bytes;
		if (PyLong_Check(init)) {
			Py_ssize_t k = PyLong_AsSsize_t(init);
			if (k < 0) {
				if (!PyErr_Occurred())
					PyErr_SetString(PyExc_ValueError, "array size must be non-negative");
				return NULL;
			}
			n = (size_t)k;
			bytes = PyBytes_FromStringAndSize(NULL, 0);
		} else {
			PyObject *seq = PySequence_Fast(init, "size_or_initializer must be an int or a sequence");
			if (!seq)
				return NULL;
			n = (size_t)PySequence_Fast_GET_SIZE(seq);
			bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * ssz));
			ValObject tmp;
			tmp.ctype = t;
			tmp.selem = ssz;
			for (size_t i = 0; bytes && i < n; i++)
				if (selem_bytes(&tmp, PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i),
						(unsigned char *)PyBytes_AS_STRING(bytes) + i * ssz) < 0)
					Py_CLEAR(bytes);
			Py_DECREF(seq);
		}
		if (!bytes)
			return NULL;
		char buf[64];
		snprintf(buf, sizeof buf, "%zuB", n * ssz);
		if (canonical(st, buf, ti) < 0) {
			Py_DECREF(bytes);
			return NULL;
		}
		ti->letter = 'B';
		ti->ctype = t;
		*count = n;
		return bytes;
	}
	if (resolve_type(st, t, &et, 1) < 0)
		return NULL;
	size_t es = letter_size(et.letter);
	PyObject *bytes = NULL;
	size_t n;
	if (PyLong_Check(init)) {
		Py_ssize_t k = PyLong_AsSsize_t(init);
		if (k == -1 && PyErr_Occurred())
			return NULL;
		if (k < 0) {
			PyErr_SetString(PyExc_ValueError, "array size must be non-negative");
			return NULL;
		}
		n = (size_t)k;
		bytes = PyBytes_FromStringAndSize(NULL, 0);
	} else {
		PyObject *seq;
		if (et.letter == 'u' && PyUnicode_Check(init))
			seq = PySequence_List(init);
		else
			seq = PySequence_Fast(init, "size_or_initializer must be an int or a sequence");
		if (!seq)
			return NULL;
		n = (size_t)PySequence_Fast_GET_SIZE(seq);
		bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(n * es));
		if (!bytes) {
			Py_DECREF(seq);
			return NULL;
		}
		unsigned char *p = (unsigned char *)PyBytes_AS_STRING(bytes);
		memset(p, 0, n * es);
		for (size_t i = 0; i < n; i++)
			if (elem_from_py(et.letter, PySequence_Fast_GET_ITEM(seq, (Py_ssize_t)i), p + i * es) < 0) {
				Py_DECREF(seq);
				Py_DECREF(bytes);
				return NULL;
			}
		Py_DECREF(seq);
	}
	char buf[64];
	snprintf(buf, sizeof buf, "%zu%c", n, et.letter);
	if (canonical(st, buf, ti) < 0) {
		Py_XDECREF(bytes);
		return NULL;
	}
	ti->letter = et.letter;
	ti->ctype = et.ctype;
	*count = n;
	return bytes;
}

PyObject *make_array(shval_state *st, PyObject *t, PyObject *init, enum lockmode lm, PyObject *lockobj)
{
	tinfo ti;
	size_t n;
	PyObject *bytes = array_init(st, t, init, &ti, &n);
	if (!bytes)
		return NULL;
	Py_ssize_t bl = PyBytes_GET_SIZE(bytes);
	PyObject *res = create_anon(st, &ti, bl ? PyBytes_AS_STRING(bytes) : NULL, (size_t)bl, lm, lockobj);
	Py_DECREF(bytes);
	return res;
}
