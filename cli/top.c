/*
 * cli/top.c — `shval top SEG`: a live terminal view of a segment's values.
 *
 * One row per value (lock entries left out): its name, its value, for
 * numeric scalars the change per second, and the time since its last
 * change.  Keys: q (or Ctrl-C, Ctrl-\) quits; Ctrl-Z suspends; n, v, r,
 * a sort by name, value, rate, age (the same key again reverses); / edits
 * the name filter (a substring; Enter keeps it, Esc restores the previous
 * one, Ctrl-U clears it); the options --filter, --sort, --reverse and
 * --interval set the same at start.
 *
 * Refresh (no polling):
 * - A watcher thread sleeps in shval_seg_wait() on the segment-wide
 *   version (local: a futex; redis://: a blocking read of the segment's
 *   stream) and passes each change to the drawing loop through a pipe.
 *   The drawing loop sleeps in poll() on that pipe, the terminal and a
 *   signal pipe, with no timeout.
 * - The only timed redraw is the rate tick: the timeout of that same
 *   shval_seg_wait() (--interval, default 1 s).  At each tick every
 *   numeric value's rate becomes (value now - value at the last tick) /
 *   (time since the last tick), and the ages move on.
 * - Changes closer together than 50 ms are drawn together (the watcher
 *   waits out the rest of the 50 ms after passing one on; what changed
 *   meanwhile is seen by its next shval_seg_wait() at once), so a value
 *   changed a million times a second costs at most 20 redraws a second.
 * - A redraw walks the segment with shval_seg_next() and reads only the
 *   values whose version moved (atomic values: whose bits changed), each
 *   in one read (shval_read of a numeric scalar: value and rate come from
 *   one snapshot).
 *
 * Age: the time since top saw the value's version move (or the value
 * appear); for values that did not change since top started it is shown as
 * ">" and the time top has been running.
 *
 * The terminal: raw mode (termios; ISIG off, so Ctrl-C arrives as a key
 * and quits with status 0), the alternate screen, cursor hidden and line
 * wrap off, by plain ANSI/xterm escapes; all restored on every way out
 * (q, Ctrl-C, SIGINT/SIGTERM/SIGHUP from elsewhere, an error, the
 * terminal going away) and while suspended (Ctrl-Z or SIGTSTP), and
 * re-applied after SIGCONT.  Names, values and
 * the filter reach the screen only through shval_cli_display() (the CLI's
 * escaping: no control byte, no C1 control, no invalid UTF-8 is sent raw),
 * and cells are cut to their column by display width (wcwidth in the
 * user's locale), a cut cell ending in ">".
 *
 * shval_seg_wait() needs a writable mapping (watching announces itself in
 * the segment header), so the segment is opened read-write; top writes
 * nothing else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "ext.h"
#include "shval.h"

enum sortkey { S_NAME, S_VALUE, S_RATE, S_AGE };
static const char *const sort_names[] = { "name", "value", "rate", "age" };
/* Direction a key starts with: names A-Z, biggest values and rates first,
 * the most recent change first. */
static const bool sort_desc0[] = { false, true, true, false };

#define MIN_GAP_NS (50 * SHVAL_MSEC) /* between two change redraws */
#define BIG_VALUE 65536              /* bigger values: type and size only */
#define FILTER_MAX 255

struct row {
	char *name;  /* as in the segment */
	char *shown; /* name, escaped for the terminal */
	shval *v;
	uint64_t ver; /* version at the last read */
	bool seen;    /* met in the current scan */
	bool num;     /* numeric scalar: x, rate */
	double x;
	char *text;      /* value, escaped */
	int64_t changed; /* monotonic ns of the last change seen; 0: none */
	bool tick_have, rate_have;
	double tick_x, rate;
	int64_t tick_t;
};

struct top {
	const char *segname;
	char *segshown;
	shval_seg *seg;
	struct row *rows;
	size_t n, cap;
	struct row **vis; /* sorted, filtered: what is drawn */
	size_t nvis;
	int sort;
	bool desc;
	char filter[FILTER_MAX + 1], saved[FILTER_MAX + 1];
	bool editing;
	int64_t interval, start;
	int scr_rows, scr_cols;
	char msg[1024]; /* shown on the last line once */
	/* watcher thread */
	pthread_t th;
	bool th_started;
	uint64_t seen;
	int notify[2]; /* watcher -> loop: 'c' change, 't' tick, 'e' error */
	atomic_int stop;
	int werr; /* the watcher's error code ('e') */
	char werrmsg[256];
	/* terminal */
	struct termios saved_tio;
	bool raw;
};

static int sigpipe_w = -1;  /* signal handlers -> loop */
static struct top *the_top; /* reachable until exit (see top_close) */

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SHVAL_SEC + ts.tv_nsec;
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p) {
		fprintf(stderr, "shval: top: out of memory\n");
		exit(1);
	}
	return p;
}

/* The escaped form of n bytes (shval_cli_display), malloc'ed. */
static char *escaped(const char *s, size_t n)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	if (!m) {
		fprintf(stderr, "shval: top: out of memory\n");
		exit(1);
	}
	shval_cli_display(m, s, n);
	fclose(m);
	return out;
}

/* ---- the terminal ------------------------------------------------------ */

static void put_all(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the terminal is gone */
		s += w;
		n -= (size_t)w;
	}
}

static void term_enter(struct top *t)
{
	struct termios r = t->saved_tio;
	r.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
	r.c_oflag &= ~(tcflag_t)OPOST;
	r.c_cflag |= CS8;
	r.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
	r.c_cc[VMIN] = 1;
	r.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSADRAIN, &r);
	/* alternate screen, cursor hidden, no autowrap, cleared */
	static const char on[] = "\033[?1049h\033[?25l\033[?7l\033[H\033[2J";
	put_all(on, sizeof on - 1);
	t->raw = true;
}

static void term_leave(struct top *t)
{
	if (!t->raw)
		return;
	static const char off[] = "\033[0m\033[?7h\033[?25h\033[?1049l";
	put_all(off, sizeof off - 1);
	tcsetattr(STDIN_FILENO, TCSADRAIN, &t->saved_tio);
	t->raw = false;
}

static void at_exit_restore(void)
{
	if (the_top)
		term_leave(the_top);
}

static void on_signal(int sig)
{
	int e = errno;
	unsigned char b = (unsigned char)sig;
	if (sigpipe_w >= 0 && write(sigpipe_w, &b, 1) < 0) {
		/* full: the loop has enough to do already */
	}
	errno = e;
}

static void on_usr1(int sig)
{
	(void)sig; /* only interrupts the watcher's wait */
}

static void screen_size(struct top *t)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 &&
	    ws.ws_col > 0) {
		t->scr_rows = ws.ws_row;
		t->scr_cols = ws.ws_col;
	} else {
		t->scr_rows = 24;
		t->scr_cols = 80;
	}
}

/* ---- cells ------------------------------------------------------------- */

/* The character at s (valid UTF-8: escaped text): its length and width. */
static size_t char_at(const char *s, int *width)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	size_t len;
	if (p[0] < 0x80) {
		*width = 1;
		return 1;
	}
	if (p[0] >= 0xf0)
		len = 4, cp = p[0] & 0x07;
	else if (p[0] >= 0xe0)
		len = 3, cp = p[0] & 0x0f;
	else
		len = 2, cp = p[0] & 0x1f;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80) { /* not from shval_cli_display */
			*width = 1;
			return 1;
		}
		cp = cp << 6 | (p[i] & 0x3f);
	}
	int w = wcwidth((wchar_t)cp);
	*width = w < 0 ? 1 : w; /* a locale without it: one column */
	return len;
}

static int text_width(const char *s)
{
	int w = 0, cw;
	while (*s) {
		s += char_at(s, &cw);
		w += cw;
	}
	return w;
}

/* s (escaped) in exactly width columns: padded, or cut with ">" last. */
static void put_cell(FILE *m, const char *s, int width, bool right)
{
	if (width <= 0)
		return;
	int w = text_width(s);
	if (w <= width) {
		if (right)
			fprintf(m, "%*s", width - w, "");
		fputs(s, m);
		if (!right)
			fprintf(m, "%*s", width - w, "");
		return;
	}
	int used = 0, cw;
	while (*s) {
		size_t k = char_at(s, &cw);
		if (used + cw > width - 1)
			break;
		fwrite(s, 1, k, m);
		used += cw;
		s += k;
	}
	fprintf(m, "%*s>", width - 1 - used, "");
}

static void fmt_age(int64_t ns, char *buf, size_t cap)
{
	int64_t s = ns / SHVAL_SEC;
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, cap, "%" PRId64 "s", s);
	else if (s < 3600)
		snprintf(buf, cap, "%" PRId64 "m%02" PRId64 "s", s / 60,
			 s % 60);
	else if (s < 86400)
		snprintf(buf, cap, "%" PRId64 "h%02" PRId64 "m", s / 3600,
			 s / 60 % 60);
	else
		snprintf(buf, cap, "%" PRId64 "d%02" PRId64 "h", s / 86400,
			 s / 3600 % 24);
}

/* A rate in at most 12 columns: 4 significant digits below 1000, whole
 * numbers up to 1e11, exponent form beyond. */
static void fmt_rate(double r, char *buf, size_t cap)
{
	if (r == 0)
		snprintf(buf, cap, "0");
	else if (fabs(r) < 1000)
		snprintf(buf, cap, "%.4g", r);
	else if (fabs(r) < 1e11)
		snprintf(buf, cap, "%.0f", r);
	else
		snprintf(buf, cap, "%.4g", r);
}

/* Shortest %g text that reads back to x. */
static void fmt_double(double x, char *buf, size_t cap)
{
	for (int p = 1; p <= 17; p++) {
		snprintf(buf, cap, "%.*g", p, x);
		if (strtod(buf, NULL) == x || isnan(x))
			return;
	}
}

/* ---- reading values ---------------------------------------------------- */

static bool is_signed(char c)
{
	return strchr("bhilqn", c) != NULL;
}

/* A numeric scalar's letter, or 0. */
static char num_letter(const struct shval_info *in)
{
	if (in->kind != SHVAL_KIND_SCALAR || in->type[0] == 0 ||
	    in->type[1] != 0)
		return 0;
	return strchr("bB?hHiIlLqQnNfd", in->type[0]) ? in->type[0] : 0;
}

/* Read row r (info in) once: number and text from one snapshot. */
static int read_row(struct top *t, struct row *r, const struct shval_info *in)
{
	char letter = num_letter(in);
	char *text = NULL;
	int rc;
	if (letter) {
		union {
			int8_t b;
			uint8_t B;
			int16_t h;
			uint16_t H;
			int32_t i;
			uint32_t I;
			int64_t q;
			uint64_t Q;
			float f;
			double d;
			unsigned char raw[8];
		} u;
		memset(&u, 0, sizeof u);
		rc = shval_read(r->v, &u, sizeof u);
		if (rc)
			return rc;
		char buf[64];
		int64_t si = 0;
		uint64_t ui = 0;
		bool isint = true, sig = is_signed(letter);
		switch (in->size) {
		case 1:
			si = u.b;
			ui = u.B;
			break;
		case 2:
			si = u.h;
			ui = u.H;
			break;
		case 4:
			si = u.i;
			ui = u.I;
			break;
		default:
			si = u.q;
			ui = u.Q;
		}
		if (letter == 'f' || letter == 'd') {
			isint = false;
			r->x = letter == 'f' ? (double)u.f : u.d;
		}
		if (letter == '?') {
			r->x = ui != 0;
			snprintf(buf, sizeof buf, "%s", ui ? "true" : "false");
		} else if (!isint) {
			fmt_double(r->x, buf, sizeof buf);
		} else if (sig) {
			r->x = (double)si;
			snprintf(buf, sizeof buf, "%" PRId64, si);
		} else {
			r->x = (double)ui;
			snprintf(buf, sizeof buf, "%" PRIu64, ui);
		}
		r->num = true;
		text = escaped(buf, strlen(buf));
	} else if (in->size > BIG_VALUE) {
		char buf[SHVAL_TYPE_MAX + 64];
		snprintf(buf, sizeof buf, "(%s, %zu bytes: too big to show)",
			 in->type, in->size);
		r->num = false;
		text = escaped(buf, strlen(buf));
	} else {
		size_t cap = in->size * 4 + 64, len = 0;
		char *buf = xcalloc(1, cap);
		while ((rc = shval_to_text(r->v, 0, buf, cap, &len)) ==
		       SHVAL_ETOOBIG) {
			free(buf);
			cap = len + 1;
			buf = xcalloc(1, cap);
		}
		if (rc) {
			free(buf);
			return rc;
		}
		r->num = false;
		text = escaped(buf, len);
		free(buf);
	}
	(void)t;
	free(r->text);
	r->text = text;
	return 0;
}

static struct row *row_add(struct top *t, const char *name)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? 2 * t->cap : 64;
		struct row *nr = realloc(t->rows, t->cap * sizeof *nr);
		if (!nr) {
			fprintf(stderr, "shval: top: out of memory\n");
			exit(1);
		}
		t->rows = nr;
	}
	struct row *r = &t->rows[t->n++];
	memset(r, 0, sizeof *r);
	r->name = strdup(name);
	if (!r->name) {
		fprintf(stderr, "shval: top: out of memory\n");
		exit(1);
	}
	r->shown = escaped(name, strlen(name));
	return r;
}

static void row_free(struct row *r)
{
	shval_close(r->v);
	free(r->name);
	free(r->shown);
	free(r->text);
}

/* Walk the segment: new values get rows, removed ones lose theirs, values
 * whose version moved are read again.  first: the initial scan (no change
 * seen yet).  Returns 0 or a library code (message in t->msg). */
static int scan(struct top *t, bool first)
{
	int64_t now = mono_ns();
	for (size_t i = 0; i < t->n; i++)
		t->rows[i].seen = false;
	uint64_t cursor = 0;
	size_t hint = 0;
	struct shval_info in;
	int rc;
	while ((rc = shval_seg_next(t->seg, &cursor, NULL, &in)) == 0 ||
	       rc == SHVAL_ECORRUPT) {
		if (rc == SHVAL_ECORRUPT) {
			snprintf(t->msg, sizeof t->msg,
				 "a damaged directory slot or entry was "
				 "skipped (shval check %s)",
				 t->segshown);
			continue;
		}
		if (in.kind == SHVAL_KIND_LOCK)
			continue;
		/* Directory order rarely changes: try the next row first. */
		struct row *r = NULL;
		if (hint < t->n && strcmp(t->rows[hint].name, in.name) == 0)
			r = &t->rows[hint];
		for (size_t i = 0; !r && i < t->n; i++)
			if (strcmp(t->rows[i].name, in.name) == 0)
				r = &t->rows[i];
		bool fresh = !r;
		if (!r)
			r = row_add(t, in.name);
		hint = (size_t)(r - t->rows) + 1;
		r->seen = true;
		if (!fresh && r->v && r->text && in.version == r->ver)
			continue; /* unchanged */
		for (int tries = 0; tries < 2; tries++) {
			if (!r->v) {
				rc = shval_find(t->seg, r->name, NULL, &r->v);
				if (rc == SHVAL_ENOTFOUND)
					break; /* removed meanwhile */
				if (rc)
					goto failed;
				if ((rc = shval_info(r->v, &in)) != 0)
					goto failed;
			}
			rc = read_row(t, r, &in);
			if (rc == SHVAL_ESTALE) { /* removed, maybe anew */
				shval_close(r->v);
				r->v = NULL;
				continue;
			}
			if (rc)
				goto failed;
			break;
		}
		if (!r->text) {
			r->seen = false; /* gone before it could be read */
			continue;
		}
		if (!first && (fresh || in.version != r->ver))
			r->changed = now;
		r->ver = in.version;
		continue;
	failed:
		snprintf(t->msg, sizeof t->msg, "%s: %s (%s)", r->shown,
			 shval_strerror(rc), shval_errmsg(t->seg));
		return rc;
	}
	if (rc != SHVAL_ENOTFOUND) {
		snprintf(t->msg, sizeof t->msg, "listing: %s (%s)",
			 shval_strerror(rc), shval_errmsg(t->seg));
		return rc;
	}
	size_t k = 0; /* forget values that were removed */
	for (size_t i = 0; i < t->n; i++) {
		if (t->rows[i].seen)
			t->rows[k++] = t->rows[i];
		else
			row_free(&t->rows[i]);
	}
	t->n = k;
	return 0;
}

/* The rate tick: each numeric value's change since the last tick. */
static void tick(struct top *t)
{
	int64_t now = mono_ns();
	for (size_t i = 0; i < t->n; i++) {
		struct row *r = &t->rows[i];
		if (!r->num) {
			r->tick_have = r->rate_have = false;
			continue;
		}
		if (r->tick_have && now > r->tick_t) {
			r->rate = (r->x - r->tick_x) /
				  ((double)(now - r->tick_t) / SHVAL_SEC);
			r->rate_have = true;
		}
		r->tick_x = r->x;
		r->tick_t = now;
		r->tick_have = true;
	}
}

/* ---- sorting and drawing ----------------------------------------------- */

static struct top *sort_top; /* qsort has no argument */

/* Rows without the key (no number, no rate, no change seen) go last in
 * either direction; ties by name. */
static int cmp_rows(const void *pa, const void *pb)
{
	const struct row *a = *(struct row *const *)pa;
	const struct row *b = *(struct row *const *)pb;
	int s = sort_top->sort;
	bool desc = sort_top->desc;
	int c = 0;
	if (s == S_VALUE) {
		if (a->num != b->num)
			return a->num ? -1 : 1;
		if (a->num)
			c = a->x < b->x ? -1 : a->x > b->x ? 1 : 0;
		else
			c = strcmp(a->text, b->text);
	} else if (s == S_RATE) {
		if (a->rate_have != b->rate_have)
			return a->rate_have ? -1 : 1;
		if (a->rate_have)
			c = a->rate < b->rate ? -1 : a->rate > b->rate ? 1 : 0;
	} else if (s == S_AGE) {
		bool ha = a->changed != 0, hb = b->changed != 0;
		if (ha != hb)
			return ha ? -1 : 1;
		/* ascending age: the latest change first */
		c = a->changed > b->changed ? -1 : a->changed < b->changed;
	}
	if (c == 0)
		c = strcmp(a->name, b->name);
	return desc ? -c : c;
}

static void arrange(struct top *t)
{
	free(t->vis);
	t->vis = xcalloc(t->n, sizeof *t->vis);
	t->nvis = 0;
	for (size_t i = 0; i < t->n; i++)
		if (!t->filter[0] || strstr(t->rows[i].name, t->filter))
			t->vis[t->nvis++] = &t->rows[i];
	sort_top = t;
	if (t->nvis > 1)
		qsort(t->vis, t->nvis, sizeof *t->vis, cmp_rows);
}

static void draw(struct top *t)
{
	if (!t->raw)
		return; /* never on the normal screen */
	arrange(t);
	int64_t now = mono_ns();
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	if (!m)
		return;
	int W = t->scr_cols, H = t->scr_rows;
	/* line 1: what is shown */
	char head[2048];
	char *filt = escaped(t->filter, strlen(t->filter));
	int hl = snprintf(head, sizeof head,
			  "shval top %s  %zu values, %zu shown  sort: %s %s",
			  t->segshown, t->n, t->nvis, sort_names[t->sort],
			  t->desc ? "descending" : "ascending");
	if (hl > 0 && (size_t)hl < sizeof head && t->filter[0])
		snprintf(head + hl, sizeof head - (size_t)hl,
			 "  filter: \"%s\"", filt);
	fputs("\033[1;1H", m);
	put_cell(m, head, W, false);
	/* line 2: column heads; widths */
	int wr = 12, wa = 7, wn = 4;
	for (size_t i = 0; i < t->nvis; i++) {
		int w = text_width(t->vis[i]->shown);
		if (w > wn)
			wn = w;
	}
	int rest = W - wr - wa - 3; /* three gaps */
	if (wn > rest / 2)
		wn = rest / 2 > 4 ? rest / 2 : 4;
	int wv = 5; /* as wide as the widest value, at most the rest */
	for (size_t i = 0; i < t->nvis; i++) {
		int w = text_width(t->vis[i]->text);
		if (w > wv)
			wv = w;
	}
	if (wv > rest - wn - 1)
		wv = rest - wn - 1;
	if (wv < 1)
		wv = 1;
	fputs("\033[2;1H\033[7m", m);
	put_cell(m, "NAME", wn, false);
	fputc(' ', m);
	put_cell(m, "VALUE", wv, false);
	fputc(' ', m);
	put_cell(m, "RATE/s", wr, true);
	fputc(' ', m);
	put_cell(m, "AGE", wa, true);
	fputs("\033[0m\033[K", m);
	/* rows */
	int line = 3;
	size_t shown = 0;
	for (; shown < t->nvis && line < H; shown++, line++) {
		struct row *r = t->vis[shown];
		char rate[48], age[48];
		if (r->num && r->rate_have)
			fmt_rate(r->rate, rate, sizeof rate);
		else
			snprintf(rate, sizeof rate, "-");
		if (r->changed) {
			fmt_age(now - r->changed, age, sizeof age);
		} else {
			age[0] = '>';
			fmt_age(now - t->start, age + 1, sizeof age - 1);
		}
		fprintf(m, "\033[%d;1H", line);
		put_cell(m, r->shown, wn, false);
		fputc(' ', m);
		put_cell(m, r->text, wv, false);
		fputc(' ', m);
		put_cell(m, rate, wr, true);
		fputc(' ', m);
		put_cell(m, age, wa, true);
		fputs("\033[K", m);
	}
	fprintf(m, "\033[%d;1H\033[J", line); /* clear the rest */
	/* last line: the filter being edited, a message, or the keys */
	fprintf(m, "\033[%d;1H", H);
	if (t->editing) {
		char prompt[FILTER_MAX * 4 + 32];
		snprintf(prompt, sizeof prompt, "filter: %s_", filt);
		put_cell(m, prompt, W, false);
	} else if (t->msg[0]) {
		char *e = escaped(t->msg, strlen(t->msg));
		fputs("\033[7m", m);
		put_cell(m, e, W, false);
		fputs("\033[0m", m);
		free(e);
	} else if (shown < t->nvis) {
		char more[160];
		snprintf(more, sizeof more,
			 "%zu more below   q quit  n/v/r/a sort  / filter",
			 t->nvis - shown);
		put_cell(m, more, W, false);
	} else {
		put_cell(m,
			 "q quit  n/v/r/a sort by name/value/rate/age "
			 "(again: reverse)  / filter",
			 W, false);
	}
	free(filt);
	fclose(m);
	put_all(out, len);
	free(out);
}

/* ---- the watcher thread ------------------------------------------------ */

static void notify(struct top *t, char c)
{
	for (;;) {
		ssize_t w = write(t->notify[1], &c, 1);
		if (w == 1 || (w < 0 && errno != EINTR))
			return; /* EAGAIN: the loop has unread notes */
	}
}

static void *watcher(void *arg)
{
	struct top *t = arg;
	uint64_t seen = t->seen;
	int64_t next = t->start + t->interval, last_c = 0;
	while (!atomic_load(&t->stop)) {
		int64_t now = mono_ns();
		if (now >= next) {
			notify(t, 't');
			next += t->interval;
			if (next <= now)
				next = now + t->interval;
			continue;
		}
		int r = shval_seg_wait(t->seg, &seen, next - now);
		if (r == -ETIMEDOUT || r == -EINTR)
			continue;
		if (r) {
			t->werr = r;
			snprintf(t->werrmsg, sizeof t->werrmsg, "%s",
				 shval_errmsg(t->seg));
			notify(t, 'e');
			return NULL;
		}
		/* At most one redraw per MIN_GAP_NS: what changes while we
		 * sleep is in the scan that this note starts. */
		int64_t gap = last_c + MIN_GAP_NS - mono_ns();
		if (gap > 0 && !atomic_load(&t->stop)) {
			struct timespec ts = { 0, (long)gap };
			nanosleep(&ts, NULL);
		}
		notify(t, 'c');
		last_c = mono_ns();
	}
	return NULL;
}

/* Stop the watcher: its wait is interrupted by SIGUSR1 (a futex wait
 * returns -EINTR; a redis:// wait ends by its timeout, the tick).  Gives
 * up after two ticks; the segment is then left open to the exit. */
static bool watcher_stop(struct top *t)
{
	if (!t->th_started)
		return true;
	atomic_store(&t->stop, 1);
	int64_t until = mono_ns() + 2 * t->interval + SHVAL_SEC;
	while (mono_ns() < until) {
		pthread_kill(t->th, SIGUSR1);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * SHVAL_MSEC;
		if (ts.tv_nsec >= SHVAL_SEC)
			ts.tv_sec++, ts.tv_nsec -= SHVAL_SEC;
		if (pthread_timedjoin_np(t->th, NULL, &ts) == 0) {
			t->th_started = false;
			return true;
		}
	}
	return false;
}

/* ---- keys -------------------------------------------------------------- */

enum { K_GO_ON, K_QUIT, K_SUSPEND };

static void set_sort(struct top *t, int key)
{
	if (t->sort == key)
		t->desc = !t->desc;
	else
		t->sort = key, t->desc = sort_desc0[key];
}

static int key(struct top *t, unsigned char c)
{
	if (c == 3 || c == 0x1c) /* Ctrl-C, Ctrl-\ */
		return K_QUIT;
	if (c == 0x1a) /* Ctrl-Z */
		return K_SUSPEND;
	if (t->editing) {
		size_t n = strlen(t->filter);
		if (c == '\r' || c == '\n') {
			t->editing = false;
		} else if (c == 0x1b) { /* Esc: back to the previous filter */
			memcpy(t->filter, t->saved, sizeof t->filter);
			t->editing = false;
		} else if (c == 0x7f || c == 0x08) {
			while (n > 0 &&
			       ((unsigned char)t->filter[n - 1] & 0xc0) == 0x80)
				n--; /* a whole UTF-8 character */
			if (n > 0)
				n--;
			t->filter[n] = 0;
		} else if (c == 0x15) { /* Ctrl-U */
			t->filter[0] = 0;
		} else if (c >= 0x20) {
			if (n < FILTER_MAX) {
				t->filter[n] = (char)c;
				t->filter[n + 1] = 0;
			} else {
				snprintf(t->msg, sizeof t->msg,
					 "the filter is at most %d bytes",
					 FILTER_MAX);
			}
		}
		return K_GO_ON;
	}
	switch (c) {
	case 'q':
	case 'Q':
		return K_QUIT;
	case 'n':
		set_sort(t, S_NAME);
		break;
	case 'v':
		set_sort(t, S_VALUE);
		break;
	case 'r':
		set_sort(t, S_RATE);
		break;
	case 'a':
		set_sort(t, S_AGE);
		break;
	case '/':
		memcpy(t->saved, t->filter, sizeof t->saved);
		t->editing = true;
		break;
	default:
		break;
	}
	return K_GO_ON;
}

/* ---- the command ------------------------------------------------------- */

static bool parse_interval(const char *s, int64_t *ns)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (errno || end == s || *end || !(d >= 0.05 && d <= 3600))
		return false;
	*ns = (int64_t)(d * SHVAL_SEC);
	return true;
}

static void top_close(struct top *t)
{
	if (!watcher_stop(t))
		return; /* left to the exit: the watcher may still use it */
	for (size_t i = 0; i < t->n; i++)
		row_free(&t->rows[i]);
	free(t->rows);
	free(t->vis);
	free(t->segshown);
	shval_seg_close(t->seg);
	close(t->notify[0]);
	close(t->notify[1]);
	the_top = NULL;
	free(t);
}

/* Ctrl-Z or a SIGTSTP: the terminal as it was, then stop; once
 * continued, the screen is taken back (and redrawn by the caller). */
static void suspend(struct top *t)
{
	term_leave(t);
	kill(getpid(), SIGSTOP);
	term_enter(t); /* continued (SIGCONT's note does it again: harmless) */
}

static int loop(struct top *t, int sigr)
{
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = STDIN_FILENO, .events = POLLIN },
			{ .fd = t->notify[0], .events = POLLIN },
			{ .fd = sigr, .events = POLLIN },
		};
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(t->msg, sizeof t->msg, "poll: %s",
				 strerror(errno));
			return 1;
		}
		bool rescan = false, ticked = false, redraw = false;
		if (p[2].revents & POLLIN) {
			unsigned char sigs[32];
			ssize_t k = read(sigr, sigs, sizeof sigs);
			for (ssize_t i = 0; i < k; i++) {
				if (sigs[i] == SIGWINCH) {
					screen_size(t);
					redraw = true;
				} else if (sigs[i] == SIGCONT) {
					term_enter(t);
					redraw = true;
				} else if (sigs[i] == SIGTSTP) {
					suspend(t);
					redraw = true;
				} else {
					return 0; /* SIGINT, SIGTERM, SIGHUP */
				}
			}
		}
		if (p[1].revents & POLLIN) {
			char notes[256];
			ssize_t k = read(t->notify[0], notes, sizeof notes);
			for (ssize_t i = 0; i < k; i++) {
				if (notes[i] == 'c')
					rescan = true;
				else if (notes[i] == 't')
					rescan = ticked = true;
				else if (notes[i] == 'e') {
					snprintf(t->msg, sizeof t->msg,
						 "waiting for changes: %s (%s)",
						 shval_strerror(t->werr),
						 t->werrmsg);
					return 1;
				}
			}
		}
		if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			unsigned char keys[64];
			ssize_t k = read(STDIN_FILENO, keys, sizeof keys);
			if (k == 0 ||
			    (k < 0 && errno != EINTR && errno != EAGAIN))
				return 0; /* the terminal went away */
			for (ssize_t i = 0; i < k; i++) {
				int what = key(t, keys[i]);
				if (what == K_QUIT)
					return 0;
				if (what == K_SUSPEND)
					suspend(t);
			}
			redraw = true;
		}
		if (rescan) {
			t->msg[0] = 0;
			if (scan(t, false))
				return 1;
		}
		if (ticked)
			tick(t);
		if (rescan || redraw) {
			draw(t);
			if (!t->editing && !rescan)
				t->msg[0] = 0; /* a key's message: once */
		}
	}
}

int shval_cmd_top(int argc, char **argv)
{
	const char *segname = NULL, *filter = NULL;
	int sort = S_NAME;
	bool reverse = false;
	int64_t interval = SHVAL_SEC;
	for (int i = 0; i < argc; i++) {
		const char *s = argv[i], *val = NULL;
		if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0)
			return shval_ext_help("top");
		if (strncmp(s, "--", 2) != 0 || strcmp(s, "--") == 0) {
			if (strcmp(s, "--") == 0 && i + 1 < argc)
				s = argv[++i];
			if (segname)
				return shval_ext_usage(
					"top", "one SEG only (got '%s' too)",
					s);
			segname = s;
			continue;
		}
		if (strcmp(s, "--reverse") == 0) {
			reverse = true;
			continue;
		}
		const char *opts[] = { "--filter", "--sort", "--interval" };
		size_t o = 0, ol = 0;
		for (; o < 3; o++) {
			ol = strlen(opts[o]);
			if (strncmp(s, opts[o], ol) == 0 &&
			    (s[ol] == 0 || s[ol] == '='))
				break;
		}
		if (o == 3)
			return shval_ext_usage("top", "unknown option '%s'", s);
		if (s[ol] == '=')
			val = s + ol + 1;
		else if (i + 1 < argc)
			val = argv[++i];
		else
			return shval_ext_usage("top", "%s needs a value",
					       opts[o]);
		if (o == 0) {
			if (strlen(val) > FILTER_MAX)
				return shval_ext_usage(
					"top",
					"--filter is at most %d bytes (got "
					"%zu)",
					FILTER_MAX, strlen(val));
			filter = val;
		} else if (o == 1) {
			int k = 0;
			while (k < 4 && strcmp(val, sort_names[k]) != 0)
				k++;
			if (k == 4)
				return shval_ext_usage(
					"top",
					"bad --sort '%s' (expected name, "
					"value, rate or age)",
					val);
			sort = k;
		} else if (!parse_interval(val, &interval)) {
			return shval_ext_usage("top",
					       "bad --interval '%s' (expected "
					       "seconds, 0.05 to 3600)",
					       val);
		}
	}
	if (!segname)
		return shval_ext_usage("top", "missing SEG");
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr,
			"shval: top: standard input and output must be a "
			"terminal (for one listing: shval show; for a "
			"stream of changes: shval watch)\n");
		return 1;
	}
	setlocale(LC_CTYPE, ""); /* wcwidth of the user's characters */

	struct top *t = xcalloc(1, sizeof *t);
	the_top = t;
	t->segname = segname;
	t->segshown = escaped(segname, strlen(segname));
	t->sort = sort;
	t->desc = reverse ? !sort_desc0[sort] : sort_desc0[sort];
	t->interval = interval;
	t->notify[0] = t->notify[1] = -1;
	if (filter)
		snprintf(t->filter, sizeof t->filter, "%s", filter);
	int rc = shval_seg_open(segname, 0, NULL, &t->seg);
	if (rc) {
		const char *d = shval_errmsg(NULL);
		fprintf(stderr, "shval: top %s: %s%s%s%s\n", t->segshown,
			shval_strerror(rc), d[0] ? " (" : "", d,
			d[0] ? ")" : "");
		free(t->segshown);
		free(t);
		the_top = NULL;
		return 1;
	}
	int sp[2];
	if (pipe2(t->notify, O_CLOEXEC | O_NONBLOCK) ||
	    pipe2(sp, O_CLOEXEC | O_NONBLOCK)) {
		fprintf(stderr, "shval: top: pipe: %s\n", strerror(errno));
		return 1;
	}
	sigpipe_w = sp[1];
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGCONT, SIGTSTP };
	for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
		sigaction(sigs[i], &sa, NULL);
	sa.sa_handler = on_usr1;
	sa.sa_flags = 0; /* no restart: the watcher's wait returns */
	sigaction(SIGUSR1, &sa, NULL);

	tcgetattr(STDIN_FILENO, &t->saved_tio);
	atexit(at_exit_restore);
	screen_size(t);
	t->start = mono_ns();
	/* The version before the first read: no change is missed. */
	t->seen = shval_seg_version(t->seg);
	if ((rc = scan(t, true)) != 0) {
		fprintf(stderr, "shval: top %s: %s\n", t->segshown, t->msg);
		top_close(t);
		close(sp[0]);
		close(sp[1]);
		return 1;
	}
	tick(t);
	/* The watcher gets no terminal signals: they go to the loop. */
	sigset_t all, old;
	sigfillset(&all);
	sigdelset(&all, SIGUSR1);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int e = pthread_create(&t->th, NULL, watcher, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (e) {
		fprintf(stderr, "shval: top: cannot start a thread: %s\n",
			strerror(e));
		top_close(t);
		return 1;
	}
	t->th_started = true;
	term_enter(t);
	draw(t);
	int status = loop(t, sp[0]);
	term_leave(t);
	if (status)
		fprintf(stderr, "shval: top %s: %s\n", t->segshown, t->msg);
	sigpipe_w = -1;
	top_close(t);
	close(sp[0]);
	close(sp[1]);
	return status;
}
