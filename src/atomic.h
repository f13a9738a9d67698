/*
 * src/atomic.h — atomic operations on a value's bytes, width-generic
 * (1, 2, 4 or 8 bytes), written once.  Internal: not API.
 *
 * Values are little-endian bit patterns in a uint64_t (the low bytes are
 * the value's bytes).  Every operation is seq_cst: an atomic value's data
 * is its own version (wait.c), and a writer's RMW is the store-load
 * barrier of the waiter protocol (tag-waiters).
 */
#ifndef SHVAL_ATOMIC_H
#define SHVAL_ATOMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum shval__rmw {
	SHVAL__RMW_ADD,
	SHVAL__RMW_AND,
	SHVAL__RMW_OR,
	SHVAL__RMW_XOR,
	SHVAL__RMW_XCHG
};

/* Run STMT with T the unsigned type of width size (1, 2, 4, else 8). */
#define SHVAL__BY_WIDTH(size, STMT) \
	switch (size) {             \
	case 1: {                   \
		typedef uint8_t T;  \
		STMT;               \
	} break;                    \
	case 2: {                   \
		typedef uint16_t T; \
		STMT;               \
	} break;                    \
	case 4: {                   \
		typedef uint32_t T; \
		STMT;               \
	} break;                    \
	default: {                  \
		typedef uint64_t T; \
		STMT;               \
	} break;                    \
	}

static inline uint64_t shval__atomic_load(const void *p, size_t size)
{
	uint64_t x = 0;
	SHVAL__BY_WIDTH(size,
			x = __atomic_load_n((const T *)p, __ATOMIC_SEQ_CST))
	return x;
}

static inline void shval__atomic_store(void *p, size_t size, uint64_t bits)
{
	SHVAL__BY_WIDTH(size,
			__atomic_store_n((T *)p, (T)bits, __ATOMIC_SEQ_CST))
}

/* The old bits. */
static inline uint64_t shval__atomic_rmw(void *p, size_t size,
					 enum shval__rmw op, uint64_t arg)
{
	uint64_t old = 0;
/* One line per operation: a table (clang-format would split each). */
/* clang-format off */
#define SHVAL__RMW_ONE(T)                                                    \
	switch (op) {                                                        \
	case SHVAL__RMW_ADD: old = __atomic_fetch_add((T *)p, (T)arg, __ATOMIC_SEQ_CST); break; \
	case SHVAL__RMW_AND: old = __atomic_fetch_and((T *)p, (T)arg, __ATOMIC_SEQ_CST); break; \
	case SHVAL__RMW_OR: old = __atomic_fetch_or((T *)p, (T)arg, __ATOMIC_SEQ_CST); break;   \
	case SHVAL__RMW_XOR: old = __atomic_fetch_xor((T *)p, (T)arg, __ATOMIC_SEQ_CST); break; \
	default: old = __atomic_exchange_n((T *)p, (T)arg, __ATOMIC_SEQ_CST); break;            \
	}
	/* clang-format on */
	SHVAL__BY_WIDTH(size, SHVAL__RMW_ONE(T))
#undef SHVAL__RMW_ONE
	return old;
}

/* Compare-and-swap: true if *expected matched (desired stored); else
 * false with the current bits in *expected. */
static inline bool shval__atomic_cas(void *p, size_t size, uint64_t *expected,
				     uint64_t desired)
{
	bool ok = false;
	SHVAL__BY_WIDTH(size, {
		T e = (T)*expected;
		ok = __atomic_compare_exchange_n((T *)p, &e, (T)desired, false,
						 __ATOMIC_SEQ_CST,
						 __ATOMIC_SEQ_CST);
		*expected = e;
	})
	return ok;
}

#endif
