/*
 * python/fields.c — struct values: fields as attributes, field conversion.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ---- struct fields ---- */

static void field_shape(const shval_field_info *f, size_t *count, char *letter)
{
	size_t n = 0;
	const char *p = f->type;
	while (*p >= '0' && *p <= '9')
		n = n * 10 + (size_t)(*p++ - '0');
	*count = p == f->type ? 1 : n;
	size_t l = strlen(f->type);
	*letter = l ? f->type[l - 1] : 0;
}

PyObject *bytes_to_nul(const char *b, size_t n)
{
	size_t k = 0;
	while (k < n && b[k])
		k++;
	return PyBytes_FromStringAndSize(b, (Py_ssize_t)k);
}

PyObject *wchars_to_nul(const uint32_t *w, size_t n)
{
	size_t k = 0;
	while (k < n && w[k])
		k++;
	for (size_t i = 0; i < k; i++)
		if (w[i] > 0x10ffff) {
			PyErr_SetString(PyExc_ValueError, "invalid code point");
			return NULL;
		}
	return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, w, (Py_ssize_t)k);
}

/* bytes of field type (count, letter) -> Python */
PyObject *field_to_py(size_t count, char letter, const unsigned char *b)
{
	if (letter == 's') {
		uint32_t len;
		memcpy(&len, b, 4);
		if (len > count)
			len = (uint32_t)count;
		return PyBytes_FromStringAndSize((const char *)b + 4, len);
	}
	if (count == 1)
		return elem_to_py(letter, b);
	if (letter == 'c')
		return bytes_to_nul((const char *)b, count);
	if (letter == 'u') {
		uint32_t *w = PyMem_Malloc(count * 4);
		if (!w)
			return PyErr_NoMemory();
		memcpy(w, b, count * 4);
		PyObject *s = wchars_to_nul(w, count);
		PyMem_Free(w);
		return s;
	}
	size_t es = letter_size(letter);
	PyObject *l = PyList_New((Py_ssize_t)count);
	if (!l)
		return NULL;
	for (size_t i = 0; i < count; i++) {
		PyObject *e = elem_to_py(letter, b + i * es);
		if (!e) {
			Py_DECREF(l);
			return NULL;
		}
		PyList_SET_ITEM(l, (Py_ssize_t)i, e);
	}
	return l;
}

/* Python -> bytes of field type into b (size bytes, zeroed by caller) */
int field_from_py(size_t count, char letter, PyObject *o, unsigned char *b)
{
	if (letter == 's' || (count > 1 && letter == 'c')) {
		Py_buffer view;
		PyObject *enc = NULL;
		if (PyUnicode_Check(o)) {
			enc = PyUnicode_AsUTF8String(o);
			if (!enc)
				return -1;
			o = enc;
		}
		if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
			Py_XDECREF(enc);
			return -1;
		}
		if ((size_t)view.len > count) {
			PyErr_Format(PyExc_ValueError,
				     "byte string too long (%zd bytes, capacity %zu)",
				     view.len, count);
			PyBuffer_Release(&view);
			Py_XDECREF(enc);
			return -1;
		}
		if (letter == 's') {
			uint32_t len = (uint32_t)view.len;
			memcpy(b, &len, 4);
			memcpy(b + 4, view.buf, (size_t)view.len);
		} else {
			memcpy(b, view.buf, (size_t)view.len);
		}
		PyBuffer_Release(&view);
		Py_XDECREF(enc);
		return 0;
	}
	if (count == 1)
		return elem_from_py(letter, o, b);
	if (letter == 'u' && PyUnicode_Check(o)) {
		Py_ssize_t n = PyUnicode_GET_LENGTH(o);
		if ((size_t)n > count) {
			PyErr_SetString(PyExc_ValueError, "string too long");
			return -1;
		}
		for (Py_ssize_t i = 0; i < n; i++) {
			uint32_t cp = PyUnicode_READ_CHAR(o, i);
			memcpy(b + 4 * i, &cp, 4);
		}
		return 0;
	}
	PyObject *seq = PySequence_Fast(o, "a sequence is required");
	if (!seq)
		return -1;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	if ((size_t)n > count) {
		PyErr_SetString(PyExc_ValueError, "too many initializers");
		Py_DECREF(seq);
		return -1;
	}
	size_t es = letter_size(letter);
	for (Py_ssize_t i = 0; i < n; i++)
		if (elem_from_py(letter, PySequence_Fast_GET_ITEM(seq, i), b + (size_t)i * es) < 0) {
			Py_DECREF(seq);
			return -1;
		}
	Py_DECREF(seq);
	return 0;
}

const shval_field_info *find_field(ValObject *v, PyObject *name)
{
	if (!v->nfields || !PyUnicode_Check(name))
		return NULL;
	const char *n = PyUnicode_AsUTF8(name);
	if (!n) {
		PyErr_Clear();
		return NULL;
	}
	for (size_t i = 0; i < v->nfields; i++)
		if (v->fields[i].name[0] && strcmp(v->fields[i].name, n) == 0)
			return &v->fields[i];
	return NULL;
}

PyObject *field_get(ValObject *v, const shval_field_info *f)
{
	unsigned char stackbuf[256];
	unsigned char *b = f->size <= sizeof stackbuf ? stackbuf : PyMem_Malloc(f->size);
	if (!b)
		return PyErr_NoMemory();
	PyObject *res = NULL;
	if (ext_enter(v) < 0)
		goto out;
	/* a consistent read: never takes the value's lock */
	int r = shval_field_get(v->h, f->name, b, f->size, NULL);
	ext_exit(v);
	if (handle_rc(v, r) < 0)
		goto out;
	size_t count;
	char letter;
	field_shape(f, &count, &letter);
	res = field_to_py(count, letter, b);
out:
	if (b != stackbuf)
		PyMem_Free(b);
	return res;
}

int field_set(ValObject *v, const shval_field_info *f, PyObject *o)
{
	if (!o) {
		PyErr_SetString(PyExc_TypeError, "cannot delete a field");
		return -1;
	}
	unsigned char *b = PyMem_Calloc(1, f->size ? f->size : 1);
	if (!b) {
		PyErr_NoMemory();
		return -1;
	}
	size_t count;
	char letter;
	field_shape(f, &count, &letter);
	int ret = -1;
	if (field_from_py(count, letter, o, b) < 0)
		goto out;
	if (ext_enter(v) < 0)
		goto out;
	int r;
	CALL_TRY(v, shval__r_try_field_set(v->h, f->name, b, f->size),
		 shval_field_set(v->h, f->name, b, f->size));
	ext_exit(v);
	ret = handle_rc(v, r);
out:
	PyMem_Free(b);
	return ret;
}

/* `v.value` of a scalar value of our own exact types goes straight to the
 * getter/setter: the attribute name in compiled code is interned, so one
 * pointer comparison stands in for the generic lookup (the type cache, the
 * descriptor's type check and call), which is about a fifth of a read's
 * instructions.  Subclasses (which may redefine `value`) and structs
 * (fields come first) take the generic path. */
static inline int value_shortcut(ValObject *v, PyObject *name)
{
	return name == v->st->str_value && v->hot_attr; /* val_wrap() */
}

static __attribute__((noinline)) PyObject *getattro_general(PyObject *o, PyObject *name)
{
	ValObject *v = (ValObject *)o;
	if (value_shortcut(v, name))
		return val_value_get_any(v, NULL);
	if (!v->nfields) /* not a struct: .value etc. without a detour */
		return PyObject_GenericGetAttr(o, name);
	const shval_field_info *f = find_field(v, name);
	if (f)
		return field_get(v, f);
	return PyObject_GenericGetAttr(o, name);
}

/* The hot case first, in a function with no stack frame of the general
 * one's (the general code is out of line: its registers are saved only
 * when it runs). */
__attribute__((flatten)) PyObject *val_getattro(PyObject *o, PyObject *name)
{
	ValObject *v = (ValObject *)o;
	PyObject *res;
	if (value_shortcut(v, name) && hot_get(v, &res))
		return res;
	return getattro_general(o, name);
}

static __attribute__((noinline)) int setattro_general(PyObject *o, PyObject *name,
						       PyObject *value)
{
	ValObject *v = (ValObject *)o;
	if (value_shortcut(v, name))
		return val_value_set(v, value, NULL);
	if (!v->nfields)
		return PyObject_GenericSetAttr(o, name, value);
	const shval_field_info *f = find_field(v, name);
	if (f)
		return field_set(v, f, value);
	return PyObject_GenericSetAttr(o, name, value);
}

__attribute__((flatten)) int val_setattro(PyObject *o, PyObject *name, PyObject *value)
{
	ValObject *v = (ValObject *)o;
	int rc;
	if (value_shortcut(v, name) && hot_set(v, value, &rc))
		return rc;
	return setattro_general(o, name, value);
}
