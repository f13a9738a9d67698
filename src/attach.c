/*
 * src/attach.c — the attach table (which processes use a segment: one slot
 * each, claimed lock-free, reaped under the segment lock), temporary
 * segments whose processes all died, and the process's list of open
 * segments that a forked child re-attaches (pthread_atfork).
 */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "internal.h"

/* ---- process list (for fork) ---- */

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static shval_seg *open_list;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&open_lock);
}
static void atfork_parent(void)
{
	pthread_mutex_unlock(&open_lock);
}
/* This process's pid, cached (getpid() is a system call, microseconds on
 * a loaded VM, and a pin and unpin ask three times): cleared in a forked
 * child by atfork_child before anything else.  A child made without the
 * fork handlers (a raw clone) would see its parent's pid: not supported,
 * as for the re-attach below. */
static _Atomic pid_t cached_pid;

pid_t shval__pid(void)
{
	pid_t p = atomic_load_explicit(&cached_pid, memory_order_relaxed);
	if (__builtin_expect(p == 0, 0)) {
		p = getpid();
		atomic_store_explicit(&cached_pid, p, memory_order_relaxed);
	}
	return p;
}

static void atfork_child(void)
{
	atomic_store_explicit(&cached_pid, 0, memory_order_relaxed);
	atomic_fetch_add(&shval__fork_gen, 1); /* new thread ids (lock.c) */
	shval__me_forked();
	/* The child is a new process: give it its own attach slot in every
	 * segment the parent had attached (lock-free CAS claim). */
	for (shval_seg *s = open_list; s; s = s->next_open) {
		if (s->attach_slot >= 0 && !s->user_closed) {
			s->attach_slot = -1;
			shval__attach_claim(s);
		}
	}
	pthread_mutex_unlock(&open_lock);
}
static void atfork_setup(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

void shval__open_list_add(shval_seg *seg)
{
	pthread_once(&atfork_once, atfork_setup);
	pthread_mutex_lock(&open_lock);
	seg->next_open = open_list;
	open_list = seg;
	pthread_mutex_unlock(&open_lock);
}

void shval__open_list_del(shval_seg *seg)
{
	pthread_mutex_lock(&open_lock);
	for (shval_seg **p = &open_list; *p; p = &(*p)->next_open)
		if (*p == seg) {
			*p = seg->next_open;
			break;
		}
	pthread_mutex_unlock(&open_lock);
}

/* ---- attach table ---- */

static int claim(shval_seg *seg);

int shval__attach_claim(shval_seg *seg)
{
	if (claim(seg) == 0)
		return 0;
	atomic_fetch_add(&seg->hdr->attach_overflow, 1);
	return -1;
}

int shval__attach_claim_reaping(shval_seg *seg)
{
	if (claim(seg) == 0 ||
	    (shval__attach_reap(seg, NULL, NULL) > 0 && claim(seg) == 0))
		return 0;
	atomic_fetch_add(&seg->hdr->attach_overflow, 1);
	return -1;
}

static int claim(shval_seg *seg)
{
	shval__hdr *h = seg->hdr;
	pid_t me = getpid();
	uint64_t st = shval__proc_start_time(me);
	for (unsigned i = 0; i < SHVAL__ATTACH_CAP; i++) {
		uint32_t zero = 0;
		/* seq_cst CAS claims the slot; start_time is written after it,
		 * so a reader (attach_reap, always under the segment lock, or
		 * shval_seg_procs for display) may briefly see 0: "unknown",
		 * which shval__proc_alive() treats as no pid-reuse check. */
		if (atomic_compare_exchange_strong(&h->attach[i].pid, &zero,
						   (uint32_t)me)) {
			h->attach[i].start_time = st;
			seg->attach_slot = (int)i;
			seg->attach_pid = me;
			return 0;
		}
	}
	seg->attach_slot = -1;
	return -1;
}

unsigned shval__attach_reap(shval_seg *seg, void (*fn)(pid_t, void *),
			    void *arg)
{
	shval__hdr *h = seg->hdr;
	unsigned n = 0;
	for (unsigned i = 0; i < SHVAL__ATTACH_CAP; i++) {
		uint32_t pid = atomic_load(&h->attach[i].pid);
		if (pid == 0 ||
		    ((int)i == seg->attach_slot && seg->attach_pid == getpid()))
			continue;
		if (shval__proc_alive((pid_t)pid, h->attach[i].start_time))
			continue;
		/* only if the slot still names that pid (a claim is a CAS);
		 * its pins go first (releases are under the segment lock,
		 * like this, so the slot is still that process's) */
		shval__pins_drop(seg, i);
		if (atomic_compare_exchange_strong(&h->attach[i].pid, &pid,
						   0)) {
			n++;
			if (fn)
				fn((pid_t)pid, arg);
		}
	}
	return n;
}

/* Free slots of dead processes; returns the number of live ones other
 * than ours.  Caller holds the segment lock. */
static unsigned attach_reap(shval_seg *seg)
{
	shval__hdr *h = seg->hdr;
	unsigned live = 0;
	for (unsigned i = 0; i < SHVAL__ATTACH_CAP; i++) {
		uint32_t pid = atomic_load(&h->attach[i].pid);
		if (pid == 0)
			continue;
		if ((int)i == seg->attach_slot && seg->attach_pid == getpid())
			continue;
		if (shval__proc_alive((pid_t)pid, h->attach[i].start_time)) {
			live++;
		} else {
			shval__pins_drop(seg, i);
			atomic_store(&h->attach[i].pid, 0);
		}
	}
	return live;
}

void shval__attach_release(shval_seg *seg)
{
	if (seg->attach_slot < 0 || seg->attach_pid != getpid())
		return;
	shval__pins_drop(seg, (unsigned)seg->attach_slot);
	atomic_store(&seg->hdr->attach[seg->attach_slot].pid, 0);
	seg->attach_slot = -1;
	if (!seg->hdr->unlinked && shval__temp_orphaned(seg)) {
		seg->hdr->unlinked = 1;
		unlink(seg->path);
	}
}

bool shval__temp_orphaned(shval_seg *seg)
{
	return (seg->hdr->seg_flags & SHVAL_TEMP) &&
	       seg->kind != SHVAL__SEG_ANON &&
	       atomic_load(&seg->hdr->attach_overflow) == 0 &&
	       attach_reap(seg) == 0;
}

void shval__attach_count(shval_seg *seg, unsigned *attached, unsigned *alive)
{
	shval__hdr *h = seg->hdr;
	*attached = *alive = 0;
	for (unsigned i = 0; i < SHVAL__ATTACH_CAP; i++) {
		uint32_t pid = atomic_load(&h->attach[i].pid);
		if (!pid)
			continue;
		(*attached)++;
		if (shval__proc_alive((pid_t)pid, h->attach[i].start_time))
			(*alive)++;
	}
}

SHVAL_API int shval_seg_procs(shval_seg *seg, shval_proc *procs, size_t cap,
			      size_t *n)
{
	if (SHVAL__RSEG(seg)) {
		if (n)
			*n = 0;
		return 0;
	}
	if (!seg || !n)
		return -EINVAL;
	size_t k = 0;
	for (unsigned i = 0; i < SHVAL__ATTACH_CAP; i++) {
		uint32_t pid = atomic_load(&seg->hdr->attach[i].pid);
		if (!pid)
			continue;
		if (k < cap && procs) {
			procs[k].pid = (pid_t)pid;
			procs[k].alive = shval__proc_alive(
				(pid_t)pid, seg->hdr->attach[i].start_time);
		}
		k++;
	}
	*n = k;
	return 0;
}
