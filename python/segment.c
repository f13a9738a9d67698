/*
 * python/segment.c — shval.Segment: a named shared-memory segment of named values.
 * Part of the CPython extension shval._shval (see shval_py.h).
 */
#include "shval_py.h"

/* ------------------------------------------------------------------------ */
/* Segment                                                                   */

SegObject *seg_wrap(shval_state *st, shval_seg *seg, int borrowed)
{
	PyTypeObject *tp = st->SegmentType;
	SegObject *s = (SegObject *)tp->tp_alloc(tp, 0);
	if (!s) {
		if (!borrowed)
			shval_seg_close(seg);
		return NULL;
	}
	s->st = st;
	s->seg = seg;
	s->borrowed = borrowed;
	s->anon = shval_seg_name(seg)[0] == '\0';
	s->remote = strncmp(shval_seg_name(seg), "redis", 5) == 0;
	s->dev = 0;
	s->ino = 0;
	s->cache_name = NULL;
	struct stat sb;
	if (fstat(shval_seg_fd(seg), &sb) == 0) {
		s->dev = sb.st_dev;
		s->ino = sb.st_ino;
	}
	return s;
}

PyObject *devino_key(dev_t d, ino_t i)
{
	return Py_BuildValue("(KK)", (unsigned long long)d, (unsigned long long)i);
}

/* anon_cache maps an anonymous segment's (st_dev, st_ino) to the address
 * of its Segment object (an int): a weak map, so that the cache never keeps
 * a segment mapped (issue 12: the kernel frees a memfd when its last holder
 * closes it); seg_dealloc takes the entry out. */
SegObject *anon_cache_get(shval_state *st, PyObject *key)
{
	PyObject *a = PyDict_GetItemWithError(st->anon_cache, key);
	if (!a)
		return NULL;
	SegObject *s = PyLong_AsVoidPtr(a);
	if (!s)
		return NULL;
	Py_INCREF(s);
	return s;
}

int anon_cache_put(SegObject *s)
{
	PyObject *key = devino_key(s->dev, s->ino);
	PyObject *addr = key ? PyLong_FromVoidPtr(s) : NULL;
	int r = addr ? PyDict_SetItem(s->st->anon_cache, key, addr) : -1;
	Py_XDECREF(key);
	Py_XDECREF(addr);
	return r;
}

void anon_cache_forget(SegObject *s)
{
	if (!s->anon || !s->st || !s->st->anon_cache)
		return;
	PyObject *et, *ev, *tb;
	PyErr_Fetch(&et, &ev, &tb);
	PyObject *key = devino_key(s->dev, s->ino);
	PyObject *a = key ? PyDict_GetItemWithError(s->st->anon_cache, key) : NULL;
	if (a && PyLong_AsVoidPtr(a) == (void *)s)
		(void)PyDict_DelItem(s->st->anon_cache, key);
	Py_XDECREF(key);
	PyErr_Clear();
	PyErr_Restore(et, ev, tb);
}

/* named_cache (module.c, resolve_segref) is weak in the same way: a name
 * unpickled once keeps its segment only while values of it live. */
void named_cache_forget(SegObject *s)
{
	if (!s->cache_name)
		return;
	if (s->st && s->st->named_cache) {
		PyObject *et, *ev, *tb;
		PyErr_Fetch(&et, &ev, &tb);
		PyObject *a = PyDict_GetItemWithError(s->st->named_cache, s->cache_name);
		if (a && PyLong_AsVoidPtr(a) == (void *)s)
			(void)PyDict_DelItem(s->st->named_cache, s->cache_name);
		PyErr_Clear();
		PyErr_Restore(et, ev, tb);
	}
	Py_CLEAR(s->cache_name);
}

int check_open(SegObject *s)
{
	if (!s->seg) {
		PyErr_SetString(PyExc_ValueError, "operation on a closed segment");
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Segment type                                                              */

static PyObject *seg_new(PyTypeObject *tp, PyObject *args, PyObject *kw)
{
	shval_state *st = state_of_type(tp);
	if (!st)
		return NULL;
	static char *kwlist[] = {"name", "create", "size", "mode", "temp", "readonly", NULL};
	const char *name;
	int create = 0, temp = 0, rdonly = 0;
	PyObject *size = Py_None;
	unsigned mode = 0600;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|pOIpp:Segment", kwlist, &name, &create,
					 &size, &mode, &temp, &rdonly))
		return NULL;
	/* Room for any name the library takes (a file: path up to
	 * PATH_MAX - 1 bytes); a longer one is refused here, never cut. */
	char full[PATH_MAX + 16];
	int fl;
	if (name[0] != '/' && strncmp(name, "file:", 5) != 0 &&
	    strncmp(name, "redis://", 8) != 0 && strncmp(name, "redis+unix://", 13) != 0)
		fl = snprintf(full, sizeof full, "/%s", name);
	else
		fl = snprintf(full, sizeof full, "%s", name);
	if (fl < 0 || (size_t)fl >= sizeof full) {
		PyErr_Format(PyExc_ValueError,
			     "segment name of %zu bytes is too long (a file: path is at "
			     "most %d bytes, PATH_MAX - 1)", strlen(name), PATH_MAX - 1);
		return NULL;
	}
	shval_seg_opts o;
	memset(&o, 0, sizeof o);
	o.struct_size = sizeof o;
	o.mode = mode;
	if (size != Py_None) {
		o.max_size = PyLong_AsUnsignedLongLong(size);
		if (o.max_size == (uint64_t)-1 && PyErr_Occurred())
			return NULL;
	}
	unsigned flags = (create ? SHVAL_CREATE : 0) | (temp ? SHVAL_TEMP : 0) |
			 (rdonly ? SHVAL_RDONLY : 0);
	shval_seg *seg;
	int r;
	Py_BEGIN_ALLOW_THREADS
	r = shval_seg_open(full, flags, &o, &seg);
	Py_END_ALLOW_THREADS
	if (r) {
		set_error(st, r, shval_errmsg(NULL));
		return NULL;
	}
	return (PyObject *)seg_wrap(st, seg, 0);
}

static void seg_dealloc(SegObject *s)
{
	PyTypeObject *tp = Py_TYPE(s);
	PyObject_GC_UnTrack(s);
	anon_cache_forget(s);
	named_cache_forget(s);
	if (!s->borrowed && s->seg)
		shval_seg_close(s->seg);
	tp->tp_free(s);
	Py_DECREF(tp);
}

/* A Segment holds no object but its type; it is GC-tracked so that the
 * collector sees that reference (module state -> cur_pool -> Segment ->
 * type -> module is a cycle; anon_cache is weak and holds no Segment). */
static int seg_traverse(SegObject *s, visitproc visit, void *arg)
{
	Py_VISIT(Py_TYPE(s));
	return 0;
}

static PyObject *seg_close(SegObject *s, PyObject *Py_UNUSED(a))
{
	if (s->seg && !s->borrowed)
		shval_seg_close(s->seg);
	s->seg = NULL;
	Py_RETURN_NONE;
}

static PyObject *seg_enter(SegObject *s, PyObject *Py_UNUSED(a))
{
	Py_INCREF(s);
	return (PyObject *)s;
}

static PyObject *seg_exit(SegObject *s, PyObject *Py_UNUSED(a))
{
	return seg_close(s, NULL);
}

static PyObject *wrap_found(SegObject *s, shval *h)
{
	struct shval_info info;
	int r = shval_info(h, &info);
	if (r) {
		shval_close(h);
		seg_error(s->st, s->seg, r);
		return NULL;
	}
	if (info.kind == SHVAL_KIND_LOCK)
		return lock_wrap(h, s, info.mode == SHVAL_RLOCK, 0);
	size_t tl = strlen(info.type);
	int sync = info.mode == SHVAL_RLOCK || info.mode == SHVAL_LOCK;
	return val_wrap(pick_type(s->st, info.kind, tl ? info.type[tl - 1] : 0, sync), h, s, NULL, NULL, NULL, 0);
}

static PyObject *seg_getitem(SegObject *s, PyObject *key)
{
	if (check_open(s) < 0)
		return NULL;
	const char *name = name_utf8(key);
	if (!name)
		return NULL;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r) {
		seg_error(s->st, s->seg, r);
		return NULL;
	}
	return wrap_found(s, h);
}

static int seg_delitem(SegObject *s, PyObject *key, PyObject *val)
{
	if (val) {
		PyErr_SetString(PyExc_TypeError, "use seg.value(name, type, init) to create values");
		return -1;
	}
	if (check_open(s) < 0)
		return -1;
	const char *name = name_utf8(key);
	if (!name)
		return -1;
	int r = shval_remove(s->seg, name);
	if (r) {
		seg_error(s->st, s->seg, r);
		return -1;
	}
	return 0;
}

static int seg_contains(SegObject *s, PyObject *key)
{
	if (check_open(s) < 0)
		return -1;
	const char *name = name_utf8(key);
	if (!name)
		return -1;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r == 0) {
		shval_close(h);
		return 1;
	}
	if (r == SHVAL_ENOTFOUND || r == SHVAL_EBADNAME)
		return 0;
	seg_error(s->st, s->seg, r);
	return -1;
}

/* ---- Segment.batch(ops): shval_batch_* (include/shval.h "Batches") ---- */

enum { BOP_GET, BOP_READ, BOP_SET, BOP_WRITE, BOP_ADD };

struct bitem {
	int kind;
	ValObject *v;       /* borrowed from the ops sequence (kept alive) */
	PyObject *bytes;    /* read: the result, filled by the run */
	uint64_t buf[2];    /* get: the scalar's bytes */
	int64_t i;
	double d;
	int rc;
};

static int is_value(shval_state *st, PyObject *o)
{
	return PyObject_TypeCheck(o, st->SharedValueType) ||
	       PyObject_TypeCheck(o, st->SynchronizedType) ||
	       PyObject_TypeCheck(o, st->SharedArrayType) ||
	       PyObject_TypeCheck(o, st->SynchronizedArrayType) ||
	       PyObject_TypeCheck(o, st->SynchronizedStringType);
}

/* Queue one (op, value[, arg]); -1 with an exception. */
static int batch_queue(shval_state *st, shval_seg *bseg, shval_batch *b, PyObject *t,
		       Py_ssize_t i, struct bitem *it)
{
	if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 2 || PyTuple_GET_SIZE(t) > 3) {
		PyErr_Format(PyExc_TypeError, "batch op %zd: not an (op, value[, arg]) tuple", i);
		return -1;
	}
	PyObject *op = PyTuple_GET_ITEM(t, 0), *vo = PyTuple_GET_ITEM(t, 1);
	PyObject *arg = PyTuple_GET_SIZE(t) == 3 ? PyTuple_GET_ITEM(t, 2) : NULL;
	const char *name = PyUnicode_Check(op) ? PyUnicode_AsUTF8(op) : NULL;
	if (!name) {
		PyErr_Clear();
		PyErr_Format(PyExc_TypeError, "batch op %zd: the op is not a str", i);
		return -1;
	}
	static const char *const names[] = {"get", "read", "set", "write", "add"};
	int k = -1;
	for (int j = 0; j < 5; j++)
		if (strcmp(name, names[j]) == 0)
			k = j;
	if (k < 0) {
		PyErr_Format(PyExc_ValueError,
			     "batch op %zd: unknown op %R (get, read, set, write, add)", i, op);
		return -1;
	}
	if (!is_value(st, vo)) {
		PyErr_Format(PyExc_TypeError, "batch op %zd: %R is not a shval value", i, vo);
		return -1;
	}
	ValObject *v = (ValObject *)vo;
	if (v->extlock) {
		PyErr_Format(PyExc_ValueError,
			     "batch op %zd: a synchronized() value (its external lock is not "
			     "taken in a batch)", i);
		return -1;
	}
	if ((k == BOP_SET || k == BOP_WRITE || k == BOP_ADD) != (arg != NULL)) {
		PyErr_Format(PyExc_TypeError, "batch op %zd: %s takes %s", i, name,
			     arg ? "no argument" : "one argument");
		return -1;
	}
	if ((k == BOP_GET || k == BOP_SET || k == BOP_ADD) &&
	    (v->kind != SHVAL_KIND_SCALAR || (k == BOP_ADD && !v->numeric))) {
		PyErr_Format(PyExc_TypeError, "batch op %zd: %s needs a %s value (read/write take "
			     "any value as bytes)", i, name, k == BOP_ADD ? "numeric" : "scalar");
		return -1;
	}
	it->kind = k;
	it->v = v;
	int r = 0;
	switch (k) {
	case BOP_GET:
		r = shval_batch_read(b, v->h, it->buf, v->size, &it->rc);
		break;
	case BOP_READ:
		it->bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)v->size);
		if (!it->bytes)
			return -1;
		r = shval_batch_read(b, v->h, PyBytes_AS_STRING(it->bytes), v->size, &it->rc);
		break;
	case BOP_SET: {
		uint64_t tmp[2] = {0, 0};
		if (elem_from_py(v->letter, arg, tmp) < 0)
			return -1;
		r = shval_batch_write(b, v->h, tmp, v->size, &it->rc);
		break;
	}
	case BOP_WRITE: {
		Py_buffer view;
		if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
			return -1;
		r = shval_batch_write(b, v->h, view.buf, (size_t)view.len, &it->rc);
		PyBuffer_Release(&view);
		break;
	}
	case BOP_ADD:
		if (v->isfloat) {
			double d = PyFloat_AsDouble(arg);
			if (d == -1.0 && PyErr_Occurred())
				return -1;
			r = shval_batch_add_f64(b, v->h, d, &it->d, &it->rc);
		} else {
			int of = 0;
			if (!PyLong_Check(arg)) {
				PyErr_Format(PyExc_TypeError, "batch op %zd: an integer delta is required", i);
				return -1;
			}
			long long d = PyLong_AsLongLongAndOverflow(arg, &of);
			if (of) {
				PyErr_Format(PyExc_ValueError, "batch op %zd: delta out of 64-bit range", i);
				return -1;
			}
			if (d == -1 && PyErr_Occurred())
				return -1;
			r = shval_batch_add_i64(b, v->h, d, &it->i, &it->rc);
		}
		break;
	}
	if (r) {
		seg_error(st, bseg, r); /* the message is the batch segment's */
		return -1;
	}
	return 0;
}

/* The exception a failed op's code stands for, as an object (not raised). */
static PyObject *batch_exc(shval_state *st, int code, const char *msg)
{
	set_error(st, code, msg);
	PyObject *t, *val, *tb;
	PyErr_Fetch(&t, &val, &tb);
	PyErr_NormalizeException(&t, &val, &tb);
	Py_XDECREF(t);
	Py_XDECREF(tb);
	return val;
}

static PyObject *seg_batch(SegObject *s, PyObject *ops)
{
	shval_state *st = s->st;
	if (!s->seg) {
		PyErr_SetString(PyExc_ValueError, "the segment is closed");
		return NULL;
	}
	PyObject *seq = PySequence_Fast(ops, "batch() takes a sequence of (op, value[, arg]) tuples");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	struct bitem *it = PyMem_Calloc(n ? (size_t)n : 1, sizeof *it);
	shval_batch *b = NULL;
	PyObject *res = NULL;
	int r;
	if (!it) {
		PyErr_NoMemory();
		goto out;
	}
	if ((r = shval_batch_new(s->seg, &b)) != 0) {
		seg_error(st, s->seg, r);
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++)
		if (batch_queue(st, s->seg, b, PySequence_Fast_GET_ITEM(seq, i), i, &it[i]) < 0)
			goto out;
	size_t nf = 0;
	Py_BEGIN_ALLOW_THREADS
	r = shval_batch_run(b, &nf);
	Py_END_ALLOW_THREADS
	char first[600];
	snprintf(first, sizeof first, "%s", r ? shval_errmsg(s->seg) : "");
	int first_done = 0;
	res = PyList_New(n);
	for (Py_ssize_t i = 0; res && i < n; i++) {
		PyObject *x = NULL;
		if (it[i].rc) {
			char msg[700];
			if (!first_done && it[i].rc == r) {
				snprintf(msg, sizeof msg, "%s", first);
				first_done = 1;
			} else
				snprintf(msg, sizeof msg, "batch op %zd of %zd", i + 1, n);
			x = batch_exc(st, it[i].rc, msg);
		} else
			switch (it[i].kind) {
			case BOP_GET:
				x = elem_to_py(it[i].v->letter, it[i].buf);
				break;
			case BOP_READ:
				x = it[i].bytes;
				it[i].bytes = NULL;
				break;
			case BOP_ADD:
				x = it[i].v->isfloat ? PyFloat_FromDouble(it[i].d)
						     : i64_to_py(it[i].v->letter, it[i].i);
				break;
			default:
				x = Py_None;
				Py_INCREF(x);
			}
		if (!x) {
			Py_CLEAR(res);
			break;
		}
		PyList_SET_ITEM(res, i, x);
	}
out:
	if (it)
		for (Py_ssize_t i = 0; i < n; i++)
			Py_XDECREF(it[i].bytes);
	PyMem_Free(it);
	shval_batch_free(b);
	Py_DECREF(seq);
	return res;
}

static PyObject *seg_names(SegObject *s, PyObject *args)
{
	const char *prefix = NULL;
	if (!PyArg_ParseTuple(args, "|z:names", &prefix))
		return NULL;
	if (check_open(s) < 0)
		return NULL;
	PyObject *l = PyList_New(0);
	if (!l)
		return NULL;
	uint64_t cur = 0;
	struct shval_info *info = PyMem_Malloc(sizeof *info);
	if (!info) {
		Py_DECREF(l);
		return PyErr_NoMemory();
	}
	int r;
	while ((r = shval_seg_next(s->seg, &cur, prefix, info)) == 0) {
		PyObject *n = PyUnicode_FromString(info->name);
		if (!n || PyList_Append(l, n) < 0) {
			Py_XDECREF(n);
			Py_DECREF(l);
			PyMem_Free(info);
			return NULL;
		}
		Py_DECREF(n);
	}
	PyMem_Free(info);
	if (r != SHVAL_ENOTFOUND) {
		Py_DECREF(l);
		seg_error(s->st, s->seg, r);
		return NULL;
	}
	return l;
}

/* find (any mode) or create a named value of type ti */
/* lock=: True (own lock), False (raw/atomic), or a shval Lock/RLock of
 * this segment that is to guard the value (*glock).  Anything else is a
 * TypeError (issue 11: a foreign lock's truth value was taken, and the
 * value got its own lock, so `with L:` guarded nothing). */
static int seg_lock_arg(SegObject *s, PyObject *x, int *lock, PyObject **glock)
{
	*glock = NULL;
	if (PyLong_Check(x)) { /* True, False, 0, 1 as before */
		*lock = PyObject_IsTrue(x);
		return *lock < 0 ? -1 : 0;
	}
	if (!is_lock(s->st, x)) {
		PyErr_Format(PyExc_TypeError,
			     "lock must be True, False or a shval.Lock/RLock of this segment "
			     "(seg.lock(name)), not %.100s: a shval value can only be "
			     "guarded by a shval lock",
			     Py_TYPE(x)->tp_name);
		return -1;
	}
	LockObject *l = (LockObject *)x;
	if (check_open(s) < 0 || check_open(l->seg) < 0)
		return -1;
	if (l->own_value_lock) {
		PyErr_Format(PyExc_TypeError,
			     "lock %R is a value's own lock; guard values with a lock "
			     "entry (seg.lock(name))", x);
		return -1;
	}
	if (l->seg->seg != s->seg) {
		PyErr_Format(PyExc_ValueError,
			     "lock %R is in another segment: a value can only be "
			     "guarded by a lock of its own segment", x);
		return -1;
	}
	*lock = 1;
	*glock = x;
	return 0;
}

static PyObject *seg_get_or_create(SegObject *s, const char *name, tinfo *ti,
				   const void *init, size_t init_len, PyObject *late_init,
				   int lock, PyObject *glock)
{
	shval *h;
	int r = shval_find(s->seg, name, ti->type, &h);
	int created = 0;
	PyObject *lb = NULL;
	if (r == SHVAL_ENOTFOUND && late_init) {
		/* All or nothing (issue 11): convert the initialiser into the
		 * value's bytes in a private scratch value first, so that a bad
		 * one creates nothing, and a good one is the creation's init
		 * (never a created value set afterwards, half or not at all). */
		PyObject *tmp = create_anon(s->st, ti, NULL, 0, LK_RAW, NULL);
		if (!tmp)
			return NULL;
		if (PyObject_SetAttrString(tmp, "value", late_init) == 0)
			lb = read_bytes((ValObject *)tmp);
		Py_DECREF(tmp);
		if (!lb)
			return NULL;
		init = PyBytes_AS_STRING(lb);
		init_len = (size_t)PyBytes_GET_SIZE(lb);
	}
	if (r == SHVAL_ENOTFOUND && glock) {
		shval *gh = ((LockObject *)glock)->h;
		Py_BEGIN_ALLOW_THREADS
		r = shval_create_guarded(s->seg, name, ti->type, gh, init, init_len, &h);
		Py_END_ALLOW_THREADS
		if (r == 0)
			created = 1;
		else if (r == SHVAL_EEXIST)
			r = shval_find(s->seg, name, ti->type, &h);
	} else if (r == SHVAL_ENOTFOUND) {
		bool c = false;
		unsigned mode = lock ? SHVAL_RLOCK : raw_mode(ti->type);
		Py_BEGIN_ALLOW_THREADS
		r = shval_find_or_create(s->seg, name, ti->type, mode, init, init_len, &h, &c);
		Py_END_ALLOW_THREADS
		created = c;
	}
	Py_XDECREF(lb);
	if (r) {
		seg_error(s->st, s->seg, r);
		return NULL;
	}
	PyObject *v = wrap_found(s, h);
	if (v && ti->ctype)
		((ValObject *)v)->ctype = Py_NewRef(ti->ctype);
	/* created under glock: get_lock() is that lock, as multiprocessing's
	 * Value(lock=L); a value found keeps its own guard (get_lock() gives
	 * a handle on it) */
	if (v && created && glock && is_sync(s->st, v))
		Py_XSETREF(((ValObject *)v)->lock, Py_NewRef(glock));
	return v;
}

static PyObject *seg_value(SegObject *s, PyObject *args, PyObject *kw)
{
	int lock = 1;
	PyObject *glock = NULL;
	if (kw) {
		PyObject *k, *x;
		Py_ssize_t pos = 0;
		while (PyDict_Next(kw, &pos, &k, &x)) {
			if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "lock") == 0) {
				if (seg_lock_arg(s, x, &lock, &glock) < 0)
					return NULL;
			} else {
				PyErr_Format(PyExc_TypeError, "value() got an unexpected keyword argument %R", k);
				return NULL;
			}
		}
	}
	Py_ssize_t na = PyTuple_GET_SIZE(args);
	if (na < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(args, 0))) {
		PyErr_SetString(PyExc_TypeError, "value(name, typecode=None, *init, lock=True)");
		return NULL;
	}
	if (check_open(s) < 0)
		return NULL;
	PyObject *key = PyTuple_GET_ITEM(args, 0);
	if (na == 1 || PyTuple_GET_ITEM(args, 1) == Py_None)
		return seg_getitem(s, key);
	const char *name = name_utf8(key);
	if (!name)
		return NULL;
	tinfo ti;
	if (resolve_type(s->st, PyTuple_GET_ITEM(args, 1), &ti, 0) < 0)
		return NULL;
	PyObject *rest = PyTuple_GetSlice(args, 2, na);
	if (!rest)
		return NULL;
	PyObject *res = NULL;
	if (ti.is_ctypes_composite) {
		PyObject *b = ctypes_init(ti.ctype, PySequence_Fast_ITEMS(rest), PyTuple_GET_SIZE(rest));
		if (b) {
			res = seg_get_or_create(s, name, &ti, PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(b), NULL, lock, glock);
			Py_DECREF(b);
		}
	} else if (ti.letter && strlen(ti.type) == 1) {
		unsigned char b[16] = {0};
		if (PyTuple_GET_SIZE(rest) > 1)
			PyErr_SetString(PyExc_TypeError, "a scalar takes at most 1 initializer");
		else if (PyTuple_GET_SIZE(rest) == 0 || elem_from_py(ti.letter, PyTuple_GET_ITEM(rest, 0), b) == 0)
			res = seg_get_or_create(s, name, &ti, b, letter_size(ti.letter), NULL, lock, glock);
	} else {
		if (PyTuple_GET_SIZE(rest) > 1)
			PyErr_SetString(PyExc_TypeError, "takes at most 1 initializer");
		else
			res = seg_get_or_create(s, name, &ti, NULL, 0,
						PyTuple_GET_SIZE(rest) ? PyTuple_GET_ITEM(rest, 0) : NULL, lock,
						glock);
	}
	Py_DECREF(rest);
	return res;
}

static PyObject *seg_array(SegObject *s, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "typecode", "size_or_initializer", "lock", NULL};
	const char *name;
	PyObject *t, *init, *lockarg = Py_True, *glock;
	int lock = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "sOO|$O:array", kwlist, &name, &t, &init, &lockarg))
		return NULL;
	if (check_open(s) < 0 || seg_lock_arg(s, lockarg, &lock, &glock) < 0)
		return NULL;
	tinfo ti;
	size_t n;
	PyObject *bytes = array_init(s->st, t, init, &ti, &n);
	if (!bytes)
		return NULL;
	Py_ssize_t bl = PyBytes_GET_SIZE(bytes);
	PyObject *res = seg_get_or_create(s, name, &ti, bl ? PyBytes_AS_STRING(bytes) : NULL, (size_t)bl, NULL, lock, glock);
	Py_DECREF(bytes);
	return res;
}

static PyObject *seg_lock(SegObject *s, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = {"name", "recursive", NULL};
	const char *name;
	int recursive = 1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "s|p:lock", kwlist, &name, &recursive))
		return NULL;
	if (check_open(s) < 0)
		return NULL;
	shval *h;
	int r = shval_find(s->seg, name, NULL, &h);
	if (r == SHVAL_ENOTFOUND) {
		r = shval_lock_create(s->seg, name, recursive ? SHVAL_RLOCK : SHVAL_LOCK, &h);
		if (r == SHVAL_EEXIST)
			r = shval_find(s->seg, name, NULL, &h);
	}
	if (r) {
		seg_error(s->st, s->seg, r);
		return NULL;
	}
	return wrap_found(s, h);
}

static PyObject *seg_name_get(SegObject *s, void *Py_UNUSED(c))
{
	if (check_open(s) < 0)
		return NULL;
	return PyUnicode_FromString(shval_seg_name(s->seg));
}

static PyObject *seg_closed_get(SegObject *s, void *Py_UNUSED(c))
{
	return PyBool_FromLong(s->seg == NULL);
}

static PyObject *seg_reduce(SegObject *s, PyObject *Py_UNUSED(a))
{
	PyObject *ref = seg_ref(s);
	if (!ref)
		return NULL;
	PyObject *fn = module_attr("_rebuild_segment");
	if (!fn) {
		Py_DECREF(ref);
		return NULL;
	}
	return Py_BuildValue("(N(N))", fn, ref);
}

PyObject *m_rebuild_segment(PyObject *m, PyObject *ref)
{
	return (PyObject *)resolve_segref(PyModule_GetState(m), ref);
}

static PyObject *seg_repr(SegObject *s)
{
	if (!s->seg)
		return PyUnicode_FromString("<shval.Segment (closed)>");
	return PyUnicode_FromFormat("<shval.Segment %s>", s->anon ? "(anonymous)" : shval_seg_name(s->seg));
}

static PyMethodDef seg_methods[] = {
	{"value", (PyCFunction)(void (*)(void))seg_value, METH_VARARGS | METH_KEYWORDS,
	 "value($self, name, typecode=None, *init, lock=True)\n--\n\n"
	 "Find the named value, or create it with typecode and init."},
	{"array", (PyCFunction)(void (*)(void))seg_array, METH_VARARGS | METH_KEYWORDS,
	 "array($self, /, name, typecode, size_or_initializer, *, lock=True)\n--\n\n"
	 "Find or create a named array."},
	{"lock", (PyCFunction)(void (*)(void))seg_lock, METH_VARARGS | METH_KEYWORDS,
	 "lock($self, /, name, recursive=True)\n--\n\nFind or create a named shared lock."},
	{"batch", (PyCFunction)seg_batch, METH_O,
	 "batch($self, ops, /)\n--\n\n"
	 "Perform [(op, value[, arg]), ...] together: op is 'get', 'read' (bytes), "
	 "'set', 'write' (bytes) or 'add'; values of this segment.  On a Redis segment "
	 "one pipeline (one round trip); locally the single calls in turn.  Returns a list, "
	 "one result per op (get: the value; read: bytes; add: the new value; set/write: "
	 "None), or for a failed op its exception object (returned, not raised: the other "
	 "ops are still applied).  Not a transaction (include/shval.h, Batches)."},
	{"names", (PyCFunction)seg_names, METH_VARARGS,
	 "names($self, prefix=None, /)\n--\n\nThe names in the segment (starting with prefix)."},
	{"close", (PyCFunction)seg_close, METH_NOARGS,
	 "close($self, /)\n--\n\nClose the segment (values keep their own references)."},
	{"__enter__", (PyCFunction)seg_enter, METH_NOARGS,
	 "__enter__($self, /)\n--\n\nThe segment itself, for `with`."},
	{"__exit__", (PyCFunction)seg_exit, METH_VARARGS,
	 "__exit__($self, /, *exc_info)\n--\n\nclose() after `with`."},
	{"__reduce__", (PyCFunction)seg_reduce, METH_NOARGS, REDUCE_DOC},
	{NULL, NULL, 0, NULL}
};

static PyGetSetDef seg_getset[] = {
	{"name", (getter)seg_name_get, NULL, "the segment's name", NULL},
	{"closed", (getter)seg_closed_get, NULL, "True after close()", NULL},
	{NULL, NULL, NULL, NULL, NULL}
};

static PyType_Slot seg_slots[] = {
	{Py_tp_dealloc, seg_dealloc},
	{Py_tp_traverse, seg_traverse},
	{Py_tp_repr, seg_repr},
	{Py_mp_subscript, seg_getitem},
	{Py_mp_ass_subscript, seg_delitem},
	{Py_sq_contains, seg_contains},
	{Py_tp_doc, "Segment(name, create=False, size=None, mode=0o600, temp=False, readonly=False)\n--\n\n"
		    "A named shared-memory segment of named values."},
	{Py_tp_methods, seg_methods},
	{Py_tp_getset, seg_getset},
	{Py_tp_new, seg_new},
	{0, NULL}
};

PyType_Spec seg_spec = {
	.name = "shval.Segment",
	.basicsize = sizeof(SegObject),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE,
	.slots = seg_slots,
};
