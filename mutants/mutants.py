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
# Files being rewritten (src/lock.c, src/value.c, src/wait.c: the lock /
# section rewrite, format version 2).  Written against the code as of the
# commit that added this list; when the rewrite lands, the run reports
# "mutant ID no longer applies" for those whose lines moved, and they are
# re-targeted at the new code (the promise and the killing tests stay).
# ---------------------------------------------------------------------------
REWRITE = [
    dict(
        id="seqlock-no-recheck",
        file="src/value.c",
        edits=[(
            """if ((v1 | SHVAL__V_WAITERS) == (v2 | SHVAL__V_WAITERS))
			break;""",
            """(void)v2; /* MUTANT: no version re-check */
			break;""")],
        breaks="readers never see a torn value: a lock-free reader does not "
               "re-check the version after its copy",
        kill=r"^test_concurrency\.writers_and_readers_keep_invariants$|"
             r"^test_threads\.|^test_proc\.rdonly_reader_during_big_writes$",
    ),
    dict(
        id="reader-ignores-undo",
        file="src/value.c",
        edits=[(
            """if (v->undo) {
				src = v->undo;""",
            """if (v->undo) {
				src = v->data; /* MUTANT: not the undo copy */""")],
        breaks="readers never see a mid-section value: while WRITING is set "
               "a reader copies the data instead of the undo copy",
        kill=r"^test_concurrency\.writers_and_readers_keep_invariants$|"
             r"^test_threads\.|^test_proc\.rdonly_reader_during_big_writes$",
    ),
    dict(
        id="owner-death-no-rollback",
        file="src/lock.c",
        edits=[(
            """memcpy(b + e->data_rel, b + undo_rel, size);""",
            """(void)b; (void)undo_rel; /* MUTANT: undo copy not restored */""")],
        breaks="a process killed holding a lock leaves the last committed "
               "state: recovery does not put the undo copy back",
        kill=r"^test_concurrency\.(kill_inside_locked_section_1000_rounds|"
             r"shared_lock_transfer_and_kill|verify_finds_and_repairs_dead_lock)$",
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
        kill=r"^test_concurrency\.shared_lock_transfer_and_kill$",
    ),
    dict(
        id="atomic-add-load-store",
        file="src/value.c",
        edits=[(
            """int64_t o = __atomic_fetch_add((int64_t *)v->data, delta,
					       __ATOMIC_SEQ_CST);""",
            """int64_t o = __atomic_load_n((int64_t *)v->data, __ATOMIC_SEQ_CST);
		__atomic_store_n((int64_t *)v->data,
				 (int64_t)((uint64_t)o + (uint64_t)delta),
				 __ATOMIC_SEQ_CST); /* MUTANT: load + store */""")],
        breaks="no lost updates: an atomic 8-byte add is done as a load and "
               "a store",
        kill=r"^test_concurrency\.writers_and_readers_keep_invariants$|"
             r"^test_threads\.",
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
        kill=r"^test_concurrency\.wait_for_change$|^test_proc\.wait_on_removed_value$",
    ),
    dict(
        id="unlock-owner-unchecked",
        file="src/lock.c",
        edits=[(
            """if (!held_by_me(v) || v->lk->depth == 0)""",
            """if (v->lk->depth == 0) /* MUTANT: owner not checked */""")],
        breaks="shval_unlock by a thread that does not hold the lock gives "
               "SHVAL_ENOTOWNER (the owner check)",
        kill=r"^test_concurrency\.lock_api$|^test_threads\.",
    ),
    dict(
        id="stale-serial-unchecked",
        file="src/lock.c",
        edits=[(
            """if (atomic_load_explicit(&v->e->serial, memory_order_relaxed) != v->serial ||""",
            """if (/* MUTANT: serial not checked */""")],
        breaks="a handle to a removed value gets SHVAL_ESTALE, even once its "
               "block holds a new value (the serial check)",
        kill=r"^test_basic\.remove_and_stale$|"
             r"^test_proc\.(remove_and_stale_across_processes|removed_space_reused)$",
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
        kill=r"^test_proc\.rdonly_writes_refused$",
    ),
    dict(
        id="set-str-truncates",
        file="src/value.c",
        edits=[(
            """if (len > capv)
		return shval__failf(v->seg, SHVAL_ETOOBIG,
				    "string of %zu bytes for capacity %u (type %s)",
				    len, capv, v->type->canon);""",
            """if (len > capv)
		len = capv; /* MUTANT: truncated instead of SHVAL_ETOOBIG */""")],
        breaks="shval_set_str longer than the capacity gives SHVAL_ETOOBIG "
               "and leaves the value unchanged",
        kill=r"^test_values\.strings$|^test_basic\.string_and_struct$",
    ),
]

# The damaged-segment test that kills the bounds mutants in about a second
# (test_corrupt.byte_flips kills the entry and slot ones too, in 47 s).
DAMAGE_TESTS = r"^test_proc\.damaged_header_and_directory$"

# ---------------------------------------------------------------------------
# The other files.
# ---------------------------------------------------------------------------
STABLE = [
    dict(
        id="type-mismatch-accepted",
        file="src/dir.c",
        edits=[(
            """if (t && strcmp(v->type->canon, t->canon) != 0)""",
            """if (0 && t && strcmp(v->type->canon, t->canon) != 0) /* MUTANT */""")],
        breaks="shval_find / find_or_create with another type gives "
               "SHVAL_ETYPE (opening with a different type is refused)",
        kill=r"^test_values\.type_mismatch$",
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
        kill=DAMAGE_TESTS,
    ),
    dict(
        id="foreign-accepted",
        file="src/seg.c",
        edits=[(
            """if (st.st_uid != geteuid() && !(seg->flags & SHVAL_FOREIGN))""",
            """if (0 && st.st_uid != geteuid() && !(seg->flags & SHVAL_FOREIGN)) /* MUTANT */""")],
        breaks="a segment owned by another user is refused (SHVAL_EFOREIGN) "
               "unless SHVAL_FOREIGN is given",
        kill=r"^test_proc\.other_user_refused$",
    ),
    dict(
        id="default-mode-0644",
        file="src/seg.c",
        edits=[(
            """*mode = 0600;""",
            """*mode = 0644; /* MUTANT */""")],
        breaks="segments are 0600 by default",
        kill=r"^test_basic\.seg_create_open_close$|"
             r"^test_proc\.file_segment_survives_reopen$",
    ),
    dict(
        id="symlink-followed",
        file="src/seg.c",
        edits=[(
            """((flags & SHVAL_RDONLY) ? O_RDONLY : O_RDWR) |
					      O_NOFOLLOW | O_CLOEXEC);""",
            """((flags & SHVAL_RDONLY) ? O_RDONLY : O_RDWR) |
					      O_CLOEXEC); /* MUTANT: no O_NOFOLLOW */""")],
        breaks="file: paths are opened with O_NOFOLLOW (a symlink is refused, "
               "-ELOOP)",
        kill=r"^test_proc\.symlinks_refused$",
    ),
    dict(
        id="temp-kept-after-sigkill",
        file="src/seg.c",
        edits=[(
            """if ((seg->hdr->seg_flags & SHVAL_TEMP) && seg->kind != SHVAL__KIND_ANON &&
	    atomic_load(&seg->hdr->attach_overflow) == 0 && attach_reap(seg) == 0) {""",
            """if (0 && /* MUTANT: dead temporary segment kept */
	    (seg->hdr->seg_flags & SHVAL_TEMP) && seg->kind != SHVAL__KIND_ANON &&
	    atomic_load(&seg->hdr->attach_overflow) == 0 && attach_reap(seg) == 0) {""")],
        breaks="a SHVAL_TEMP segment whose processes were all killed is "
               "removed by the next open",
        kill=r"^test_proc\.temp_removed_after_sigkill",
    ),
    dict(
        id="temp-kept-after-close",
        file="src/seg.c",
        edits=[(
            """attach_reap(seg) == 0) {
				seg->hdr->unlinked = 1;""",
            """attach_reap(seg) == 0 && 0) { /* MUTANT: kept after last close */
				seg->hdr->unlinked = 1;""")],
        breaks="a SHVAL_TEMP segment goes away with the last close",
        kill=r"^test_proc\.temp_removed_by_last_close$",
    ),
    dict(
        id="write-string-len-unchecked",
        file="src/type.c",
        edits=[(
            """if (len <= f->count)
			continue;""",
            """if (1 || len <= f->count) /* MUTANT */
			continue;""")],
        breaks="shval_write of a string whose stored length exceeds its "
               "capacity gives SHVAL_ETOOBIG (value unchanged)",
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
        file="python/shval_module.c",
        edits=[(
            """int r = acquire_handle(l->h, 1, -1);
	if (r < 0)
		return NULL;
	return PyBool_FromLong(r);""",
            """(void)l; Py_RETURN_TRUE; /* MUTANT: __enter__ does not lock */"""), (
            """static PyObject *lock_exit(LockObject *l, PyObject *Py_UNUSED(a))
{
	return lock_release(l, NULL);""",
            """static PyObject *lock_exit(LockObject *l, PyObject *Py_UNUSED(a))
{
	(void)l; Py_RETURN_NONE; /* MUTANT: __exit__ does not unlock */""")],
        breaks="Python: `with v.get_lock():` makes a read-modify-write "
               "exclusive across processes",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k 'get_lock_idiom_exact or shared_lock_exact'"},
    ),
    dict(
        id="py-add-load-store",
        file="python/shval_module.c",
        edits=[(
            """CALL(v, shval_add_i64(v->h, d, &out));""",
            """CALL(v, shval_get_i64(v->h, &out)); /* MUTANT: add as get + set */
		out = (int64_t)((uint64_t)out + (uint64_t)d);
		if (r == 0)
			CALL(v, shval_set_i64(v->h, out));""")],
        breaks="Python: Value.add() is one atomic (or locked) add, never "
               "loses updates",
        kill=r"^python_tests$",
        env={"PYTEST_ADDOPTS": "-k add_exact"},
    ),
]

for _m in REWRITE:
    _m["section"] = "rewrite"
for _m in STABLE:
    _m["section"] = "stable"

MUTANTS = REWRITE + STABLE
