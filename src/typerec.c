/*
 * src/typerec.c — types in a segment: the interned type records (one per
 * distinct canonical type string, a list from the header's types_off;
 * written under the segment lock, read lock-free) and this process's cache
 * of their parsed forms (per segment handle, under its type_lock; lookups
 * lock-free).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- type records (in the segment) ---- */

static shval__typerec *typerec_at(shval_seg *seg, uint64_t off)
{
	if (off < sizeof(shval__hdr) || off % SHVAL__LINE ||
	    !shval__in(seg, off, sizeof(shval__typerec)))
		return NULL;
	shval__typerec *t = shval__at(seg, off);
	if (t->magic != SHVAL__TYPE_MAGIC || t->len == 0 ||
	    t->len > SHVAL_TYPE_MAX ||
	    !shval__in(seg, off, sizeof(shval__typerec) + t->len + 1) ||
	    t->canon[t->len] != 0)
		return NULL;
	return t;
}

int shval__type_intern(shval_seg *seg, const shval__type *t, uint32_t *line)
{
	shval__hdr *h = seg->hdr;
	size_t len = strlen(t->canon);
	uint64_t off = h->types_off;
	for (int guard = 0; off && guard < 10000000; guard++) {
		shval__typerec *r = typerec_at(seg, off);
		if (!r)
			return shval__failf(
				seg, SHVAL_ECORRUPT,
				"segment %s: type record at offset %llu "
				"is damaged",
				seg->name, (unsigned long long)off);
		if (r->len == len && memcmp(r->canon, t->canon, len) == 0) {
			*line = (uint32_t)(off / SHVAL__LINE);
			return 0;
		}
		off = r->next;
	}
	uint64_t lines = (sizeof(shval__typerec) + len + 1 + SHVAL__LINE - 1) /
			 SHVAL__LINE;
	int rc = shval__alloc(seg, lines, &off);
	if (rc)
		return rc;
	shval__typerec *r = shval__at(seg, off);
	memset(r, 0, lines * SHVAL__LINE);
	r->magic = SHVAL__TYPE_MAGIC;
	r->next = h->types_off;
	r->size = t->size;
	r->len = (uint32_t)len;
	r->nlines = (uint32_t)lines;
	memcpy(r->canon, t->canon, len + 1);
	h->types_off = off;
	*line = (uint32_t)(off / SHVAL__LINE);
	return 0;
}

const char *shval__entry_type(shval_seg *seg, const shval__entry *e,
			      uint64_t *size)
{
	shval__typerec *r =
		typerec_at(seg, (uint64_t)e->type_line * SHVAL__LINE);
	if (!r)
		return NULL;
	if (size)
		*size = r->size;
	return r->canon;
}

/* ---- parsed types (this process) ---- */

static void tcache_free(struct shval__tcache *_Atomic *heads)
{
	for (int i = 0; i < 64; i++) {
		struct shval__tcache *c = atomic_load(&heads[i]), *n;
		for (; c; c = n) {
			n = c->next;
			shval__type_free(c->type);
			free(c->text);
			free(c);
		}
	}
}

shval__type *shval__seg_type(shval_seg *seg, uint32_t line, const char *canon,
			     char *err, size_t errcap)
{
	struct shval__tcache *_Atomic *head = &seg->types[line & 63];
	/* Lock-free walk: acquire pairs with the release publication below.
	 * The record's text is re-compared: the segment is shared memory and
	 * could have been changed under us. */
	for (struct shval__tcache *c =
		     atomic_load_explicit(head, memory_order_acquire);
	     c; c = c->next)
		if (c->line == line && strcmp(c->type->canon, canon) == 0)
			return c->type;
	pthread_mutex_lock(&seg->type_lock);
	for (struct shval__tcache *c =
		     atomic_load_explicit(head, memory_order_relaxed);
	     c; c = c->next)
		if (c->line == line && strcmp(c->type->canon, canon) == 0) {
			pthread_mutex_unlock(&seg->type_lock);
			return c->type;
		}
	shval__type *t = NULL;
	struct shval__tcache *c = calloc(1, sizeof *c);
	if (!c || shval__type_parse(canon, &t, err, errcap) != 0) {
		if (!c && errcap)
			snprintf(err, errcap, "out of memory");
		free(c);
		pthread_mutex_unlock(&seg->type_lock);
		return NULL;
	}
	c->line = line;
	c->type = t;
	c->next = atomic_load_explicit(head, memory_order_relaxed);
	atomic_store_explicit(head, c, memory_order_release);
	pthread_mutex_unlock(&seg->type_lock);
	return t;
}

shval__type *shval__seg_type_text(shval_seg *seg, const char *text, bool *owned,
				  char *err, size_t errcap, int *code)
{
	uint64_t h = shval__hash(text, strlen(text));
	struct shval__tcache *_Atomic *head = &seg->texts[h & 63];
	*owned = false;
	for (struct shval__tcache *c =
		     atomic_load_explicit(head, memory_order_acquire);
	     c; c = c->next)
		if (strcmp(c->text, text) == 0)
			return c->type;
	shval__type *t = NULL;
	*code = shval__type_parse(text, &t, err, errcap);
	if (*code)
		return NULL;
	pthread_mutex_lock(&seg->type_lock);
	struct shval__tcache *c = NULL;
	if (seg->ntexts < 256 && (c = calloc(1, sizeof *c)) != NULL &&
	    (c->text = strdup(text)) != NULL) {
		c->type = t;
		c->next = atomic_load_explicit(head, memory_order_relaxed);
		atomic_store_explicit(head, c, memory_order_release);
		seg->ntexts++;
	} else {
		if (c)
			free(c);
		*owned = true; /* not cached: the caller frees it */
	}
	pthread_mutex_unlock(&seg->type_lock);
	return t;
}

void shval__tcache_free(shval_seg *seg)
{
	tcache_free(seg->types);
	tcache_free(seg->texts);
}
