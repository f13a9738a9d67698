"""mutants/mutants.py — the fixed list of source mutations run by `make mutants`.

Each mutant breaks ONE promise of include/shval.h / RELIABILITY.md with a
small edit, and names the tests that must catch it.  `mutants/run` applies
one mutant at a time to a scratch copy of the tree, builds, runs the named
tests (`ctest -R kill`) and reports the mutants that survive.

Fields of a mutant:
  id     short name, used in reports and in RELIABILITY.md
  file   path relative to the repository root
  edits  list of (original, replacement) pairs, applied in order.  Each
         original must occur EXACTLY ONCE in the pristine file (runs of
         white space match any run of white space, so re-indentation does
         not break a mutant); otherwise the run stops with
         "mutant ID no longer applies", so this list cannot rot silently.
  breaks the promise it breaks, one line (goes into the RELIABILITY.md table)
  kill   ctest regular expression of the tests expected to kill it (keeps
         the run bounded; `mutants/run --full` runs the whole suite instead)
  env    optional environment for ctest (e.g. PYTEST_ADDOPTS to pick the
         pytest tests inside the single python_tests ctest entry)

A mutant should change behaviour only where the promise is kept: it must
build, and the rest of the library must go on working, so that only the
tests of that promise can tell.

Keep RELIABILITY.md's mutant table in step: `mutants/run --markdown`
prints it from this list.
"""

# ---------------------------------------------------------------------------
# Locks, sections, readers and atomics: src/lock.c, src/value.c, src/wait.c,
# src/section.h, src/internal.h and the header-inline fast paths of
# include/shval.h (format 2).  A mutant of a header changes every file
# compiled against it (the tests' inline paths included).  Most of these
# are killed by deterministic tests (tests/test_commit.c, test_locks.c,
# test_lock_stale.c, test_lock_damage.c):
# a crash point, a self-kill at a known step, a copy stopped half-way by a
# fault, damage written into the image; not by a lucky interleaving.
# ---------------------------------------------------------------------------
LOCKS = [
    dict(
        id="seqlock-no-recheck",
        file="src/value.c",
        edits=[(
            """if (v1 == v2)
			break;""",
            """(void)v2; /* MUTANT: no version re-check */
			break;""")],
        breaks="readers never see a torn value: the library's lock-free "
               "reader (read_consistent) does not re-check the version "
               "after its copy",
        kill=r"^test_commit\.reader_copy_overtaken_by_commit_(library|big_value)$|"
             r"^test_access\.rdonly_reader_during_big_writes$",
    ),
    dict(
        id="seqlock-no-recheck-inline",
        file="include/shval.h",
        edits=[(
            """if (__atomic_load_n(ver, __ATOMIC_RELAXED) == v1 &&""",
            """if (/* MUTANT: no version re-check */""")],
        breaks="readers never see a torn value: the header's inline "
               "shval_read does not re-check the version after its copy",
        kill=r"^test_commit\.reader_copy_overtaken_by_commit_inline$|"
             r"^test_concurrency\.writers_and_readers_keep_invariants$",
    ),
    dict(
        id="reader-ignores-undo",
        file="src/value.c",
        edits=[(
            """src = v->undo;""",
            """src = v->data; /* MUTANT: not the undo copy */""")],
        breaks="readers never see a mid-section value: while WRITING is set "
               "a reader copies the data instead of the undo copy",
        kill=r"^test_commit\.reader_sees_committed_state_during_section$|"
             r"^test_concurrency\.writers_and_readers_keep_invariants$",
    ),
    dict(
        id="owner-death-no-rollback",
        file="src/lock.c",
        edits=[(
            """memcpy(b + e->data_rel, b + undo_rel, size);""",
            """(void)b; (void)undo_rel; /* MUTANT: undo copy not restored */""")],
        breaks="a process killed holding a lock leaves the last committed "
               "state: recovery (rollback()) does not put the undo copy back",
        kill=r"^test_commit\.shared_lock_death_before_unlock_rolls_back$|"
             r"^test_concurrency\.(kill_inside_locked_section_1000_rounds|"
             r"verify_finds_and_repairs_dead_lock)$",
    ),
    dict(
        id="recovery-always-forward",
        file="src/lock.c",
        edits=[(
            """atomic_load_explicit(&v->lk->committing, memory_order_acquire) != 0""",
            """true /* MUTANT: always rolled forward */""")],
        breaks="an owner killed before its commit is rolled back: recovery "
               "rolls forward whatever the 'committing' flag says",
        kill=r"^test_commit\.shared_lock_death_before_(commit|unlock)_rolls_back$",
    ),
    dict(
        id="shared-commit-flag-unset",
        file="src/lock.c",
        edits=[(
            """atomic_store_explicit(&v->lk->committing, 1, memory_order_relaxed);""",
            """; /* MUTANT: 'committing' not set */""")],
        breaks="a multi-value section under a shared lock commits all or "
               "nothing: 'committing' is never set, so an owner killed "
               "half-way through its commit is rolled back, not forward",
        kill=r"^test_commit\.shared_lock_death_mid_commit_rolls_forward$",
    ),
    dict(
        id="atomic-add-load-store-inline",
        file="include/shval.h",
        edits=[(
            """int64_t o = __atomic_fetch_add((int64_t *)f->data, delta,
					       __ATOMIC_SEQ_CST);""",
            """int64_t o = __atomic_load_n((int64_t *)f->data, __ATOMIC_SEQ_CST);
		__atomic_store_n((int64_t *)f->data,
				 (int64_t)((uint64_t)o + (uint64_t)delta),
				 __ATOMIC_SEQ_CST); /* MUTANT: load + store */""")],
        breaks="no lost updates: the header's inline 64-bit atomic add is "
               "a load and a store",
        kill=r"^test_commit\.(atomic_add_overtaken_inline|"
             r"atomic_adds_exact_when_processes_overlap)$",
    ),
    dict(
        id="atomic-add-load-store",
        file="src/scalar.c",
        edits=[(
            """int64_t o = __atomic_fetch_add((int64_t *)v->data, delta,
					       __ATOMIC_SEQ_CST);""",
            """int64_t o = __atomic_load_n((int64_t *)v->data, __ATOMIC_SEQ_CST);
		__atomic_store_n((int64_t *)v->data,
				 (int64_t)((uint64_t)o + (uint64_t)delta),
				 __ATOMIC_SEQ_CST); /* MUTANT: load + store */""")],
        breaks="no lost updates: the library's 64-bit atomic add "
               "(shval_add_i64's fast path) is a load and a store",
        kill=r"^test_commit\.(atomic_add_overtaken_library_call|"
             r"atomic_adds_exact_library_call)$",
    ),
    dict(
        id="atomic-add-load-store-rmw",
        file="src/atomic.h",
        edits=[(
            """case SHVAL__RMW_ADD: old = __atomic_fetch_add((T *)p, (T)arg, __ATOMIC_SEQ_CST); break;""",
            """case SHVAL__RMW_ADD: old = __atomic_load_n((T *)p, __ATOMIC_SEQ_CST); __atomic_store_n((T *)p, (T)(old + arg), __ATOMIC_SEQ_CST); break; /* MUTANT: load + store */""")],
        breaks="no lost updates: an atomic add of another size (atomic.h) is "
               "a load and a store",
        kill=r"^test_commit\.atomic_add_overtaken_16bit$",
    ),
    dict(
        id="wake-skipped",
        file="src/wait.c",
        edits=[(
            """memory_order_relaxed);
		shval__futex_wake(word);""",
            """memory_order_relaxed);
		/* MUTANT: no FUTEX_WAKE for flagged waiters */""")],
        breaks="shval_wait wakes on every committed change: a writer that "
               "sees WAITERS clears the flag but skips the futex wake",
        kill=r"^test_concurrency\.wait_for_change$|^test_lifecycle\.wait_on_removed_value$",
    ),
    dict(
        id="waiters-word-ignored",
        file="src/section.h",
        edits=[(
            """if (took || atomic_load_explicit(&e->waiters, memory_order_relaxed) ||""",
            """if (0 /* MUTANT: the waiters word is not looked at */ ||""")],
        breaks="shval_wait wakes on every committed change: after a "
               "section's commit and unlock, the writer does not look at the "
               "value's waiters word",
        kill=r"^test_wake\.",
    ),
    dict(
        id="waiters-cleared-after-commit",
        file="src/wait.c",
        edits=[(
            """	wake_flagged(e, took);
	shval__seg_notify(seg);
}

void shval__wake_after_change""",
            """	if (took || atomic_load_explicit(&e->waiters, memory_order_relaxed)) {
		shval__stop_point("wake");
		/* MUTANT: the flag cleared after the commit */
		atomic_exchange_explicit(&e->waiters, 0, memory_order_relaxed);
		shval__futex_wake(&e->version);
	}
	shval__seg_notify(seg);
}

void shval__wake_after_change""")],
        breaks="shval_wait wakes on every committed change: a lock holder "
               "clears the waiters' flag after its commit (erasing the flag "
               "of a waiter that saw the commit and waits for the next)",
        kill=r"^test_wake_points\.preempted_waker_(locked|guarded)",
    ),
    dict(
        id="waiters-cleared-after-raw-bump",
        file="src/wait.c",
        edits=[(
            """bool took = shval__waiters_take(e);
		/* seq_cst RMW: publishes the change, and the barrier */
		atomic_fetch_add_explicit(&e->version, SHVAL__V_ONE,
					  memory_order_seq_cst);
		wake_flagged(e, took);""",
            """/* seq_cst RMW: publishes the change, and the barrier */
		atomic_fetch_add_explicit(&e->version, SHVAL__V_ONE,
					  memory_order_seq_cst);
		if (atomic_load_explicit(&e->waiters, memory_order_relaxed)) {
			shval__stop_point("wake");
			shval__waiters_take(e); /* MUTANT: after the bump */
			shval__futex_wake(&e->version);
		}""")],
        breaks="shval_wait wakes on every committed change: a raw value's "
               "writer clears the waiters' flag after its version bump",
        kill=r"^test_wake_points\.preempted_waker_raw$",
    ),
    dict(
        id="unlock-owner-unchecked",
        file="src/lock.c",
        edits=[(
            """struct held *h = held_find_in(t, v);
	if (!h)
		return shval__failf(
			v->seg, SHVAL_ENOTOWNER,""",
            """struct held *h = held_find_in(t, v);
	if (!h) { /* MUTANT: no owner check: commit and unlock anyway */
		shval__commit_unlock(v);
		return 0;
	}
	if (0)
		return shval__failf(
			v->seg, SHVAL_ENOTOWNER,""")],
        breaks="shval_unlock by a thread that does not hold the lock gives "
               "SHVAL_ENOTOWNER (the held-list check)",
        kill=r"^test_concurrency\.lock_api$|^test_threads\.",
    ),
    dict(
        id="tid-reuse",
        file="src/section.h",
        edits=[(
            """static inline int shval__chg_begin(shval *v, int *how)
{""",
            """static inline int shval__chg_begin(shval *v, int *how)
{
	extern int gettid(void); /* glibc's pid_t gettid(void) */
	if (v->lk && v->lk->mutex.__data.__owner == gettid()) {
		/* MUTANT: ownership from the mutex owner field (the old code) */
		*how = SHVAL__CHG_NESTED;
		return 0;
	}""")],
        breaks="ownership is the held list's, never a thread id in shared "
               "memory: a library call's section takes the lock as already "
               "held when the mutex's owner field names this thread (a "
               "reused tid, a dead owner's left-over field)",
        kill=r"^test_locks\.tid_reuse_after_owner_death$|"
             r"^test_lock_stale\.(stale_owner_field_is_own_tid|"
             r"owner_died_with_own_tid_in_owner_field)$",
    ),
    dict(
        id="stale-owner-never",
        file="src/mutex.c",
        edits=[(
            """static bool owner_stale(shval_seg *seg, uint32_t w)
{""",
            """static bool owner_stale(shval_seg *seg, uint32_t w)
{
	if (seg)
		return false; /* MUTANT: an owner is never judged stale */""")],
        breaks="a lock word naming a thread that is gone or not of a process "
               "mapping the segment (a copied file segment) is recovered like "
               "a death: owner_stale() always says alive",
        kill=r"^test_lock_stale\.file_copied_",
    ),
    dict(
        id="kind-unchecked",
        file="src/mutex.c",
        edits=[(
            """return __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == shval__lock_kind;""",
            """(void)m; return true; /* MUTANT: kind word not checked */""")],
        breaks="a damaged mutex kind word gives SHVAL_ECORRUPT before any "
               "pthread call (and repair re-initialises it): "
               "shval__mutex_kind_ok() always says good",
        kill=r"^test_lock_damage\.damaged_mutex_kind_",
    ),
    dict(
        id="kind-unchecked-fast",
        file="src/section.h",
        edits=[(
            """__atomic_load_n(&v->lk->mutex.__data.__kind, __ATOMIC_RELAXED) ==
		    shval__lock_kind &&""",
            """1 && /* MUTANT: kind word not compared */""")],
        breaks="a damaged mutex kind word gives SHVAL_ECORRUPT before any "
               "pthread call: the inline section fast path does not compare "
               "the kind word before it takes the lock",
        kill=r"^test_lock_damage\.damaged_mutex_kind_",
    ),
    dict(
        id="inline-kind-unchecked",
        file="include/shval.h",
        edits=[(
            """	    __atomic_load_n(f->lock_kind, __ATOMIC_RELAXED) != f->lock_kind_want)""",
            """	    0) /* MUTANT: kind word not compared */""")],
        breaks="a damaged mutex kind word gives SHVAL_ECORRUPT before any "
               "pthread call: the header's inline section does not compare "
               "the kind word before it takes the lock",
        kill=r"^test_inline\.damaged_kind_word_refused$",
    ),
    dict(
        id="fast-slot-unset",
        file="include/shval.h",
        edits=[(
            """	*pending = &((pthread_mutex_t *)mutex)->__data.__list.__next;""",
            """	*pending = 0; /* MUTANT: the slot does not name the mutex */""")],
        breaks="a process killed inside a fast section (the robust mutex "
               "taken inline) is seen by the kernel: the thread's "
               "list_op_pending slot is not set, so the lock word keeps the "
               "dead thread's id",
        kill=r"^test_inline\.fast_section_(death_marked_by_kernel|slot_and_robust_list)$",
    ),
    dict(
        id="fast-fork-tid",
        file="src/attach.c",
        edits=[(
            """	shval__me_forked();""",
            """	/* MUTANT: a fork child keeps its parent's thread id */""")],
        breaks="a fork child's fast sections name the child's own thread in "
               "the lock word (else the kernel, seeing another id, does not "
               "mark the lock when the child dies)",
        kill=r"^test_inline\.fast_section_death_marked_by_kernel$",
    ),
    dict(
        id="fast-release-no-wake",
        file="src/mutex.c",
        edits=[(
            """	if (o & FUTEX_WAITERS)
		syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);""",
            """	(void)o; /* MUTANT: a sleeper is not woken */""")],
        breaks="a locker asleep in glibc on a lock a fast section holds is "
               "woken by the fast release (FUTEX_WAITERS)",
        kill=r"^test_inline\.fast_release_wakes_glibc_sleeper$",
    ),
    dict(
        id="inline-undo-stale",
        file="include/shval.h",
        edits=[(
            """	__builtin_memcpy(f->undo, f->data, n);
	__atomic_store_n(f->version, ver | 2, __ATOMIC_RELEASE);""",
            """	(void)n; /* MUTANT: undo copy not refreshed */
	__atomic_store_n(f->version, ver | 2, __ATOMIC_RELEASE);""")],
        breaks="a writer killed inside an inline write leaves the value as "
               "it was before that write: the undo copy is not refreshed, so "
               "the rollback restores an older state",
        kill=r"^test_inline\.(inline_writes_whole_under_kills|add_after_owner_death_rolls_back)$",
    ),
    dict(
        id="inline-commit-no-wake",
        file="include/shval.h",
        edits=[(
            """		if (took | __atomic_load_n(f->waiters, __ATOMIC_RELAXED) |
		    (__atomic_load_n(f->seg_version, __ATOMIC_RELAXED) & 3))
			shval__fast_wake(v, took ? 2 : 1);""",
            """		(void)v; (void)took; /* MUTANT: waiters not woken after a commit */""")],
        breaks="waiters wake on every committed change: the header's inline "
               "section commits without looking for waiters",
        kill=r"^test_wake\.",
    ),
    dict(
        id="redis-commit-token-unchecked",
        file="src/remote.lua",
        edits=[(
            """		if redis.call('GET', l) ~= tok then
			return { 'LOST' }
		end""",
            """		if false then -- MUTANT: the fencing token not checked
			return { 'LOST' }
		end""")],
        breaks="Redis: a section whose lease lapsed (a paused owner) is "
               "refused at commit by the fencing token, nothing applied: "
               "the commit does not compare the token",
        kill=r"^test_remote\.paused_owner_refused$",
    ),
    dict(
        id="redis-whole-write-any-serial",
        file="src/remote_op.c",
        edits=[(
            """			     strcmp(h->serial, rv->serial) == 0;""",
            """			     1; /* MUTANT: any serial */""")],
        breaks="Redis: a stale handle (a removed value's, the name now "
               "another value's) gets SHVAL_ESTALE inside a section of the "
               "new value's lock and does not spoil its commit: a whole "
               "write skips the fetch whatever the serial",
        kill=r"^test_remote\.section_whole_write_fetches_nothing$",
    ),
    dict(
        id="redis-section-version-any-serial",
        file="src/remote_lock.c",
        edits=[(
            """	       strcmp(h->serial, rv->serial) == 0 && h->ver[0];""",
            """	       /* MUTANT: any serial */ h->ver[0];""")],
        breaks="Redis: the version known from a section's lease is the "
               "version of the value the lease was taken on, not of a "
               "removed value's stale handle of the same name (0)",
        kill=r"^test_remote\.section_whole_write_fetches_nothing$",
    ),
    dict(
        id="redis-lock-data-dirty",
        file="src/remote_lock.c",
        edits=[(
            """	memcpy(s->data, b, len);
	s->loaded = true;""",
            """	memcpy(s->data, b, len);
	s->loaded = s->dirty = true; /* MUTANT: the bytes as a change */""")],
        breaks="Redis: the bytes that come with the lease are the committed "
               "state, not a change: a section that only reads commits "
               "nothing and does not move the version",
        kill=r"^test_remote\.section_whole_write_fetches_nothing$",
    ),
    dict(
        id="redis-write-blind-add",
        file="src/remote_op.c",
        edits=[(
            """	bool blind = (o->k == OP_WRITE && o->a == v->size) ||""",
            """	bool blind = o->k == OP_ADD_I64 || /* MUTANT */ (o->k == OP_WRITE && o->a == v->size) ||""")],
        breaks="Redis: only a write of every byte goes without the version "
               "check; an add is computed from the current bytes (a stale "
               "cache is refused by the server and fetched again)",
        kill=r"^test_remote\.try_change_one_round_trip_or_the_lock$",
    ),
    dict(
        id="redis-write-recovers-dead-owner-silently",
        file="src/remote.lua",
        edits=[(
            """		if dead and a[12] == '1' then""",
            """		if false and dead and a[12] == '1' then -- MUTANT""")],
        breaks="Redis from Python: v.value = x and v.add(d) in one round trip "
               "do not recover a dead owner's section silently: the binding "
               "takes the lock, which reports OwnerDiedWarning",
        kill=r"^python_tests@redis$",
        env={"PYTEST_ADDOPTS": "-k dead_owner_reported"},
    ),
    dict(
        id="held-lock-mapping-not-kept",
        file="src/lock.c",
        edits=[
            ("""	shval__seg_ref(v->seg);
	t->held[t->nheld++] =
		(struct held){ v->seg->fid, lock_off(v), 1, v->seg };""",
             """	t->held[t->nheld++] = /* MUTANT */
		(struct held){ v->seg->fid, lock_off(v), 1, NULL };"""),
            ("""		shval__seg_unref(map); /* after the unlock: MAPPING KEPT */""",
             """		if (map) /* MUTANT */
			shval__seg_unref(map);"""),
        ],
        breaks="a lock held by this thread keeps the mapping it was taken "
               "through after every handle and the segment are closed",
        kill=r"^(test_locks\.segment_closed_while_its_lock_is_held_stays_mapped|python_tests\.mp_extras)$",
    ),
    dict(
        id="shared-commit-by-address",
        file="src/lock.c",
        edits=[(
            """	return d->seg->fid == v->seg->fid &&
	       off_in(d->seg, d->lk) == lock_off(v);""",
            """	return d->lk == v->lk; /* MUTANT */""")],
        breaks="a shared lock's section ended through another mapping of the "
               "file commits the changes made through the first",
        kill=r"^test_locks\.shared_lock_section_committed_through_another_mapping$",
    ),
    dict(
        id="py-named-cache-strong",
        file="python/module.c",
        edits=[(
            """		Py_INCREF(ref);
		so->cache_name = ref;""",
            """		Py_INCREF(ref);
		Py_INCREF(so); /* MUTANT: the cache keeps the Segment */
		so->cache_name = ref;""")],
        breaks="a named segment opened to unpickle a value is closed when "
               "the last value unpickled from it goes",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k unpickled_segment_released"},
    ),
    dict(
        id="py-redis-element-write-locks",
        file="python/shval_py.h",
        edits=[(
            """		if ((v)->seg->remote && LOCKED(v) && !(v)->extlock &&   \\""",
            """		if (0 && (v)->seg->remote && LOCKED(v) && !(v)->extlock && /* MUTANT */ \\""")],
        breaks="Redis from Python: a[i] = x and s.field = x on a locked value "
               "nobody holds are one round trip, not the lock and a commit",
        kill=r"^python_tests@redis$",
        env={"PYTEST_ADDOPTS": "-k element_and_field"},
    ),
    dict(
        id="redis-try-element-not-strict",
        file="src/remote_op.c",
        edits=[(
            """	o.strict = true;""",
            """	o.strict = o.k != OP_ARRAY_SET && o.k != OP_FIELD_SET; /* MUTANT */""")],
        breaks="Redis from Python: an element or field write in one round trip "
               "does not recover a dead owner's section silently",
        kill=r"^python_tests@redis$",
        env={"PYTEST_ADDOPTS": "-k dead_owner_reported"},
    ),
    dict(
        id="redis-stage-loaded-unfetched",
        file="src/remote_lock.c",
        edits=[(
            """	if (need_old && !s->loaded) {""",
            """	s->loaded = true; /* MUTANT: never fetched */
	if (need_old && !s->loaded) {""")],
        breaks="Redis: an operation in a section works on the committed "
               "bytes: a staged copy that no whole write filled is fetched "
               "first",
        kill=r"^test_remote\.section_whole_write_fetches_nothing$",
    ),
    dict(
        id="redis-committed-stale",
        file="src/remote_lock.c",
        edits=[(
            """			return strtoull(h->ver, NULL, 10) + 1;""",
            """			return strtoull(h->ver, NULL, 10); /* MUTANT: the version before */""")],
        breaks="Redis: the version seen after a section's commit is the one "
               "it committed (its lock's version plus one), so that a wait "
               "sees only later changes",
        kill=r"^test_remote\.committed_version_known_without_a_peek$",
    ),
    dict(
        id="redis-resend-applied-twice",
        file="src/remote.lua",
        edits=[(
            """	if a[10] == '1' and (r[3] == me or""",
            """	if false and (r[3] == me or -- MUTANT: a resent write applied again""")],
        breaks="Redis: a change resent after a lost connection is applied "
               "once: the server does not recognise the resend",
        kill=r"^test_remote\.(exact_while_connections_cut|"
             r"resend_recognised_after_overwrite)$",
    ),
    dict(
        id="redis-resend-record-not-kept",
        file="src/remote.lua",
        edits=[(
            """	if c == me then
		return
	end""",
            """	if true then -- MUTANT: an overwritten record is dropped
		return
	end""")],
        breaks="Redis: a resent change is recognised even after another "
               "client's write overwrote the value's record of it (the "
               "record moves to P:q:CLIENT)",
        kill=r"^test_remote\.resend_recognised_after_overwrite$",
    ),
    dict(
        id="redis-resend-record-not-highest",
        file="src/remote.lua",
        edits=[(
            """	if old and seq_less(s, old) then""",
            """	if false then -- MUTANT: an older number replaces a newer one""")],
        breaks="Redis: P:q:CLIENT keeps the client's highest overwritten "
               "write, so that its last request's resend is recognised",
        kill=r"^test_remote\.resend_recognised_after_overwrite$",
    ),
    dict(
        id="redis-waiter-not-announced",
        file="src/remote.lua",
        edits=[(
            """		redis.call('HSET', h, 'w', '1')""",
            """		-- MUTANT: the waiter's flag not set""")],
        breaks="Redis: no lost wake-ups: a waiter's peek flags the value, "
               "so that the next write appends to the stream it blocks on",
        kill=r"^test_remote\.changes_announced_only_when_waited_for$",
    ),
    dict(
        id="redis-commit-not-announced",
        file="src/remote.lua",
        edits=[(
            """	changed(p, lk, 'u')
	return { 'OK' }""",
            """	-- MUTANT: the unlock (and the section it commits) not announced
	return { 'OK' }""")],
        breaks="Redis: no lost wake-ups: the unlock's stream entry announces "
               "the section it commits (one entry for all its values)",
        kill=r"^test_remote\.changes_announced_only_when_waited_for$",
    ),
    dict(
        id="redis-watch-not-for-new-values",
        file="src/remote.lua",
        edits=[(
            """	if redis.call('HGET', sk, 'watched') == '1' then
		w = 'S'
	end""",
            """	-- MUTANT: values created in a watched segment not announced""")],
        breaks="Redis: once the segment is watched, every change moves its "
               "version, also of values created later",
        kill=r"^test_remote\.changes_announced_only_when_waited_for$",
    ),
    dict(
        id="redis-write-version-unchecked",
        file="src/remote.lua",
        edits=[(
            """	if r[2] ~= a[6] then
		return { 'CHANGED', r[2], redis.call('HGET', h, 'data') }
	end""",
            """	-- MUTANT: the compare-and-swap on the version dropped""")],
        breaks="Redis: no lost updates: a change computed on a stale copy "
               "is refused (compare-and-swap on the version) and redone",
        kill=r"^test_(remote\.exact_while_connections_cut|concurrency\."
             r"writers_and_readers_keep_invariants@redis|commit\."
             r"atomic_adds_exact_library_call@redis)$",
    ),
    dict(
        id="stuck-writing-ignored",
        file="src/lock.c",
        edits=[(
            """} else if (v->own_lock &&""",
            """} else if (0 && /* MUTANT: stuck WRITING not rolled back */
		   v->own_lock &&""")],
        breaks="a WRITING bit stuck with the lock free is rolled back by the "
               "next locker (and by repair): sec_take() ignores it",
        kill=r"^test_lock_damage\.stuck_writing_bit_small_value$",
    ),
    dict(
        id="big-reader-unbounded",
        file="src/value.c",
        edits=[(
            """if (now >= deadline)""",
            """if (0 && now >= deadline) /* MUTANT: readers wait forever */""")],
        breaks="a reader of a big value (no undo copy) facing a stopped "
               "writer returns within its bound: the deadline in "
               "wait_for_writer() is never reached",
        kill=r"^test_lock_damage\.stopped_writer_of_big_value$",
    ),
    dict(
        id="stale-serial-unchecked",
        file="src/internal.h",
        edits=[(
            """atomic_load_explicit(&v->e->serial, memory_order_relaxed) !=
				    v->serial ||""",
            """0 /* MUTANT: serial not checked */ ||""")],
        breaks="a handle to a removed value gets SHVAL_ESTALE, even once its "
               "block holds a new value: shval__check() does not compare the "
               "serial",
        kill=r"^test_basic\.remove_and_stale$|"
             r"^test_lifecycle\.(remove_and_stale_across_processes|removed_space_reused)$|"
             r"^test_commit\.stale_handle_on_inline_paths_after_reuse$",
    ),
    dict(
        id="stale-serial-unchecked-inline",
        file="include/shval.h",
        edits=[(
            """return __atomic_load_n(f->serial, __ATOMIC_RELAXED) == f->serial_want;""",
            """return 1; /* MUTANT: serial not checked */"""), (
            """			if (__atomic_load_n(ver, __ATOMIC_RELAXED) == v1 &&
			    __atomic_load_n(ser, __ATOMIC_RELAXED) == want)""",
            """			if (__atomic_load_n(ver, __ATOMIC_RELAXED) == v1 &&
			    ((void)ser, (void)want, 1)) /* MUTANT */""")],
        breaks="a handle to a removed value gets SHVAL_ESTALE, even once its "
               "block holds a new value: the header's inline read and add "
               "do not compare the serial",
        kill=r"^test_commit\.stale_handle_on_inline_paths_after_reuse$|"
             r"^test_inline\.removed_value_every_inline_path_stale$",
    ),
    dict(
        id="removal-keeps-serial",
        file="src/alloc.c",
        edits=[(
            """atomic_store_explicit(&e->serial, 0, memory_order_release);""",
            """/* MUTANT: removal leaves the serial */""")],
        breaks="a removed value's handles get SHVAL_ESTALE from the header's "
               "inline paths, which check only the serial: removal (limbo) "
               "does not clear it (format 4)",
        kill=r"^test_inline\.removed_value_every_inline_path_stale$",
    ),
    dict(
        id="rdonly-write-allowed",
        file="src/value.c",
        edits=[(
            """if (v->seg->flags & SHVAL_RDONLY)
		return shval__failf(v->seg, SHVAL_ERDONLY,
				    "segment %s was opened read-only", v->seg->name);
	return 0;""",
            """return 0; /* MUTANT: no read-only check */""")],
        breaks="a read-only open cannot write: writes get SHVAL_ERDONLY, "
               "never SIGSEGV",
        kill=r"^test_access\.rdonly_writes_refused$",
    ),
    dict(
        id="set-str-truncates",
        file="src/value.c",
        edits=[(
            """if (len > capv)
		return shval__failf(
			v->seg, SHVAL_ETOOBIG,
			"string of %zu bytes for capacity %u (type %s)", len,
			capv, v->type->canon);""",
            """if (len > capv)
		len = capv; /* MUTANT: truncated instead of SHVAL_ETOOBIG */""")],
        breaks="shval_set_str longer than the capacity gives SHVAL_ETOOBIG "
               "and leaves the value unchanged",
        kill=r"^test_values\.strings$|^test_basic\.string_and_struct$",
    ),
]

# The damaged-segment test that kills the bounds mutants in about a second
# (test_corrupt.byte_flips kills the entry and slot ones too, in 47 s).
# The table-size check is no longer reached by its case "table cap 2^20"
# (something else refuses that image first); test_fields.directory's
# large caps (0x4000, 2^31, 2^32) reach it: a bus error without it.
DAMAGE_TESTS = r"^test_corrupt\.damaged_header_and_directory$"

# ---------------------------------------------------------------------------
# The other files.
# ---------------------------------------------------------------------------
STABLE = [
    dict(
        id="type-mismatch-accepted",
        file="src/entry.c",
        edits=[(
            """if (t && strcmp(v->type->canon, t->canon) != 0)""",
            """if (0 && t && strcmp(v->type->canon, t->canon) != 0) /* MUTANT */""")],
        breaks="shval_find / find_or_create with another type gives "
               "SHVAL_ETYPE (opening with a different type is refused): "
               "check_same() does not compare the types",
        kill=r"^test_api_checks\.type_mismatch$",
    ),
    dict(
        id="bounds-entry-length",
        file="src/dir.c",
        edits=[(
            """if (e->nlines == 0 || !shval__in(seg, off, bytes))""",
            """if (e->nlines == 0) /* MUTANT: entry length not bounds-checked */""")],
        breaks="a damaged segment gives an error, never a crash: an entry's "
               "length is not checked against the file size",
        kill=DAMAGE_TESTS,
    ),
    dict(
        id="bounds-slot-offset",
        file="src/dir.c",
        edits=[(
            """if (off < sizeof(shval__hdr) || off % SHVAL__LINE ||
	    !shval__in(seg, off, SHVAL__LINE))
		return NULL;
	shval__entry *e""",
            """if (off < sizeof(shval__hdr) || off % SHVAL__LINE) /* MUTANT */
		return NULL;
	shval__entry *e""")],
        breaks="a damaged segment gives an error, never a crash: a directory "
               "slot's entry offset is not checked against the file size",
        kill=DAMAGE_TESTS,
    ),
    dict(
        id="bounds-table-size",
        file="src/dir.c",
        edits=[(
            """if (c < 16 || (c & (c - 1)) || c > (1ull << 32) ||
	    !shval__in(seg, toff + SHVAL__LINE, c * 8))""",
            """if (c < 16 || (c & (c - 1)) || c > (1ull << 32)) /* MUTANT */""")],
        breaks="a damaged segment gives an error, never a crash: the "
               "directory table's capacity is not checked against the file size",
        kill=DAMAGE_TESTS + r"|^test_fields\.directory$",
    ),
    dict(
        id="foreign-accepted",
        file="src/seg.c",
        edits=[(
            """if (st.st_uid != geteuid() && !(seg->flags & SHVAL_FOREIGN))""",
            """if (0 && st.st_uid != geteuid() && !(seg->flags & SHVAL_FOREIGN)) /* MUTANT */""")],
        breaks="a segment owned by another user is refused (SHVAL_EFOREIGN) "
               "unless SHVAL_FOREIGN is given",
        kill=r"^test_access\.other_user_refused$|"
             r"^test_access\.other_user_refused\.unprivileged$",
    ),
    dict(
        id="default-mode-0644",
        file="src/seg.c",
        edits=[(
            """*mode = 0600;""",
            """*mode = 0644; /* MUTANT */""")],
        breaks="segments are 0600 by default",
        kill=r"^test_basic\.seg_create_open_close$|"
             r"^test_lifecycle\.file_segment_survives_reopen$",
    ),
    dict(
        id="symlink-followed",
        file="src/seg.c",
        edits=[(
            """((flags & SHVAL_RDONLY) ? O_RDONLY : O_RDWR) |
				    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |""",
            """((flags & SHVAL_RDONLY) ? O_RDONLY : O_RDWR) |
				    O_CLOEXEC | O_NONBLOCK | /* MUTANT: no O_NOFOLLOW */""")],
        breaks="file: paths are opened with O_NOFOLLOW (a symlink is refused, "
               "-ELOOP)",
        kill=r"^test_access\.symlinks_refused$",
    ),
    dict(
        id="fifo-blocks",
        file="src/seg.c",
        edits=[(
            """O_RDWR) |
				    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |""",
            """O_RDWR) |
				    O_NOFOLLOW | O_CLOEXEC | /* MUTANT: blocks */""")],
        breaks="an open never blocks on a FIFO squatting on a segment's name",
        kill=r"^test_hostile\.fifo_squatting_refused$",
    ),
    dict(
        id="sparse-not-backed",
        file="src/segfile.c",
        edits=[(
            """	if (st->st_size <= 0)
		return 0;
	int r;""",
            """	if (st->st_size >= 0) /* MUTANT: never backs */
		return 0;
	int r;""")],
        breaks="a writable open backs a sparse segment file (-ENOSPC, not SIGBUS)",
        kill=r"^test_hostile\.sparse_copy_full_disk_enospc$",
    ),
    dict(
        id="remove-under-holder",
        file="src/entry.c",
        edits=[(
            """		if (lr == -ETIMEDOUT) {""",
            """		if (lr == -ETIMEDOUT && 0) { /* MUTANT */""")],
        breaks="shval_remove refuses (-EBUSY) while a live process holds the value's lock",
        kill=r"^test_hostile\.remove_refused_while_lock_held$",
    ),
    dict(
        id="pin-ignored",
        file="src/pin.c",
        edits=[(
            """		if ((int)s == my_slot(seg) ||
		    shval__proc_alive((pid_t)pid, a->start_time))""",
            """		if (0 && /* MUTANT: pins never refuse */
		    shval__proc_alive((pid_t)pid, a->start_time))""")],
        breaks="shval_remove refuses (-EBUSY, naming the pid) a value a live process has pinned",
        kill=r"^test_pin\.(pin_refuses_removal_from_another_process|pinned_pointer_never_writes_another_value)$",
    ),
    dict(
        id="pin-dead-blocks",
        file="src/pin.c",
        edits=[(
            """		if ((int)s == my_slot(seg) ||
		    shval__proc_alive((pid_t)pid, a->start_time))""",
            """		if (1 || /* MUTANT: a dead pinner still refuses */
		    shval__proc_alive((pid_t)pid, a->start_time))""")],
        breaks="a dead (killed, exited) pinner never blocks a removal: its pins go with its attach slot",
        kill=r"^test_pin\.killed_pinner_does_not_block_removal$",
    ),
    dict(
        id="pin-lost-at-close",
        file="src/seg.c",
        edits=[(
            """			if (!shval__pins_held(seg))
				shval__attach_release(seg);""",
            """			shval__attach_release(seg); /* MUTANT */""")],
        breaks="pins outlive shval_seg_close while value handles keep the mapping",
        kill=r"^test_pin\.pins_kept_past_close_until_the_mapping_goes$",
    ),
    dict(
        id="py-view-not-pinned",
        file="python/value.c",
        edits=[(
            """	if (!rdonly && (v->exports == 0 || v->pin_gen != fork_gen + 1)) {""",
            """	if (0 && /* MUTANT: views never pin */
	    !rdonly && (v->exports == 0 || v->pin_gen != fork_gen + 1)) {""")],
        breaks="Python: a memoryview (numpy, ctypes) kept over a value makes `del seg[name]` refuse (EBUSY), so a write through it never lands in another value",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k 'pins or kept_view or view_holder'"},
    ),
    # shval__temp_orphaned() serves both paths: the open of a segment (the
    # next open after its processes were killed) and shval_seg_close (the
    # last close).  Each mutant breaks one path, told apart by user_closed,
    # which shval_seg_close sets before it asks.
    dict(
        id="temp-kept-after-sigkill",
        file="src/attach.c",
        edits=[(
            """bool shval__temp_orphaned(shval_seg *seg)
{""",
            """bool shval__temp_orphaned(shval_seg *seg)
{
	if (!seg->user_closed)
		return false; /* MUTANT: an open keeps a dead temporary segment */""")],
        breaks="a SHVAL_TEMP segment whose processes were all killed is "
               "removed by the next open: shval__temp_orphaned() says no "
               "on the open path",
        kill=r"^test_lifecycle\.temp_removed_after_sigkill",
    ),
    dict(
        id="temp-kept-after-close",
        file="src/attach.c",
        edits=[(
            """bool shval__temp_orphaned(shval_seg *seg)
{""",
            """bool shval__temp_orphaned(shval_seg *seg)
{
	if (seg->user_closed)
		return false; /* MUTANT: kept after the last close */""")],
        breaks="a SHVAL_TEMP segment goes away with the last close: "
               "shval__temp_orphaned() says no on the close path",
        kill=r"^test_lifecycle\.temp_removed_by_last_close$",
    ),
    dict(
        id="write-string-len-unchecked",
        file="src/type.c",
        edits=[(
            """if (slen <= f->count)
			continue;""",
            """if (1 || slen <= f->count) /* MUTANT: length not checked */
			continue;""")],
        breaks="shval_write of a string whose stored length exceeds its "
               "capacity gives SHVAL_ETOOBIG (value unchanged): "
               "shval__bytes_check() does not compare the length",
        kill=r"^test_values\.strings$|^test_type\.type_check_strings$",
    ),
    dict(
        id="cli-failure-exits-0",
        file="cli/shval.c",
        edits=[(
            """fputc('\\n', stderr);
	return EX_RUNTIME;""",
            """fputc('\\n', stderr);
	return EX_OK; /* MUTANT: a failing command exits 0 */""")],
        breaks="shval(1): a failing command exits 1",
        kill=r"^cli_test$",
    ),
    dict(
        id="py-with-lock-noop",
        file="python/lock.c",
        edits=[(
            """int r = acquire_handle(l->st, l->h, 1, -1, l->seg->remote);
	if (r < 0)
		return NULL;
	note_acquired(l);
	return PyBool_FromLong(r);""",
            """(void)l; Py_RETURN_TRUE; /* MUTANT: __enter__ does not lock */"""), (
            """				Py_ssize_t Py_UNUSED(n))
{
	return lock_release(l, NULL);""",
            """				Py_ssize_t Py_UNUSED(n))
{
	(void)l; Py_RETURN_NONE; /* MUTANT: __exit__ does not unlock */""")],
        breaks="Python: `with v.get_lock():` makes a read-modify-write "
               "exclusive across processes",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k 'get_lock_idiom_exact or shared_lock_exact'"},
    ),
    dict(
        id="py-redis-commit-gil-held",
        file="python/lock.c",
        edits=[(
            """	if (!remote)
		return shval_unlock(h);""",
            """	if (!remote || 1) /* MUTANT: the GIL held in the round trip */
		return shval_unlock(h);""")],
        breaks="Python: a Redis section's commit (a round trip) is made "
               "with the GIL released: the process's other threads run "
               "meanwhile",
        kill=r"^python_tests@redis$",
        env={"PYTEST_ADDOPTS": "-k 'release_the_gil'"},
    ),
    dict(
        id="py-add-load-store",
        file="python/value.c",
        edits=[(
            """if (v->hot_int && small_long(delta, &d)) {""",
            """if (0 && v->hot_int && small_long(delta, &d)) { /* MUTANT: not the hot path */"""), (
            """			if (LOCKED(v) && !held_here((LockObject *)v->lock))
				r = fast_add(v, d, &out);
			if (r == FAST_SLOW)""",
            """			if (LOCKED(v) && !held_here((LockObject *)v->lock))
				r = FAST_SLOW; /* MUTANT: not the inline section */
			if (r == FAST_SLOW)"""), (
            """				CALL_TRY(v, shval__r_try_add_i64(v->h, d, &out),
					 shval_add_i64(v->h, d, &out));
			if (r && handle_rc(v, r) < 0)""",
            """			{ /* MUTANT: add as get + set */
				CALL(v, shval_get_i64(v->h, &out));
				out = (int64_t)((uint64_t)out + (uint64_t)d);
				if (r == 0)
					CALL(v, shval_set_i64(v->h, out));
			}
			if (r && handle_rc(v, r) < 0)""")],
        breaks="Python: Value.add() is one atomic (or locked) add, never "
               "loses updates",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k add_exact"},
    ),
]

for _m in LOCKS:
    _m["section"] = "locks"
for _m in STABLE:
    _m["section"] = "stable"

MUTANTS = LOCKS + STABLE
