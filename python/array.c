/*
 * python/array.c — SharedArray, SynchronizedArray, SynchronizedString: indexing,
 * slices, iteration, .value/.raw of char arrays.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ---- arrays ---- */

static int arr_get(ValObject *v, size_t i, size_t n, void *buf)
{
	if (n == 0)
		return 0;
	/* a consistent read (seqlock): never takes the value's lock */
	if (!v->extlock)
		return handle_rc(v, shval_array_get(v->h, i, n, buf));
	if (ext_enter(v) < 0)
		return -1;
	int r = shval_array_get(v->h, i, n, buf);
	ext_exit(v);
	return handle_rc(v, r);
}

static int arr_set(ValObject *v, size_t i, size_t n, const void *buf)
{
	if (n == 0)
		return 0;
	if (ext_enter(v) < 0)
		return -1;
	int r;
	CALL_TRY(v, shval__r_try_array_set(v->h, i, n, buf),
		 shval_array_set(v->h, i, n, buf));
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		return -1;
	/* on a Redis segment, the version this write committed if the
	 * library knows it (no round trip); else ask */
	uint64_t c = v->seg->remote ? shval__r_committed(v->h) : 0;
	v->seen = c ? c : shval_value_version(v->h);
	return 0;
}

static Py_ssize_t arr_len(ValObject *v)
{
	return (Py_ssize_t)v->count;
}

/* elements as a Python object: bytes for 'c', str for 'u', else list */
static PyObject *elems_to_py(ValObject *v, const unsigned char *b, size_t n)
{
	if (v->letter == 'c')
		return PyBytes_FromStringAndSize((const char *)b, (Py_ssize_t)n);
	if (v->letter == 'u') {
		for (size_t i = 0; i < n; i++) {
			uint32_t cp;
			memcpy(&cp, b + 4 * i, 4);
			if (cp > 0x10ffff) {
				PyErr_SetString(PyExc_ValueError, "invalid code point");
				return NULL;
			}
		}
		return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, b, (Py_ssize_t)n);
	}
	PyObject *l = PyList_New((Py_ssize_t)n);
	if (!l)
		return NULL;
	/* the common element types without the per-element dispatch */
#define FILL(T, conv)                                                   \
	for (size_t i = 0; i < n; i++) {                                \
		T x_;                                                   \
		memcpy(&x_, b + i * sizeof(T), sizeof(T));              \
		PyObject *e_ = conv(x_);                                \
		if (!e_) {                                              \
			Py_DECREF(l);                                   \
			return NULL;                                    \
		}                                                       \
		PyList_SET_ITEM(l, (Py_ssize_t)i, e_);                  \
	}                                                               \
	return l
	/* small ints from the module's table (the objects CPython keeps for
	 * -5..256 anyway) without a call per element */
	PyObject *const *small = v->st->small_ints;
#define FILL_INT(T, conv)                                                       \
	for (size_t i = 0; i < n; i++) {                                        \
		T x_;                                                           \
		memcpy(&x_, b + i * sizeof(T), sizeof(T));                      \
		PyObject *e_;                                                   \
		/* unsigned: no overflow near the type's limits */             \
		uint64_t k_ = (uint64_t)(int64_t)x_ - (uint64_t)SMALL_INT_MIN;  \
		if (k_ < SMALL_INT_N) {                                         \
			e_ = small[k_];                                         \
			Py_INCREF(e_);                                          \
		} else if (!(e_ = conv(x_))) {                                  \
			Py_DECREF(l);                                           \
			return NULL;                                            \
		}                                                               \
		PyList_SET_ITEM(l, (Py_ssize_t)i, e_);                          \
	}                                                                       \
	return l
	switch (v->letter) {
	case 'i': FILL_INT(int32_t, PyLong_FromLong);
	case 'q': case 'l': case 'n': FILL_INT(int64_t, PyLong_FromLongLong);
	case 'd': FILL(double, PyFloat_FromDouble);
	}
#undef FILL
#undef FILL_INT
	for (size_t i = 0; i < n; i++) {
		PyObject *e = elem_to_py(v->letter, b + i * v->esize);
		if (!e) {
			Py_DECREF(l);
			return NULL;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, e);
	}
	return l;
}

/* bytes of one ctypes Structure element from an instance or a tuple */
int selem_bytes(ValObject *v, PyObject *o, unsigned char *b)
{
	PyObject *obj;
	int inst = PyObject_IsInstance(o, v->ctype);
	if (inst < 0)
		return -1;
	if (inst) {
		obj = o;
		Py_INCREF(obj);
	} else if (PyTuple_Check(o)) {
		obj = PyObject_CallObject(v->ctype, o);
	} else {
		PyErr_Format(PyExc_TypeError, "expected %R instance or a tuple, got %.100s",
			     v->ctype, Py_TYPE(o)->tp_name);
		return -1;
	}
	if (!obj)
		return -1;
	Py_buffer view;
	if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
		Py_DECREF(obj);
		return -1;
	}
	int r = 0;
	if ((size_t)view.len != v->selem) {
		PyErr_SetString(PyExc_TypeError, "structure size mismatch");
		r = -1;
	} else {
		memcpy(b, view.buf, v->selem);
	}
	PyBuffer_Release(&view);
	Py_DECREF(obj);
	return r;
}

static PyObject *arr_item(ValObject *v, Py_ssize_t i)
{
	if (i < 0 || (size_t)i >= v->count) {
		PyErr_SetString(PyExc_IndexError, "invalid index");
		return NULL;
	}
	if (v->selem) /* a ctypes view into shared memory, as multiprocessing */
		return PyObject_CallMethod(v->ctype, "from_buffer", "On", (PyObject *)v,
					   (Py_ssize_t)((size_t)i * v->selem));
	unsigned char b[16];
	if (arr_get(v, (size_t)i, 1, b) < 0)
		return NULL;
	return elem_to_py(v->letter, b);
}

static PyObject *arr_subscript(ValObject *v, PyObject *key)
{
	if (PyIndex_Check(key)) {
		Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
		if (i == -1 && PyErr_Occurred())
			return NULL;
		if (i < 0)
			i += (Py_ssize_t)v->count;
		return arr_item(v, i);
	}
	if (!PySlice_Check(key)) {
		PyErr_SetString(PyExc_TypeError, "indices must be integers");
		return NULL;
	}
	Py_ssize_t start, stop, step;
	if (PySlice_Unpack(key, &start, &stop, &step) < 0)
		return NULL;
	Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)v->count, &start, &stop, step);
	if (v->selem) {
		PyObject *l = PyList_New(n);
		for (Py_ssize_t k = 0, i = start; l && k < n; k++, i += step) {
			PyObject *e = arr_item(v, i);
			if (!e) {
				Py_CLEAR(l);
				break;
			}
			PyList_SET_ITEM(l, k, e);
		}
		return l;
	}
	unsigned char stackbuf[8192];
	size_t need = (size_t)(n ? n : 1) * v->esize;
	unsigned char *b = need <= sizeof stackbuf ? stackbuf : PyMem_Malloc(need);
	if (!b)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (step == 1) {
		if (arr_get(v, (size_t)start, (size_t)n, b) == 0)
			res = elems_to_py(v, b, (size_t)n);
	} else {
		unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
		if (!all)
			PyErr_NoMemory();
		else if (arr_get(v, 0, v->count, all) == 0) {
			for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
				memcpy(b + (size_t)k * v->esize, all + (size_t)i * v->esize, v->esize);
			res = elems_to_py(v, b, (size_t)n);
		}
		PyMem_Free(all);
	}
	if (b != stackbuf)
		PyMem_Free(b);
	return res;
}

static int arr_ass_subscript(ValObject *v, PyObject *key, PyObject *value)
{
	if (!value) {
		PyErr_SetString(PyExc_TypeError, "Array does not support item deletion");
		return -1;
	}
	if (PyIndex_Check(key)) {
		Py_ssize_t i = PyNumber_AsSsize_t(key, PyExc_IndexError);
		if (i == -1 && PyErr_Occurred())
			return -1;
		if (i < 0)
			i += (Py_ssize_t)v->count;
		if (i < 0 || (size_t)i >= v->count) {
			PyErr_SetString(PyExc_IndexError, "invalid index");
			return -1;
		}
		if (v->selem) {
			unsigned char *sb = PyMem_Malloc(v->selem);
			if (!sb) {
				PyErr_NoMemory();
				return -1;
			}
			int rr = selem_bytes(v, value, sb);
			if (rr == 0)
				rr = arr_set(v, (size_t)i * v->selem, v->selem, sb);
			PyMem_Free(sb);
			return rr;
		}
		unsigned char b[16];
		if (elem_from_py(v->letter, value, b) < 0)
			return -1;
		return arr_set(v, (size_t)i, 1, b);
	}
	if (!PySlice_Check(key)) {
		PyErr_SetString(PyExc_TypeError, "indices must be integers");
		return -1;
	}
	Py_ssize_t start, stop, step;
	if (PySlice_Unpack(key, &start, &stop, &step) < 0)
		return -1;
	Py_ssize_t n = PySlice_AdjustIndices((Py_ssize_t)v->count, &start, &stop, step);
	PyObject *seq = PySequence_Fast(value, "can only assign a sequence");
	if (!seq)
		return -1;
	if (PySequence_Fast_GET_SIZE(seq) != n) {
		Py_DECREF(seq);
		PyErr_SetString(PyExc_ValueError, "Can only assign sequence of same size");
		return -1;
	}
	if (v->selem) {
		for (Py_ssize_t k = 0, i = start; k < n; k++, i += step) {
			PyObject *ix = PyLong_FromSsize_t(i);
			int rr = ix ? arr_ass_subscript(v, ix, PySequence_Fast_GET_ITEM(seq, k)) : -1;
			Py_XDECREF(ix);
			if (rr < 0) {
				Py_DECREF(seq);
				return -1;
			}
		}
		Py_DECREF(seq);
		return 0;
	}
	unsigned char *b = PyMem_Malloc((size_t)(n ? n : 1) * v->esize);
	if (!b) {
		Py_DECREF(seq);
		PyErr_NoMemory();
		return -1;
	}
	int ret = -1;
	for (Py_ssize_t k = 0; k < n; k++)
		if (elem_from_py(v->letter, PySequence_Fast_GET_ITEM(seq, k), b + (size_t)k * v->esize) < 0)
			goto out;
	if (step == 1) {
		ret = arr_set(v, (size_t)start, (size_t)n, b);
	} else if (n > 0) {
		/* read-modify-write of the whole array, under the lock if any */
		unsigned char *all = PyMem_Malloc(v->size);
		if (!all) {
			PyErr_NoMemory();
			goto out;
		}
		int locked = LOCKED(v) && !v->extlock ? acquire_handle2(v->st, v->h, 1, -1, 1, v->seg->remote) : 0;
		if (locked < 0) {
			PyMem_Free(all);
			goto out;
		}
		if (arr_get(v, 0, v->count, all) == 0) {
			for (Py_ssize_t k = 0, i = start; k < n; k++, i += step)
				memcpy(all + (size_t)i * v->esize, b + (size_t)k * v->esize, v->esize);
			ret = arr_set(v, 0, v->count, all);
		}
		if (locked == 1)
			(void)unlock_handle(v->h, v->seg->remote);
		PyMem_Free(all);
	} else {
		ret = 0;
	}
out:
	PyMem_Free(b);
	Py_DECREF(seq);
	return ret;
}

static PyObject *arr_iter(ValObject *v)
{
	if (v->selem) {
		PyObject *all = PySlice_New(NULL, NULL, NULL);
		PyObject *l = all ? arr_subscript(v, all) : NULL;
		Py_XDECREF(all);
		PyObject *it = l ? PyObject_GetIter(l) : NULL;
		Py_XDECREF(l);
		return it;
	}
	unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
	if (!all)
		return PyErr_NoMemory();
	PyObject *l = NULL;
	if (arr_get(v, 0, v->count, all) == 0) {
		l = PyList_New((Py_ssize_t)v->count);
		for (size_t i = 0; l && i < v->count; i++) {
			PyObject *e = elem_to_py(v->letter, all + i * v->esize);
			if (!e) {
				Py_CLEAR(l);
				break;
			}
			PyList_SET_ITEM(l, (Py_ssize_t)i, e);
		}
	}
	PyMem_Free(all);
	if (!l)
		return NULL;
	PyObject *it = PyObject_GetIter(l);
	Py_DECREF(l);
	return it;
}

/* .value / .raw of 'c' and 'u' arrays (ctypes char-array semantics) */
PyObject *arr_value_get(ValObject *v)
{
	if (v->letter != 'c' && v->letter != 'u') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' and 'u' arrays have .value");
		return NULL;
	}
	unsigned char *all = PyMem_Malloc(v->size ? v->size : 1);
	if (!all)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (arr_get(v, 0, v->count, all) == 0)
		res = v->letter == 'c' ? bytes_to_nul((char *)all, v->count)
				       : wchars_to_nul((uint32_t *)all, v->count);
	PyMem_Free(all);
	return res;
}

int arr_value_set(ValObject *v, PyObject *o)
{
	if (v->letter == 'u') {
		if (!PyUnicode_Check(o)) {
			PyErr_Format(PyExc_TypeError, "unicode string expected instead of %.100s instance",
				     Py_TYPE(o)->tp_name);
			return -1;
		}
		Py_ssize_t n = PyUnicode_GET_LENGTH(o);
		if ((size_t)n > v->count) {
			PyErr_SetString(PyExc_ValueError, "string too long");
			return -1;
		}
		uint32_t *w = PyMem_Calloc((size_t)n + 1, 4);
		if (!w) {
			PyErr_NoMemory();
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++)
			w[i] = PyUnicode_READ_CHAR(o, i);
		int r = arr_set(v, 0, (size_t)n + ((size_t)n < v->count), w);
		PyMem_Free(w);
		return r;
	}
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' and 'u' arrays have .value");
		return -1;
	}
	if (!PyBytes_Check(o)) {
		PyErr_Format(PyExc_TypeError, "bytes expected instead of %.100s instance",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	Py_ssize_t n = PyBytes_GET_SIZE(o);
	if ((size_t)n > v->count) {
		PyErr_SetString(PyExc_ValueError, "byte string too long");
		return -1;
	}
	char *b = PyMem_Calloc((size_t)n + 1, 1);
	if (!b) {
		PyErr_NoMemory();
		return -1;
	}
	memcpy(b, PyBytes_AS_STRING(o), (size_t)n);
	int r = arr_set(v, 0, (size_t)n + ((size_t)n < v->count), b);
	PyMem_Free(b);
	return r;
}

static PyObject *arr_raw_get(ValObject *v, void *Py_UNUSED(c))
{
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' arrays have .raw");
		return NULL;
	}
	PyObject *all = PySlice_New(NULL, NULL, NULL);
	if (!all)
		return NULL;
	PyObject *res = arr_subscript(v, all);
	Py_DECREF(all);
	return res;
}

static int arr_raw_set(ValObject *v, PyObject *o, void *Py_UNUSED(c))
{
	if (v->letter != 'c') {
		PyErr_SetString(PyExc_AttributeError, "only 'c' arrays have .raw");
		return -1;
	}
	Py_buffer view;
	if (!o || PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
		if (!o)
			PyErr_SetString(PyExc_AttributeError, "cannot delete raw");
		return -1;
	}
	int r;
	if ((size_t)view.len > v->count) {
		PyErr_SetString(PyExc_ValueError, "byte string too long");
		r = -1;
	} else {
		r = arr_set(v, 0, (size_t)view.len, view.buf);
	}
	PyBuffer_Release(&view);
	return r;
}

static PyGetSetDef arr_getset[] = {
	{"value", (getter)val_value_get_any, (setter)val_value_set,
	 "'c' and 'u' arrays: the contents up to the first NUL", NULL},
	{"raw", (getter)arr_raw_get, (setter)arr_raw_set, "'c' arrays: all bytes", NULL},
	{"version", (getter)val_version, NULL, "changes on every committed change", NULL},
	{"name", (getter)val_name_get, NULL, "the array's name in its segment", NULL},
	{"type", (getter)val_type_get, NULL, "the canonical shval type string", NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyMethodDef arr_methods[] = {
	{"wait", (PyCFunction)(void (*)(void))val_wait, METH_FASTCALL | METH_KEYWORDS, WAIT_DOC},
	{"__reduce__", (PyCFunction)val_reduce, METH_NOARGS, REDUCE_DOC},
	{NULL, NULL, 0, NULL}
};

static PyType_Slot arr_slots[] = {
	{Py_tp_dealloc, val_dealloc},
	{Py_tp_traverse, val_traverse},
	{Py_tp_clear, val_clear},
	{Py_tp_repr, val_repr},
	{Py_sq_length, arr_len},
	{Py_sq_item, arr_item},
	{Py_mp_length, arr_len},
	{Py_mp_subscript, arr_subscript},
	{Py_mp_ass_subscript, arr_ass_subscript},
	{Py_bf_getbuffer, val_getbuffer},
	{Py_bf_releasebuffer, val_releasebuffer},
	{Py_tp_iter, arr_iter},
	{Py_tp_doc, "An array in shared memory (RawArray, Array(lock=False))."},
	{Py_tp_methods, arr_methods},
	{Py_tp_getset, arr_getset},
	{0, NULL}
};

#define ARR_FLAGS                                                        \
	(Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC | \
	 Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION)

PyType_Spec arr_spec = {
	.name = "shval.SharedArray",
	.basicsize = sizeof(ValObject),
	.flags = ARR_FLAGS,
	.slots = arr_slots,
};

/* SynchronizedArray: a subtype of SharedArray (module.c passes the base) */
static PyType_Slot sync_arr_slots[] = {
	{Py_tp_dealloc, val_dealloc},
	{Py_tp_traverse, val_traverse},
	{Py_tp_clear, val_clear},
	{Py_tp_doc, "An array with a lock (Array())."},
	{Py_tp_methods, sync_methods},
	{0, NULL}
};

PyType_Spec sync_arr_spec = {
	.name = "shval.SynchronizedArray",
	.basicsize = sizeof(ValObject),
	.flags = ARR_FLAGS,
	.slots = sync_arr_slots,
};

/* SynchronizedString: a subtype of SynchronizedArray */
static PyType_Slot sync_str_slots[] = {
	{Py_tp_dealloc, val_dealloc},
	{Py_tp_traverse, val_traverse},
	{Py_tp_clear, val_clear},
	{Py_tp_doc, "A char array with a lock (Array('c', n))."},
	{0, NULL}
};

PyType_Spec sync_str_spec = {
	.name = "shval.SynchronizedString",
	.basicsize = sizeof(ValObject),
	.flags = ARR_FLAGS,
	.slots = sync_str_slots,
};
