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

/* ------------------------------------------------------------------------ */
/* where anonymous values live (issue 12; python/README.md, "Lifetime and   */
/* sizes")                                                                   */
/*
 * Every Value/Array/RawValue/RawArray/Lock lives in an anonymous (memfd)
 * segment that this module creates itself (not the library's one 1 GiB
 * process-wide segment of shval_new()):
 *
 *  - solo: a value of more than SOLO_MIN bytes gets a segment of its own,
 *    sized to fit it (initial = maximum size = the value plus the segment's
 *    own overhead).  Nothing is ever removed from it: the kernel counts the
 *    holders.  Every process that holds the value has the memfd mapped
 *    (fork children inherit the mapping, unpickled copies attach the fd),
 *    and the memory goes back to the system when the last of them closes
 *    it or dies.  The ceiling is what the machine can back (checked
 *    against MemAvailable first) and the library's 256 GiB value limit.
 *  - pool: smaller values and locks share a pool segment per process
 *    (POOL_MAX of address space, backed as it fills).  A new pool is
 *    started when the current one has POOL_ROLL bytes in use, so a pool is
 *    a bounded unit of memory that is reclaimed, by the kernel, once no
 *    process holds any value in it.  Inside a pool the creating process
 *    removes a value when it drops it, if the value never escaped: never
 *    pickled (shared_out), and no fork since it was created (fork_mark ==
 *    fork_count, counted by a pthread_atfork prepare handler in lock.c:
 *    process-wide, as fork_gen).  An escaped small value stays until its
 *    whole pool goes.  The pool (cur_pool) and the name counter are the
 *    module state's (shval_py.h), one per module object.
 *  - a value guarded by a shval.Lock (lock=Lock()) must live in the lock's
 *    segment (shval_create_guarded): the lock's pool, whatever its size.
 *
 * Segments are looked up by (st_dev, st_ino) in the module state's
 * anon_cache when unpickled; the cache is weak (segment.c), so it never
 * keeps a segment mapped.
 */
#define SOLO_MIN ((size_t)65536)      /* larger values: their own segment */
#define SOLO_OVERHEAD ((uint64_t)32768) /* header, directory, entry, type */
#define POOL_ROLL ((uint64_t)1 << 20)  /* start a new pool past this */
#define POOL_MAX ((uint64_t)1 << 30)   /* a pool's address space */
#define MEMCHECK_MIN ((size_t)16 << 20) /* check MemAvailable from here */

/* A new anonymous segment, registered in anon_cache (new reference). */
static SegObject *new_anon_seg(shval_state *st, uint64_t initial, uint64_t max)
{
	shval_seg_opts o;
	memset(&o, 0, sizeof o);
	o.struct_size = sizeof o;
	o.initial_size = initial;
	o.max_size = max;
	shval_seg *seg;
	int r;
	Py_BEGIN_ALLOW_THREADS
	r = shval_seg_open(NULL, SHVAL_CREATE, &o, &seg);
	Py_END_ALLOW_THREADS
	if (r) {
		if (r == -ENOMEM || r == -ENOSPC)
			PyErr_Format(PyExc_MemoryError,
				     "cannot create a shared-memory segment of %llu "
				     "bytes: %s",
				     (unsigned long long)initial, shval_errmsg(NULL));
		else
			set_error(st, r, shval_errmsg(NULL));
		return NULL;
	}
	SegObject *so = seg_wrap(st, seg, 0);
	if (so && anon_cache_put(so) < 0)
		Py_CLEAR(so);
	return so;
}

/* This process's current pool (borrowed: st->cur_pool holds it), a new
 * one if roll. */
static SegObject *pool(shval_state *st, int roll)
{
	SegObject *cur = (SegObject *)st->cur_pool;
	if (cur && cur->seg && !roll) {
		struct shval_seg_info si;
		if (shval_seg_info(cur->seg, &si) == 0 && si.used < POOL_ROLL)
			return cur;
	}
	SegObject *n = new_anon_seg(st, 0, POOL_MAX);
	if (!n)
		return NULL;
	Py_XSETREF(st->cur_pool, (PyObject *)n);
	return n;
}

/* Bytes the machine can still give (MemAvailable), or UINT64_MAX. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return UINT64_MAX;
	char line[128];
	unsigned long long kb;
	uint64_t res = UINT64_MAX;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
			res = (uint64_t)kb * 1024;
			break;
		}
	fclose(f);
	return res;
}

static int is_memory_error(int r)
{
	return r == -ENOMEM || r == -ENOSPC || r == SHVAL_EFULL;
}

static void create_error(shval_state *st, shval_seg *seg, int r, const char *type, size_t size)
{
	if (is_memory_error(r))
		PyErr_Format(PyExc_MemoryError,
			     "cannot allocate a shared value of %zu bytes "
			     "(type '%.60s'): %s",
			     size, type, shval_errmsg(seg));
	else
		seg_error(st, seg, r);
}

/* Create a value (or, with type NULL, a lock: mode SHVAL_LOCK/RLOCK) in a
 * new anonymous place as described above.  *segp: new reference. */
static int anon_create(shval_state *st, const char *type, size_t size, unsigned mode,
		       shval *guard, SegObject *guard_seg, const void *init,
		       size_t init_len, shval **h, SegObject **segp)
{
	char name[64];
	snprintf(name, sizeof name, "%s.%ld.%lu.%lu", type ? "v" : "lock",
		 (long)getpid(), st->id, ++st->name_counter);
	*segp = NULL;
	if (guard) {
		int r = shval_create_guarded(guard_seg->seg, name, type, guard,
					     init, init_len, h);
		if (r) {
			create_error(st, guard_seg->seg, r, type, size);
			return -1;
		}
		*segp = (SegObject *)Py_NewRef((PyObject *)guard_seg);
		return 0;
	}
	if (type && size > SOLO_MIN) {
		if (size >= MEMCHECK_MIN) {
			uint64_t avail = mem_available();
			if (size > avail) {
				PyErr_Format(PyExc_MemoryError,
					     "cannot allocate a shared value of %zu "
					     "bytes (type '%.60s'): the machine has "
					     "%llu bytes available (MemAvailable)",
					     size, type, (unsigned long long)avail);
				return -1;
			}
		}
		uint64_t want = ((uint64_t)size + SOLO_OVERHEAD + 4095) / 4096 * 4096;
		SegObject *s = new_anon_seg(st, want, want);
		if (!s)
			return -1;
		int r = shval_create(s->seg, name, type, mode, init, init_len, h);
		if (r) {
			create_error(st, s->seg, r, type, size);
			Py_DECREF(s);
			return -1;
		}
		*segp = s;
		return 0;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		SegObject *p = pool(st, attempt);
		if (!p)
			return -1;
		int r = type ? shval_create(p->seg, name, type, mode, init,
					    init_len, h)
			     : shval_lock_create(p->seg, name, mode, h);
		if (r == 0) {
			*segp = (SegObject *)Py_NewRef((PyObject *)p);
			return 0;
		}
		if (r != SHVAL_EFULL || attempt) {
			create_error(st, p->seg, r, type ? type : "lock", size);
			return -1;
		}
	}
	return -1;
}

/* A new lock entry (Lock(), RLock()): *segp a new reference. */
int anon_lock_create(shval_state *st, int recursive, shval **h, SegObject **segp)
{
	return anon_create(st, NULL, 0, recursive ? SHVAL_RLOCK : SHVAL_LOCK, NULL,
			   NULL, NULL, 0, h, segp);
}

/* Create a value in an anonymous segment and wrap it. */
PyObject *create_anon(shval_state *st, const tinfo *ti, const void *init, size_t init_len,
			     enum lockmode lm, PyObject *lockobj)
{
	size_t size = 0;
	char canon[SHVAL_TYPE_MAX + 1];
	int r = shval_type_canonical(ti->type, canon, sizeof canon, &size);
	if (r) {
		set_error(st, r, shval_errmsg(NULL));
		return NULL;
	}
	shval *h;
	SegObject *seg;
	LockObject *guard = lm == LK_SHARED ? (LockObject *)lockobj : NULL;
	if (guard && check_open(guard->seg) < 0)
		return NULL;
	unsigned mode = lm == LK_RAW ? raw_mode(ti->type) : SHVAL_RLOCK;
	if (anon_create(st, ti->type, size, mode, guard ? guard->h : NULL,
			guard ? guard->seg : NULL, init, init_len, &h, &seg) < 0)
		return NULL;
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
		Py_DECREF(seg);
		return NULL;
	}
	Py_DECREF(seg); /* v holds it */
	v->owner = 1;
	v->owner_pid = getpid();
	v->fork_mark = fork_count;
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

/* The library stores array lengths in 32 bits (src/type.c): a longer
 * array is refused here with its size rather than as a bad type string. */
static int check_count(size_t n, size_t esize)
{
	if (n <= UINT32_MAX)
		return 0;
	PyErr_Format(PyExc_MemoryError,
		     "cannot allocate a shared array of %zu elements (%zu bytes): "
		     "at most %u elements per array",
		     n, n * esize, (unsigned)UINT32_MAX);
	return -1;
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
			if (n > SIZE_MAX / ssz) {
				PyErr_Format(PyExc_MemoryError, "cannot allocate a shared "
					     "array of %zu structures", n);
				return NULL;
			}
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
		if (check_count(n * ssz, 1) < 0) {
			Py_DECREF(bytes);
			return NULL;
		}
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
		if (check_count(n, es) < 0)
			return NULL;
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
		if (check_count(n, es) < 0) {
			Py_DECREF(seq);
			return NULL;
		}
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
