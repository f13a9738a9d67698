/*
 * src/format.h — the segment format.  Internal: not API.
 *
 * THE SEGMENT FORMAT
 * ==================
 * A segment is one file (in /dev/shm, a regular file, or a memfd) that
 * every attached process maps at the same length (the segment's maximum
 * size) at whatever address mmap gives it.  Nothing in the segment is a
 * pointer: every reference is a byte offset from the start of the file, or
 * a 64-byte *line number* (offset / 64) where 32 bits are enough.
 *
 * Assumptions, and what breaks if they change:
 *   - Native byte order and layout: a segment is shared by processes of one
 *     machine.  The header's magic reads differently in the other byte
 *     order and the layout signature encodes sizeof(pthread_mutex_t), the
 *     pointer size and the sizes of the structs below, so a mismatched
 *     build is refused with SHVAL_EVERSION instead of misreading.
 *   - Aligned 8-byte loads and stores are single-copy atomic (x86_64,
 *     arm64).  Version words and directory slots rely on it.
 *   - 64-byte cache lines (SHVAL__LINE).  Changing it changes every line
 *     number: it is part of the layout signature.
 *   - glibc robust, process-shared pthread mutexes (40 bytes on LP64).
 *
 * The file is:
 *
 *   [0, 5120)          shval__hdr: identity, segment version, segment lock,
 *                      allocator and directory roots, attach table
 *   [5120, size)       blocks allocated in whole lines: value entries, lock
 *                      entries, type records, the directory's hash table,
 *                      free blocks
 *   [size, max_size)   not yet backed (mapped, never touched)
 *
 * Header — line 0 is written once by the creator before the segment gets
 * its name and never changes after.  Line 1 holds the segment-wide version
 * (alone, because waiters and writers touch it).  The segment lock (a robust
 * mutex) guards everything that changes the directory or the allocator.
 *
 * Directory — an open-addressing hash table (linear probing) of 8-byte
 * slots: 0 = empty, 1 = tombstone, else (hash >> 32) << 32 | entry line.
 * Lookups take no lock: they read the table's offset (acquire), probe slots
 * (acquire), and compare the entry's name.  Creates and removes take the
 * segment lock.  The table grows (a new table, then one release store of
 * its offset, then a bump of dir_seq) at 70% load.  The old table's block
 * then goes to limbo like a removed entry: its header line is overwritten
 * at once (limbo time, state, list link), its slots stay readable until the
 * block is reused.  So a lookup re-checks dir_seq and table_off before it
 * trusts what it read: on a miss, a hit, or a table or entry that does not
 * validate, if either moved it retries on the new table (tag-dirseq).
 * Damage is reported only in a directory that did not move.
 *
 * Entries — a value's whole life is one block: header, name, its own lock
 * (locked modes), its data (starting on the block's first line when the
 * name is short, so a value never shares a line with another value), and
 * for locked values up to SHVAL__UNDO_MAX bytes an undo copy of the last
 * committed state.  See shval__entry for the protocol.
 *
 * Allocation — blocks are whole lines.  Free blocks go on per-size lists
 * (exact sizes 1..63 lines, and one list of bigger blocks, first fit with
 * splitting).  Blocks are split but never merged, so the start of a block is
 * always the start of a block: a stale handle's offset still points at an
 * entry header, whose serial tells it the value is gone.  Removed entries
 * first wait SHVAL__LIMBO_NS in a limbo list before reuse, so that a call
 * racing with the removal finishes on the old memory; so do replaced
 * directory tables, for the lookups still probing them.
 *
 * Growth — the creator backs initial_size bytes; when the allocator needs
 * more it calls posix_fallocate (ENOSPC instead of SIGBUS later) and then
 * publishes the new size (release).  Other processes already map max_size,
 * so growth needs no remap; each process also checks offsets against the
 * file size it last saw with fstat (a lying header cannot make it touch an
 * unbacked page).
 *
 * EXAMPLE: a real segment "/hexdemo" (xxd of /dev/shm/hexdemo) after
 *   shval_create(seg, "hits", "q", SHVAL_ATOMIC, ...); shval_set_i64(hits, 5);
 *   shval_create(seg, "temp", "d", SHVAL_RLOCK, ...); shval_set_f64(temp, 21.5);
 * (all-zero lines left out):
 *
 *   00000000: 5348 5641 4c53 4701  magic "SHVALSG\1"
 *             0400 0100            format 4.1
 *             0014 0000            header size 0x1400 = 5120
 *   00000010: 2050 0038 2840 0828  layout signature (entry 0x28 = 40 bytes)
 *             0100 0000            init_state READY
 *             d33a 0000            creator pid 15059
 *   00000020: 96a7 0a6b 0000 0000  created (unix seconds)
 *             0000 0040 0000 0000  max_size 1 GiB
 *   00000030: 0000 0000            seg_flags (not TEMP)
 *             0001 0000            attach_cap 256
 *   00000040: 0800 0000 0000 0000  segment version 8: two creates (+4 each);
 *                                  value changes move it only while watched
 *   00000080: (40 bytes)           segment lock (pthread mutex, unlocked;
 *                                  kind word 0x92 at 0x90: robust,
 *                                  pshared, errorcheck)
 *   000000c0: 0000 0100 0000 0000  size 64 KiB backed
 *             0016 0000 0000 0000  brk 0x1600
 *   000000d0: 0014 0000 0000 0000  table_off 0x1400
 *             0200 0000 0000 0000  nvalues 2
 *   000000f0: 0300 0000 0000 0000  next_serial 3
 *             4015 0000 0000 0000  types_off 0x1540 (newest type first)
 *   00000110: 0002 0000 0000 0000  used 512 bytes (8 lines)
 *   00000400: (4096 bytes)         attach table (empty: the demo closed)
 *   00001400: 1000 0000 0000 0000  table: 16 slots, from 0x1440:
 *   00001460: ... 5400 0000 e59f 9bdf  slot 12: hash tag 0xdf9b9fe5, line 0x54
 *   00001470: ... 5600 0000 2704 95eb  slot 14: hash tag 0xeb950427, line 0x56
 *   000014c0: 5348 5654 5950 4500  type record "SHVTYPE\0", next 0,
 *   000014d0: 0800 ... 0100 0000 0100 0000   size 8, len 1, 1 line,
 *   000014e0: 7100                 "q\0"
 *   00001500: 0000 0000 0000 0000  entry "hits" (line 0x54): version 0
 *             0100 0000 0000 0000  serial 1
 *   00001510: 01 03 01 00          LIVE, ATOMIC, SCALAR, flags 0
 *             04 00 3000           name_len 4, waiters 0, data_rel 0x30
 *             5300 0000 0100 0000  type line 0x53, 1 line
 *   00001520: 0000 0000 0000 0000  lock_off 0 (atomic: no lock)
 *             6869 7473            "hits"
 *   00001530: 0500 0000 0000 0000  data: 5
 *   00001540: 5348 5654 5950 4500  type record "d", next = 0x14c0
 *   00001580: 0800 0000 0000 0000  entry "temp" (line 0x56): version 8
 *                                  (two writes, +4 each)
 *             0200 0000 0000 0000  serial 2
 *   00001590: 01 00 01 00          LIVE, RLOCK, SCALAR
 *             04 00 6800           name_len 4, waiters 0, data_rel 0x68
 *             5500 0000 0200 0000  type line 0x55, 2 lines
 *   000015a0: b015 0000 0000 0000  lock_off 0x15b0 (its own lock block)
 *             7465 6d70            "temp"
 *   000015b0: (56 bytes)           lock block: mutex (kind 0x92 at
 *                                  0x15c0), reserved, committing, users
 *   000015e8: 0000 0000 0080 3540  data: 21.5
 *   000015f0: 0000 0000 0000 0000  undo copy: 0, the state before the last
 *                                  write; it is refreshed when a section
 *                                  starts changing data and read only while
 *                                  the WRITING bit is set
 *
 */
#ifndef SHVAL_FORMAT_H
#define SHVAL_FORMAT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SHVAL__LINE 64u
#define SHVAL__MAGIC 0x0147534c41564853ull /* "SHVALSG\1" little-endian */
#define SHVAL__MAGIC_SWAPPED 0x5348564c53474701ull
/* Format version rules.  MAJOR changes when a library of the previous
 * major would misread or damage the new layout (openers refuse another
 * major: SHVAL_EVERSION).  MINOR changes for additions that a library of
 * the same major and an older minor ignores safely: it reads and writes
 * everything it knows correctly and merely does not honour the addition
 * (it never writes the new fields, and its shval_seg_verify counts any new
 * blocks among the allocated ones).  History of major 4:
 *   4.0  removal clears the entry's serial (the inline paths check it
 *        alone)
 *   4.1  buffer pins: attach[i].pins_line and pin blocks (SHVAL__ST_PINS);
 *        a 4.0 library ignores pins (removes a pinned value, as 4.0 did) */
#define SHVAL__FORMAT_MAJOR 4
#define SHVAL__FORMAT_MINOR 1

#define SHVAL__INIT_CREATING 0u
#define SHVAL__INIT_READY 1u

#define SHVAL__ATTACH_CAP 256u /* attach table slots */
#define SHVAL__NCLASS 64u      /* free lists: [1..63] exact, [0] bigger */
#define SHVAL__UNDO_MAX 65536u /* values up to this size get an undo copy */
#define SHVAL__LIMBO_NS 1000000000ull /* removed blocks wait 1 s before reuse */
#define SHVAL__MAX_SIZE_LIMIT (1ull << 38) /* 256 GiB: line numbers fit u32 */

/* Version words (entry and segment):  an event count.
 *   bit 0    segment version only: a watcher sleeps on it (it sets the
 *            bit with fetch_or; a bumper that sees it clears it and calls
 *            futex_wake).  Bit 1 of the segment version is WATCHED (below).
 *            Always 0 in an entry's version: an entry's waiters announce
 *            themselves in the entry's own waiters byte (see shval__entry),
 *            so that a locked value's version is written by its lock holder
 *            alone, with plain stores.
 *   bit 1    write in progress (locked values): the data is being changed;
 *            readers read the undo copy (or wait, bounded, if there is none).
 *   bits 2+  change counter: +4 per committed change.
 * The futex word is the low 32 bits (little-endian: same address). */
#define SHVAL__V_WAITERS 1ull
#define SHVAL__V_WRITING 2ull
/* Segment version only: bit 1 is WATCHED, set by every watcher (shval_seg_
 * version, shval_seg_wait) and never cleared: from then on every value
 * change moves the segment version.  Bit 0 (WAITERS) says somebody sleeps
 * on it; the bumper that sees it clears it and wakes them.  (One bit for
 * both, cleared by bumpers, lost wake-ups: a watcher that read the version
 * just after a bump had its announcement cleared by that bump, and the
 * next change then moved nothing.) */
#define SHVAL__V_WATCHED 2ull
#define SHVAL__V_ONE 4ull

/* ---- The header -------------------------------------------------------

   off  size  field            writer / reader / protection
   ---- ----  ---------------  ------------------------------------------
     0     8  magic            creator, before the name exists; read-only
     8     2  format_major     "
    10     2  format_minor     "
    12     4  header_size      "  = sizeof(shval__hdr)
    16     8  layout_sig       "
    24     4  init_state       creator stores READY (release) last; openers
                               load (acquire): pairs with tag-init-ready
    28     4  creator_pid      creator
    32     8  created          creator: seconds since the epoch
    40     8  max_size         creator
    48     4  seg_flags        creator: SHVAL_TEMP
    52     4  attach_cap       creator: SHVAL__ATTACH_CAP
    56     8  reserved0
    64     8  version          segment-wide event count (see above);
                               atomic RMW by writers and waiters
    72    56  pad1             keeps the version alone on its line
   128    40  lock             segment lock: robust process-shared mutex
   168     4  unlinked         1 once a TEMP segment's name was removed
                               (under lock)
   172    20  pad2
   192     8  size             backed bytes; under lock, published with
                               release after posix_fallocate; readers
                               acquire (tag-size)
   200     8  brk              end of allocated blocks; under lock
   208     8  table_off        directory table; release store under lock
                               after the table is built; lookups acquire
                               (tag-table)
   216     8  nvalues          live entries; under lock (relaxed reads)
   224     8  ntomb            tombstone slots in the table; under lock
   232     8  dir_seq          bumped (release, then a release fence)
                               after each table resize, before the old
                               table goes to limbo; lookups re-check it
                               before trusting what they read (tag-dirseq)
   240     8  next_serial      under lock
   248     8  types_off        list of interned type records; under lock
   256     8  limbo_head       removed blocks waiting; under lock
   264     8  limbo_tail       "
   272     8  used             bytes in allocated blocks; under lock
   280     4  attach_overflow  attaches that found no slot (TEMP cleanup is
                               then disabled); atomic add
   284   228  reserved1
   512   512  free_head[64]    free lists by block size in lines; under lock
  1024  3584  attach[256]      {pid, pins_line, start_time}: slot claimed by
                               CAS of pid 0 -> own pid, released by
                               storing 0 (under the segment lock, after
                               its pin block is freed); pins_line: the
                               slot's pin block (see shval__pins) or 0,
                               under the segment lock
  5120        end
*/
typedef struct shval__attach {
	_Atomic uint32_t pid; /* 0 = free */
	uint32_t pins_line;   /* the slot's pin block (line), 0 = none (4.1) */
	uint64_t start_time;  /* /proc/PID/stat starttime: detects pid reuse */
} shval__attach;

typedef struct shval__hdr {
	uint64_t magic;
	uint16_t format_major;
	uint16_t format_minor;
	uint32_t header_size;
	uint64_t layout_sig;
	_Atomic uint32_t init_state;
	uint32_t creator_pid;
	uint64_t created;
	uint64_t max_size;
	uint32_t seg_flags;
	uint32_t attach_cap;
	uint64_t reserved0;
	/* line 1 */
	_Atomic uint64_t version;
	uint8_t pad1[56];
	/* lines 2-3 */
	pthread_mutex_t lock;
	uint32_t unlinked;
	uint8_t pad2[20];
	/* line 3 */
	_Atomic uint64_t size;
	uint64_t brk;
	_Atomic uint64_t table_off;
	uint64_t nvalues;
	uint64_t ntomb;
	_Atomic uint64_t dir_seq;
	uint64_t next_serial;
	uint64_t types_off;
	uint64_t limbo_head;
	uint64_t limbo_tail;
	uint64_t used;
	_Atomic uint32_t attach_overflow;
	uint8_t reserved1[228];
	uint64_t free_head[SHVAL__NCLASS];
	shval__attach attach[SHVAL__ATTACH_CAP];
} shval__hdr;

_Static_assert(sizeof(pthread_mutex_t) == 40, "glibc LP64 mutex size");
_Static_assert(offsetof(shval__hdr, format_major) == 8, "hdr");
_Static_assert(offsetof(shval__hdr, header_size) == 12, "hdr");
_Static_assert(offsetof(shval__hdr, layout_sig) == 16, "hdr");
_Static_assert(offsetof(shval__hdr, init_state) == 24, "hdr");
_Static_assert(offsetof(shval__hdr, creator_pid) == 28, "hdr");
_Static_assert(offsetof(shval__hdr, created) == 32, "hdr");
_Static_assert(offsetof(shval__hdr, max_size) == 40, "hdr");
_Static_assert(offsetof(shval__hdr, seg_flags) == 48, "hdr");
_Static_assert(offsetof(shval__hdr, attach_cap) == 52, "hdr");
_Static_assert(offsetof(shval__hdr, version) == 64, "hdr");
_Static_assert(offsetof(shval__hdr, lock) == 128, "hdr");
_Static_assert(offsetof(shval__hdr, unlinked) == 168, "hdr");
_Static_assert(offsetof(shval__hdr, size) == 192, "hdr");
_Static_assert(offsetof(shval__hdr, brk) == 200, "hdr");
_Static_assert(offsetof(shval__hdr, table_off) == 208, "hdr");
_Static_assert(offsetof(shval__hdr, nvalues) == 216, "hdr");
_Static_assert(offsetof(shval__hdr, ntomb) == 224, "hdr");
_Static_assert(offsetof(shval__hdr, dir_seq) == 232, "hdr");
_Static_assert(offsetof(shval__hdr, next_serial) == 240, "hdr");
_Static_assert(offsetof(shval__hdr, types_off) == 248, "hdr");
_Static_assert(offsetof(shval__hdr, limbo_head) == 256, "hdr");
_Static_assert(offsetof(shval__hdr, limbo_tail) == 264, "hdr");
_Static_assert(offsetof(shval__hdr, used) == 272, "hdr");
_Static_assert(offsetof(shval__hdr, attach_overflow) == 280, "hdr");
_Static_assert(offsetof(shval__hdr, free_head) == 512, "hdr");
_Static_assert(offsetof(shval__hdr, attach) == 1024, "hdr");
_Static_assert(offsetof(shval__attach, pins_line) == 4, "attach");
_Static_assert(offsetof(shval__attach, start_time) == 8, "attach");
_Static_assert(sizeof(shval__attach) == 16, "attach");
_Static_assert(sizeof(shval__hdr) == 5120, "hdr");

/* ---- An entry (a value or a lock) --------------------------------------

   off  size  field       writer / reader / protection
   ---- ----  ----------  ------------------------------------------------
     0     8  version     event count (see SHVAL__V_*).  Locked values:
                          written only by the lock holder, with plain
                          stores: WRITING on before changing data, then
                          (ver & ~WRITING) + 4 to commit (release; pairs
                          with the acquire loads in the seqlock read,
                          tag-seqlock).  Raw values: +4 (atomic add) per
                          change through the API.  Atomic values: +4
                          (atomic add) only when a writer wakes waiters
                          (the data is the version).
     8     8  serial      unique per creation, never 0 while live; 0 from
                          the removal on (format 4) and in free blocks.
                          Written under the segment lock, before the slot
                          is published and after REMOVED; handles compare
                          it on every call (the header's inline paths
                          compare nothing else).
    16     1  state       0 free, 1 live, 2 removed, 3 limbo (4: a
                          pin block, shval__pins)
    17     1  mode        0 rlock, 1 lock, 2 raw, 3 atomic (SHVAL_x >> 8)
    18     1  kind        SHVAL_KIND_*
    19     1  flags       SHVAL__EF_PARTIAL (under the value's lock);
                          SHVAL__EF_LINEDATA (set at creation, never
                          changed: the data starts on a line, see below)
    20     1  name_len    1..255
    21     1  waiters     1 while somebody may sleep on the version (futex);
                          set by waiters (seq_cst fetch_or, then they
                          re-read the version), read by writers after their
                          change and a full barrier.  Locked and raw values:
                          taken (cleared) by a writer just BEFORE its change
                          moves the version, never after it; atomic values:
                          cleared, then the version moved (tag-waiters,
                          wait.c says why).  A byte of its own, so that the
                          version word is written by the lock holder alone
                          (locked values).  Earlier 4.x libraries cleared it
                          after the change; the layout is the same, and a
                          segment shared with one keeps only that library's
                          lost wake-up (a format minor would not stop it)
    22     2  data_rel    data offset from the entry start
    24     4  type_line   line of the type record (0 for lock entries)
    28     4  nlines      block size in lines
    32     8  lock_off    offset of the shval__lockblk guarding the value
                          (own, or a lock entry's); 0 for raw and atomic.
                          In free/limbo blocks: the next block of the list.
    40     n  name        name bytes, no NUL
    ...       lockblk     own lock (locked modes), 8-aligned after the name
    ...       data        at data_rel: 8-aligned after the lock block (or
                          the name), or, with SHVAL__EF_LINEDATA, at the
                          next line (64-byte) boundary.  The creator sets
                          LINEDATA when the 8-aligned place would make the
                          data span more lines than it needs and either the
                          value is 64 bytes or more or the block does not
                          grow by it (a 64-byte struct is then read from
                          one line, not two: shval__entry_layout)
    ...       undo        at undo_rel = data_rel + size rounded to 8, when
                          size <= SHVAL__UNDO_MAX (locked modes)
   In a limbo block, version holds the CLOCK_MONOTONIC time of removal.
   A replaced directory table also goes through limbo: its header line
   (cap, pad) is then read as an entry header (version, state, nlines,
   lock_off); its slots are left as they were.
*/
typedef struct shval__entry {
	_Atomic uint64_t version;
	_Atomic uint64_t serial;
	_Atomic uint8_t state;
	uint8_t mode;
	uint8_t kind;
	uint8_t flags;
	uint8_t name_len;
	_Atomic uint8_t waiters;
	uint16_t data_rel;
	uint32_t type_line;
	uint32_t nlines;
	uint64_t lock_off;
	char name[];
} shval__entry;

_Static_assert(offsetof(shval__entry, serial) == 8, "entry");
_Static_assert(offsetof(shval__entry, state) == 16, "entry");
_Static_assert(offsetof(shval__entry, mode) == 17, "entry");
_Static_assert(offsetof(shval__entry, kind) == 18, "entry");
_Static_assert(offsetof(shval__entry, flags) == 19, "entry");
_Static_assert(offsetof(shval__entry, name_len) == 20, "entry");
_Static_assert(offsetof(shval__entry, waiters) == 21, "entry");
_Static_assert(offsetof(shval__entry, data_rel) == 22, "entry");
_Static_assert(offsetof(shval__entry, type_line) == 24, "entry");
_Static_assert(offsetof(shval__entry, nlines) == 28, "entry");
_Static_assert(offsetof(shval__entry, lock_off) == 32, "entry");
_Static_assert(offsetof(shval__entry, name) == 40, "entry");
_Static_assert(sizeof(shval__entry) == 40, "entry");

#define SHVAL__ST_FREE 0
#define SHVAL__ST_LIVE 1
#define SHVAL__ST_REMOVED 2
#define SHVAL__ST_LIMBO 3
#define SHVAL__ST_PINS 4 /* a pin block (shval__pins), never in a list */

#define SHVAL__EF_PARTIAL 0x1  /* owner died mid-update, no undo copy */
#define SHVAL__EF_LINEDATA 0x2 /* the data starts at a line boundary */

/* Where a locked value's undo copy lives in its entry (see the diagram):
 * right after the data, 8-aligned; only values up to SHVAL__UNDO_MAX have
 * one.  Used by create (dir.c), handles (value.c) and recovery (lock.c). */
static inline uint64_t shval__undo_rel(uint64_t data_rel, uint64_t size)
{
	return (data_rel + size + 7) / 8 * 8;
}

/* ---- A lock block (inside a value entry, or a lock entry's data) --------

   off  size  field       protection
     0    40  mutex       robust, process-shared, ERRORCHECK (both
                          modes: an rlock's depth is counted in the
                          holder's held list, lock.c)
    40     4  reserved    0 (ownership and recursion depth are kept by
                          each thread, process-locally: lock.c)
    44     4  committing  1 while the holder commits the values it changed
                          (all data is final then): a new owner after a
                          death rolls those values forward, not back
    48     8  users       values created under this lock (shared locks:
                          a lock entry); under the segment lock
   56 bytes, 8-aligned.
*/
typedef struct shval__lockblk {
	pthread_mutex_t mutex;
	uint32_t reserved;
	_Atomic uint32_t committing;
	uint64_t users;
} shval__lockblk;
_Static_assert(offsetof(shval__lockblk, reserved) == 40, "lockblk");
_Static_assert(offsetof(shval__lockblk, committing) == 44, "lockblk");
_Static_assert(sizeof(shval__lockblk) == 56, "lockblk");

/* ---- A pin block (format 4.1) -------------------------------------------

   Buffer pins: a process that exports pointers into a value's block
   (shval_pin: a Python memoryview, a numpy array, a C caller keeping
   shval_data()) records a pin, and shval_remove refuses to remove a value
   that a live process has pinned (-EBUSY naming the process), so that the
   block is never reused under those pointers.  Pins are kept per attach
   slot, in a block of the slot's own named by attach[i].pins_line, so a
   process's pins go with its slot: when the slot is released (segment
   closed with no pins left, or the final release of the segment handle)
   and when the slot of a dead process is reaped (shval_remove meeting a
   dead pinner, the attach reaping of opens and of `check --repair`), the
   block is freed at once.  A pin of a dead process never blocks a removal.

   Every field of a pin block and pins_line are written under the segment
   lock (pin, unpin, reap, close) and read under it (remove); verify reads
   them without it and re-reads pins_line before it reports damage.

   off  size  field       
     0     8  version     0   (an entry header's first 40 bytes, so that a
     8     8  serial      0    stale handle's offset that lands here sees
    16     1  state       SHVAL__ST_PINS   no value: serial 0 is no value's)
    17    11  pad         0
    28     4  nlines      block size in lines (>= 2)
    32     4  pid         the owner: equals its attach slot's pid; a block
                          whose pid differs is not the slot's (ignored)
    36     4  cap         records the block holds: (nlines - 1) * 4
    40     4  n           records in use, [0, n) (unordered; unpin moves the
                          last record into a freed place)
    44    20  pad
    64  16cap records     {line, count, serial}: the pinned entry's line
                          (offset / 64), how many pins this process holds
                          on it (>= 1), and the entry's serial (so a record
                          can never pin a later value of that block)
   Grown by doubling: a new block is filled, pins_line then names it, and the
   old one is freed (nobody reads pin blocks without the segment lock but
   verify).  A process killed between the steps leaks a block (counted in
   `used`, so verify's accounting still balances).
*/
typedef struct shval__pin {
	uint32_t line;
	uint32_t count;
	uint64_t serial;
} shval__pin;

typedef struct shval__pins {
	_Atomic uint64_t version;
	_Atomic uint64_t serial;
	_Atomic uint8_t state;
	uint8_t pad0[11];
	uint32_t nlines;
	uint32_t pid;
	uint32_t cap;
	uint32_t n;
	uint8_t pad1[20];
	shval__pin pin[];
} shval__pins;
_Static_assert(sizeof(shval__pin) == 16, "pin");
_Static_assert(offsetof(shval__pins, state) == offsetof(shval__entry, state),
	       "pins");
_Static_assert(offsetof(shval__pins, nlines) == offsetof(shval__entry, nlines),
	       "pins");
_Static_assert(offsetof(shval__pins, pid) == 32, "pins");
_Static_assert(offsetof(shval__pins, cap) == 36, "pins");
_Static_assert(offsetof(shval__pins, n) == 40, "pins");
_Static_assert(sizeof(shval__pins) == 64, "pins");
#define SHVAL__PINS_PER_LINE (SHVAL__LINE / sizeof(shval__pin))

/* ---- A type record ------------------------------------------------------

   off  size  field
     0     8  magic   SHVAL__TYPE_MAGIC
     8     8  next    next record (offset) or 0; under the segment lock
    16     8  size    the type's size in bytes
    24     4  len     length of canon (<= SHVAL_TYPE_MAX)
    28     4  nlines  block size
    32   len  canon   canonical type string, then a NUL
   Interned: one record per distinct type, never freed.
*/
#define SHVAL__TYPE_MAGIC 0x0045505954564853ull /* "SHVTYPE\0" */
typedef struct shval__typerec {
	uint64_t magic;
	uint64_t next;
	uint64_t size;
	uint32_t len;
	uint32_t nlines;
	char canon[];
} shval__typerec;
_Static_assert(offsetof(shval__typerec, next) == 8, "typerec");
_Static_assert(offsetof(shval__typerec, size) == 16, "typerec");
_Static_assert(offsetof(shval__typerec, len) == 24, "typerec");
_Static_assert(offsetof(shval__typerec, nlines) == 28, "typerec");
_Static_assert(offsetof(shval__typerec, canon) == 32, "typerec");
_Static_assert(sizeof(shval__typerec) == 32, "typerec");

/* ---- The directory table -------------------------------------------------

   off  size  field
     0     8  cap     number of slots, a power of two >= 16
     8    56  pad
    64  8cap  slots   _Atomic uint64_t each: 0 empty, 1 tombstone, else
                      (hash >> 32) << 32 | entry line.  Stored (release)
                      under the segment lock after the entry is complete;
                      loaded (acquire) by lookups (tag-slot).
*/
/* Lines taken by a table of cap slots (one header line, then the slots). */
static inline uint64_t shval__table_lines(uint64_t cap)
{
	return 1 + (cap * 8 + SHVAL__LINE - 1) / SHVAL__LINE;
}

#define SHVAL__SLOT_EMPTY 0ull
#define SHVAL__SLOT_TOMB 1ull

/* A slot's word for the entry at off whose name has hash, and back. */
static inline uint64_t shval__slot_word(uint64_t hash, uint64_t off)
{
	return (hash >> 32) << 32 | off / SHVAL__LINE;
}
static inline uint64_t shval__slot_off(uint64_t s)
{
	return (s & 0xffffffffull) * SHVAL__LINE;
}

/* Layout signature: everything a mismatched build could disagree on. */
#define SHVAL__LAYOUT_SIG                                                   \
	(((uint64_t)sizeof(pthread_mutex_t) << 56) |                        \
	 ((uint64_t)sizeof(void *) << 48) | ((uint64_t)SHVAL__LINE << 40) | \
	 ((uint64_t)sizeof(shval__entry) << 32) |                           \
	 ((uint64_t)sizeof(shval__lockblk) << 24) |                         \
	 ((uint64_t)(sizeof(shval__hdr) / 64) << 8) |                       \
	 (uint64_t)sizeof(shval__typerec))

#endif
