/*
 * python/convert.c — errors, element conversion between Python objects and C
 * bytes, and type resolution (typecode or ctypes type -> shval type string).
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ------------------------------------------------------------------------ */
/* errors                                                                    */

void set_error(shval_state *st, int code, const char *detail)
{
	char buf[1400];
	const char *gen = shval_strerror(code);
	if (detail && *detail)
		snprintf(buf, sizeof buf, "%s", detail);
	else
		snprintf(buf, sizeof buf, "%s", gen);
	PyObject *exc;
	if (code < 0 && code > -30800) {
		exc = PyObject_CallFunction(PyExc_OSError, "is", -code, buf);
	} else {
		PyObject *tp;
		switch (code) {
		case SHVAL_ENOTFOUND: tp = PyExc_KeyError; break;
		case SHVAL_ETYPE: case SHVAL_EBADTYPE: case SHVAL_EMODE:
			tp = PyExc_TypeError; break;
		case SHVAL_ETOOBIG: case SHVAL_ERANGE: case SHVAL_EPARSE:
		case SHVAL_EBADNAME: case SHVAL_ESIZE:
			tp = PyExc_ValueError; break;
		case SHVAL_EEXIST: tp = PyExc_FileExistsError; break;
		case SHVAL_EINDEX: tp = PyExc_IndexError; break;
		case SHVAL_ENOFIELD: tp = PyExc_AttributeError; break;
		case SHVAL_ERDONLY: tp = PyExc_PermissionError; break;
		default: tp = st->Error; break;
		}
		exc = PyObject_CallFunction(tp, "s", buf);
	}
	if (!exc)
		return;
	PyObject *c = PyLong_FromLong(code);
	if (c) {
		PyObject_SetAttrString(exc, "shval_code", c);
		Py_DECREF(c);
	}
	PyObject *n = PyUnicode_FromString(shval_errname(code));
	if (n) {
		PyObject_SetAttrString(exc, "shval_errname", n);
		Py_DECREF(n);
	}
	PyErr_Clear();
	PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
	Py_DECREF(exc);
}

void seg_error(shval_state *st, shval_seg *seg, int code)
{
	set_error(st, code, seg ? shval_errmsg(seg) : "");
}

int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SHVAL_SEC + ts.tv_nsec;
}

/* timeout object (None or seconds) -> ns; -1 = forever; -2 = error */
int64_t timeout_ns(PyObject *t)
{
	if (!t || t == Py_None)
		return -1;
	/* threading.Lock.acquire()'s rules (issue 11): -1 is forever, NaN
	 * and other negatives are ValueError, more than threading.TIMEOUT_MAX
	 * (infinity included) OverflowError.  A timeout over 31 years is
	 * forever (the deadline must not overflow). */
	double d = PyFloat_AsDouble(t);
	if (d == -1.0 && PyErr_Occurred())
		return -2;
	if (isnan(d)) {
		PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
		return -2;
	}
	if (d > 9223372036.0 || d < -9223372036.0) { /* threading.TIMEOUT_MAX */
		PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
		return -2;
	}
	if (d == -1.0)
		return -1;
	if (d < 0) {
		PyErr_SetString(PyExc_ValueError, "timeout value must be positive");
		return -2;
	}
	if (d > 1e9)
		return -1;
	return (int64_t)(d * 1e9);
}

/* ------------------------------------------------------------------------ */
/* element conversion                                                        */

/* The library's letter table (src/type.h). */
size_t letter_size(char c)
{
	return shval__letter_size(c);
}

static int is_signed(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_INT && l->is_signed;
}

static int is_unsigned(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_INT && !l->is_signed;
}

/* Every letter but 's' is a scalar element. */
int is_scalar_letter(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls != SHVAL__L_STRING;
}

int is_float(char c)
{
	const shval__letter *l = shval__letter_info(c);
	return l && l->cls == SHVAL__L_FLOAT;
}

static int range_error(char c, PyObject *o)
{
	PyErr_Format(PyExc_ValueError, "%R is out of range for type '%c'", o, c);
	return -1;
}

int elem_from_py(char c, PyObject *o, void *dst)
{
	if (PyLong_CheckExact(o) && (c == 'i' || c == 'q' || c == 'l' || c == 'n')) {
		/* the common case without the letter table and PyNumber_Index;
		 * anything out of range goes the general way (its error) */
		int of = 0;
		long long x = PyLong_AsLongLongAndOverflow(o, &of);
		if (!of && !(x == -1 && PyErr_Occurred())) {
			if (c != 'i') {
				memcpy(dst, &x, 8);
				return 0;
			}
			if (x >= INT32_MIN && x <= INT32_MAX) {
				int32_t y = (int32_t)x;
				memcpy(dst, &y, 4);
				return 0;
			}
		}
		PyErr_Clear();
	}
	size_t sz = letter_size(c);
	if (is_signed(c) || is_unsigned(c)) {
		if (PyFloat_Check(o)) {
			PyErr_Format(PyExc_TypeError,
				     "int expected instead of float");
			return -1;
		}
		PyObject *ix = PyNumber_Index(o);
		if (!ix)
			return -1;
		int of = 0;
		long long x = PyLong_AsLongLongAndOverflow(ix, &of);
		if (x == -1 && PyErr_Occurred()) {
			Py_DECREF(ix);
			return -1;
		}
		uint64_t u = (uint64_t)x;
		if (of) {
			if (of < 0 || is_signed(c)) {
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
			u = PyLong_AsUnsignedLongLong(ix);
			if (u == (uint64_t)-1 && PyErr_Occurred()) {
				PyErr_Clear();
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
		} else if (is_unsigned(c) && x < 0) {
			range_error(c, ix);
			Py_DECREF(ix);
			return -1;
		} else if (sz < 8) {
			int bits = (int)sz * 8;
			if (is_signed(c)) {
				long long lo = -(1LL << (bits - 1)), hi = (1LL << (bits - 1)) - 1;
				if (x < lo || x > hi) {
					range_error(c, ix);
					Py_DECREF(ix);
					return -1;
				}
			} else if ((uint64_t)x > ((1ULL << bits) - 1)) {
				range_error(c, ix);
				Py_DECREF(ix);
				return -1;
			}
		}
		Py_DECREF(ix);
		switch (sz) {
		case 1: { uint8_t y = (uint8_t)u; memcpy(dst, &y, 1); break; }
		case 2: { uint16_t y = (uint16_t)u; memcpy(dst, &y, 2); break; }
		case 4: { uint32_t y = (uint32_t)u; memcpy(dst, &y, 4); break; }
		default: memcpy(dst, &u, 8); break;
		}
		return 0;
	}
	switch (c) {
	case 'f': case 'd': {
		double d = PyFloat_AsDouble(o);
		if (d == -1.0 && PyErr_Occurred())
			return -1;
		if (c == 'f') {
			float f = (float)d;
			memcpy(dst, &f, 4);
		} else {
			memcpy(dst, &d, 8);
		}
		return 0;
	}
	case '?': {
		int t = PyObject_IsTrue(o);
		if (t < 0)
			return -1;
		*(uint8_t *)dst = (uint8_t)t;
		return 0;
	}
	case 'c':
		if (PyBytes_Check(o) && PyBytes_GET_SIZE(o) == 1) {
			*(uint8_t *)dst = (uint8_t)PyBytes_AS_STRING(o)[0];
			return 0;
		}
		if (PyByteArray_Check(o) && PyByteArray_GET_SIZE(o) == 1) {
			*(uint8_t *)dst = (uint8_t)PyByteArray_AS_STRING(o)[0];
			return 0;
		}
		if (PyLong_Check(o)) {
			long x = PyLong_AsLong(o);
			if (x == -1 && PyErr_Occurred())
				return -1;
			if (x < 0 || x > 255)
				return range_error(c, o);
			*(uint8_t *)dst = (uint8_t)x;
			return 0;
		}
		PyErr_Format(PyExc_TypeError,
			     "one character bytes, bytearray or integer expected, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	case 'u':
		if (PyUnicode_Check(o) && PyUnicode_GET_LENGTH(o) == 1) {
			uint32_t cp = PyUnicode_READ_CHAR(o, 0);
			memcpy(dst, &cp, 4);
			return 0;
		}
		PyErr_Format(PyExc_TypeError,
			     "one character unicode string expected, not %.100s",
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	PyErr_Format(PyExc_TypeError, "unsupported element type '%c'", c);
	return -1;
}

PyObject *elem_to_py(char c, const void *src)
{
	switch (c) {
	case 'b': { int8_t x; memcpy(&x, src, 1); return PyLong_FromLong(x); }
	case 'B': { uint8_t x; memcpy(&x, src, 1); return PyLong_FromLong(x); }
	case 'h': { int16_t x; memcpy(&x, src, 2); return PyLong_FromLong(x); }
	case 'H': { uint16_t x; memcpy(&x, src, 2); return PyLong_FromLong(x); }
	case 'i': { int32_t x; memcpy(&x, src, 4); return PyLong_FromLong(x); }
	case 'I': { uint32_t x; memcpy(&x, src, 4); return PyLong_FromUnsignedLong(x); }
	case 'l': case 'q': case 'n': { int64_t x; memcpy(&x, src, 8); return PyLong_FromLongLong(x); }
	case 'L': case 'Q': case 'N': { uint64_t x; memcpy(&x, src, 8); return PyLong_FromUnsignedLongLong(x); }
	case 'f': { float x; memcpy(&x, src, 4); return PyFloat_FromDouble(x); }
	case 'd': { double x; memcpy(&x, src, 8); return PyFloat_FromDouble(x); }
	case '?': return PyBool_FromLong(*(const uint8_t *)src != 0);
	case 'c': return PyBytes_FromStringAndSize((const char *)src, 1);
	case 'u': {
		uint32_t cp;
		memcpy(&cp, src, 4);
		if (cp > 0x10ffff) {
			PyErr_Format(PyExc_ValueError, "invalid code point %u", cp);
			return NULL;
		}
		Py_UCS4 u = cp;
		return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, &u, 1);
	}
	}
	PyErr_Format(PyExc_TypeError, "unsupported element type '%c'", c);
	return NULL;
}

/* the low bytes of an int64 as an element of type c */
PyObject *i64_to_py(char c, int64_t x)
{
	unsigned char b[8];
	memcpy(b, &x, 8); /* little-endian: low bytes first */
	return elem_to_py(c, b);
}

/* a Python object converted for type c, then widened to int64 bits */
int py_to_i64(char c, PyObject *o, int64_t *out)
{
	unsigned char b[8] = {0};
	if (elem_from_py(c, o, b) < 0)
		return -1;
	size_t sz = letter_size(c);
	uint64_t u = 0;
	memcpy(&u, b, sz);
	if (is_signed(c) && sz < 8 && (u >> (sz * 8 - 1)) & 1)
		u |= ~0ULL << (sz * 8);
	*out = (int64_t)u;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* type resolution: typecode or ctypes type -> shval type string             */

static int pointer_error(PyObject *t)
{
	PyErr_Format(PyExc_TypeError,
		     "%R is a pointer type: a pointer means nothing in another "
		     "process, so it cannot be shared; use a fixed-capacity "
		     "string instead, e.g. shval.Array('c', 64) or a '64s' value",
		     t);
	return -1;
}

int issub(PyObject *t, PyObject *base)
{
	if (!base)
		return 0;
	int r = PyObject_IsSubclass(t, base);
	if (r < 0)
		PyErr_Clear();
	return r > 0;
}

/* a ctypes simple type -> letter; 0 with an exception set on failure */
static char ctypes_letter(shval_state *st, PyObject *t)
{
	if (issub(t, st->ct_pointer) || issub(t, st->ct_funcptr)) {
		pointer_error(t);
		return 0;
	}
	if (!issub(t, st->ct_simple)) {
		PyErr_Format(PyExc_TypeError, "unsupported ctypes type %R", t);
		return 0;
	}
	PyObject *code = PyObject_GetAttrString(t, "_type_");
	if (!code)
		return 0;
	const char *s = PyUnicode_Check(code) ? PyUnicode_AsUTF8(code) : NULL;
	char c = s && strlen(s) == 1 ? s[0] : 0;
	Py_DECREF(code);
	if (!s)
		PyErr_Clear();
	if (c == 'z' || c == 'Z' || c == 'P') {
		pointer_error(t);
		return 0;
	}
	/* byte-swapped variants (c_int.__ctype_be__) are not native */
	PyObject *le = PyObject_GetAttrString(t, "__ctype_le__");
	PyObject *be = PyObject_GetAttrString(t, "__ctype_be__");
	PyErr_Clear();
	int swapped = (le && le != t && be && be != t) || (!le && be) || (le && !be);
	Py_XDECREF(le);
	Py_XDECREF(be);
	if (!is_scalar_letter(c) || (swapped && letter_size(c) > 1)) {
		PyErr_Format(PyExc_TypeError, "unsupported ctypes type %R", t);
		return 0;
	}
	return c;
}

int canonical(shval_state *st, const char *in, tinfo *ti)
{
	size_t sz;
	int r = shval_type_canonical(in, ti->type, sizeof ti->type, &sz);
	if (r) {
		set_error(st, r, shval_errmsg(NULL));
		return -1;
	}
	return 0;
}

int struct_type(shval_state *st, PyObject *t, tinfo *ti)
{
	if (issub(t, st->ct_union)) {
		PyErr_Format(PyExc_TypeError, "ctypes Union %R is not supported", t);
		return -1;
	}
	PyObject *fields = PyObject_GetAttrString(t, "_fields_");
	if (!fields)
		return -1;
	PyObject *seq = PySequence_Fast(fields, "_fields_ must be a sequence");
	Py_DECREF(fields);
	if (!seq)
		return -1;
	char buf[SHVAL_TYPE_MAX + 1];
	size_t len = 0;
	buf[0] = '\0';
	int ret = -1;
	for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
		PyObject *f = PySequence_Fast_GET_ITEM(seq, i);
		if (!PyTuple_Check(f) || PyTuple_GET_SIZE(f) < 2) {
			PyErr_SetString(PyExc_TypeError, "bad _fields_ entry");
			goto out;
		}
		if (PyTuple_GET_SIZE(f) > 2) {
			PyErr_Format(PyExc_TypeError, "bit fields are not supported (%R)", f);
			goto out;
		}
		const char *fname = PyUnicode_AsUTF8(PyTuple_GET_ITEM(f, 0));
		if (!fname)
			goto out;
		PyObject *ft = PyTuple_GET_ITEM(f, 1);
		char part[128];
		if (issub(ft, st->ct_array)) {
			PyObject *et = PyObject_GetAttrString(ft, "_type_");
			PyObject *ln = PyObject_GetAttrString(ft, "_length_");
			if (!et || !ln) {
				Py_XDECREF(et);
				Py_XDECREF(ln);
				goto out;
			}
			char c = issub(et, st->ct_struct) ? 0 : ctypes_letter(st, et);
			if (!c && !PyErr_Occurred())
				PyErr_Format(PyExc_TypeError, "arrays of structures are not supported (field %s)", fname);
			long n = PyLong_AsLong(ln);
			Py_DECREF(et);
			Py_DECREF(ln);
			if (!c || (n == -1 && PyErr_Occurred()))
				goto out;
			snprintf(part, sizeof part, "%s:%ld%c", fname, n, c);
		} else if (issub(ft, st->ct_struct) || issub(ft, st->ct_union)) {
			PyErr_Format(PyExc_TypeError, "nested structures are not supported (field %s)", fname);
			goto out;
		} else {
			char c = ctypes_letter(st, ft);
			if (!c)
				goto out;
			snprintf(part, sizeof part, "%s:%c", fname, c);
		}
		size_t pl = strlen(part);
		if (len + pl + 2 >= sizeof buf) {
			PyErr_SetString(PyExc_TypeError, "structure type too long");
			goto out;
		}
		if (len)
			buf[len++] = ' ';
		memcpy(buf + len, part, pl + 1);
		len += pl;
	}
	size_t sz = 0;
	int r = shval_type_canonical(buf, ti->type, sizeof ti->type, &sz);
	if (r) {
		set_error(st, r, shval_errmsg(NULL));
		goto out;
	}
	PyObject *ctypes = PyImport_ImportModule("ctypes");
	if (!ctypes)
		goto out;
	PyObject *csz = PyObject_CallMethod(ctypes, "sizeof", "O", t);
	Py_DECREF(ctypes);
	if (!csz)
		goto out;
	size_t want = PyLong_AsSize_t(csz);
	Py_DECREF(csz);
	if (want != sz) {
		PyErr_Format(PyExc_TypeError,
			     "%R: ctypes layout (%zu bytes) differs from shval's "
			     "natural C layout of '%s' (%zu bytes); _pack_ is not supported",
			     t, want, ti->type, sz);
		goto out;
	}
	ret = 0;
out:
	Py_DECREF(seq);
	return ret;
}

/* elem_only: Array element type (a scalar letter or simple ctypes type) */
int resolve_type(shval_state *st, PyObject *t, tinfo *ti, int elem_only)
{
	memset(ti, 0, sizeof *ti);
	if (PyUnicode_Check(t)) {
		const char *s = PyUnicode_AsUTF8(t);
		if (!s)
			return -1;
		if (strlen(s) == 1 && is_scalar_letter(s[0])) {
			ti->letter = s[0];
			ti->type[0] = s[0];
			return 0;
		}
		if (elem_only || strlen(s) <= 1 || shval_type_canonical(s, ti->type, sizeof ti->type, NULL) != 0) {
			PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
			return -1;
		}
		size_t l = strlen(ti->type);
		if (l == 1)
			ti->letter = ti->type[0];
		return 0;
	}
	if (!PyType_Check(t)) {
		PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
		return -1;
	}
	if (issub(t, st->ct_pointer) || issub(t, st->ct_funcptr))
		return pointer_error(t);
	if (issub(t, st->ct_simple)) {
		char c = ctypes_letter(st, t);
		if (!c)
			return -1;
		ti->letter = c;
		ti->type[0] = c;
		ti->ctype = t;
		return 0;
	}
	if (elem_only) {
		if (issub(t, st->ct_struct))
			PyErr_Format(PyExc_TypeError, "arrays of structures are not supported (%R)", t);
		else
			PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
		return -1;
	}
	if (issub(t, st->ct_array)) {
		PyObject *et = PyObject_GetAttrString(t, "_type_");
		PyObject *ln = PyObject_GetAttrString(t, "_length_");
		if (!et || !ln) {
			Py_XDECREF(et);
			Py_XDECREF(ln);
			return -1;
		}
		char c = ctypes_letter(st, et);
		long n = PyLong_AsLong(ln);
		Py_DECREF(et);
		Py_DECREF(ln);
		if (!c || (n == -1 && PyErr_Occurred()))
			return -1;
		char buf[64];
		snprintf(buf, sizeof buf, "%ld%c", n, c);
		if (canonical(st, buf, ti) < 0)
			return -1;
		ti->ctype = t;
		ti->is_ctypes_composite = 1;
		return 0;
	}
	if (issub(t, st->ct_struct) || issub(t, st->ct_union)) {
		if (struct_type(st, t, ti) < 0)
			return -1;
		ti->ctype = t;
		ti->is_ctypes_composite = 1;
		return 0;
	}
	PyErr_SetString(PyExc_TypeError, BAD_TYPECODE_MSG);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* METH_FASTCALL | METH_KEYWORDS argument parsing                            */

/* Sort the arguments of a vectorcall into out[] by the parameter names
 * names[] (NULL-terminated): the first npos may be given by position,
 * the first nreq are required; out[] must be NULL-initialised (a missing
 * optional argument stays NULL).  No private CPython API. */
int fast_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	      const char *const *names, Py_ssize_t npos, Py_ssize_t nreq, PyObject **out)
{
	Py_ssize_t nnames = 0;
	while (names[nnames])
		nnames++;
	if (nargs > npos) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %zd positional argument%s (%zd given)",
			     fname, npos, npos == 1 ? "" : "s", nargs);
		return -1;
	}
	for (Py_ssize_t i = 0; i < nargs; i++)
		out[i] = args[i];
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *key = PyTuple_GET_ITEM(kwnames, k);
		Py_ssize_t i = 0;
		for (; i < nnames; i++)
			if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0)
				break;
		if (i == nnames) {
			PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'",
				     fname, key);
			return -1;
		}
		if (out[i]) {
			PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
				     fname, names[i]);
			return -1;
		}
		out[i] = args[nargs + k];
	}
	for (Py_ssize_t i = 0; i < nreq; i++)
		if (!out[i]) {
			PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %zd)",
				     fname, names[i], i + 1);
			return -1;
		}
	return 0;
}

/* A name (of a value, lock or segment) as UTF-8 for the library: an
 * embedded NUL would end the C string early and name something else, so
 * it is a ValueError, as for os.open() (issue 11). */
const char *name_utf8(PyObject *o)
{
	Py_ssize_t n;
	const char *s = PyUnicode_AsUTF8AndSize(o, &n);
	if (s && strlen(s) != (size_t)n) {
		PyErr_Format(PyExc_ValueError,
			     "embedded null character in the name %R", o);
		return NULL;
	}
	return s;
}
