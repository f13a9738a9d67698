/*
 * cli/metrics.c — `shval export`: the Prometheus text exposition (format
 * 0.0.4, what node_exporter's textfile collector and every Prometheus
 * scraper read) of the numeric values of one or more segments, and the
 * renderer that `shval serve` (cli/serve.c) shares.
 *
 * How a value becomes a metric (docs/shval.1, "METRICS"; README):
 *
 *   NAME = BASE [ "{" LABEL="VALUE" ("," LABEL="VALUE")* [","] "}" ]
 *          [ "@" PID | "@dead" ]
 *
 * - BASE is the metric name: every character outside [A-Za-z0-9_] becomes
 *   "_" ("app.hits" -> "app_hits"; ":" too: colons are for recording
 *   rules), and a leading digit gets a "_" in front.  Label names likewise
 *   ([A-Za-z0-9_], no leading digit, "__" prefix refused).  Label values
 *   are unescaped (\\ \" \n, and \xHH for any byte: value names
 *   cannot hold spaces or control characters) and escaped again on
 *   output; a label value holding a NUL byte is refused.  Labels are
 *   sorted by name, so {a="1",b="2"} and {b="2",a="1"} are one series.
 * - Type: a string value "BASE#type" holding counter, gauge, histogram or
 *   untyped; without one, a BASE ending in "_total" is a counter and the
 *   rest are gauges.  A counter whose BASE lacks "_total" gets it appended
 *   (Prometheus' rule).  A histogram family BASE takes the values
 *   BASE_bucket{le="..."}, BASE_sum and BASE_count.
 * - Help: a string value "BASE#help"; else "shval value BASE".
 * - Per-process contributions: "@PID" values (one per process, e.g.
 *   written by Python's shval.metrics gauges) are summed into one sample,
 *   or combined per the string value "BASE#mode": sum (default), max, min,
 *   livesum (only processes alive now: kill(PID, 0)).  "@dead" holds what
 *   processes that went contributed (folded in by shval.metrics).
 * - Numbers: integer, float and bool ('?' as 0/1) scalars; arrays of those
 *   give one sample per element with a label index="I"; structs one sample
 *   per numeric field with field="NAME" (the index for unnamed fields),
 *   numeric array fields also index="I".  Strings, chars ('c', 'u'), lock
 *   entries and "#" metadata are not samples.  Every value that cannot be
 *   exported (a malformed name, a string, a clash of two values on one
 *   series) is named on a comment line "# shval: skipped ..." at the top.
 *
 * Each value is read whole with shval_read() (one consistent snapshot per
 * value; different values are not one snapshot).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ext.h"
#include "shval.h"
#include "type.h"

enum mtype { T_GAUGE, T_COUNTER, T_HISTOGRAM, T_UNTYPED };
static const char *const type_names[] = { "gauge", "counter", "histogram",
					  "untyped" };

enum mode { M_SUM, M_MAX, M_MIN, M_LIVESUM };
static const char *const mode_names[] = { "sum", "max", "min", "livesum" };

struct meta {
	char *base; /* sanitized */
	char *help;
	int type; /* -1: none */
	int mode; /* -1: none */
};

struct sample {
	char *family;
	char *name;   /* family, or family_bucket/_sum/_count */
	char *labels; /* rendered, sorted, without le; "" if none */
	char *le;     /* the le label's text for buckets, else NULL */
	double lev;   /* its number, for ordering */
	double v;
	int type;
	int mode;
	bool contrib; /* an @PID/@dead contribution */
	size_t seq;   /* order of reading: ties go to the first read */
	const char *help;
	bool help_owned;
};

struct render {
	struct meta *metas;
	size_t nmetas, capmetas;
	struct sample *s;
	size_t n, cap;
	char *skips; /* comment lines */
	size_t skiplen;
	FILE *skipf;
};

static char *xstrdup_(const char *s)
{
	char *p = strdup(s);
	if (!p) {
		fprintf(stderr, "shval: out of memory\n");
		exit(1);
	}
	return p;
}

static void *xrealloc_(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "shval: out of memory\n");
		exit(1);
	}
	return p;
}

static void skip(struct render *r, const char *seg, const char *name,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void skip(struct render *r, const char *seg, const char *name,
		 const char *fmt, ...)
{
	/* names are printable without spaces: safe on one comment line */
	fprintf(r->skipf, "# shval: skipped %s %s: ", seg, name);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(r->skipf, fmt, ap);
	va_end(ap);
	fputc('\n', r->skipf);
}

/* Metric or label name from n bytes of s: [A-Za-z0-9_], no leading
 * digit. */
static char *sanitize(const char *s, size_t n)
{
	char *o = xrealloc_(NULL, n + 2);
	size_t k = 0;
	if (n && s[0] >= '0' && s[0] <= '9')
		o[k++] = '_';
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_';
		o[k++] = ok ? c : '_';
	}
	o[k] = 0;
	return o;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && strcmp(s + a - b, suf) == 0;
}

/* ---- names ---------------------------------------------------------------- */

struct label {
	char *name, *value;
};

struct parsed {
	char *base;
	struct label *l;
	size_t nl;
	bool contrib;
	long pid; /* 0: @dead */
};

static void parsed_free(struct parsed *p)
{
	free(p->base);
	for (size_t i = 0; i < p->nl; i++) {
		free(p->l[i].name);
		free(p->l[i].value);
	}
	free(p->l);
	memset(p, 0, sizeof *p);
}

/* Parse a value name; NULL or a reason. */
static const char *parse_name(const char *name, struct parsed *p)
{
	memset(p, 0, sizeof *p);
	size_t n = strlen(name);
	/* the @PID / @dead suffix: after the last '}' */
	const char *at = strrchr(name, '@');
	const char *close = strrchr(name, '}');
	if (at && (!close || at > close)) {
		const char *t = at + 1;
		if (strcmp(t, "dead") == 0) {
			p->pid = 0;
		} else {
			char *end;
			errno = 0;
			long v = strtol(t, &end, 10);
			if (!*t || *end || errno || v <= 0 || t[0] == '+')
				return "the part after '@' is neither a pid "
				       "nor \"dead\"";
			p->pid = v;
		}
		p->contrib = true;
		n = (size_t)(at - name);
	}
	const char *brace = memchr(name, '{', n);
	size_t bn = brace ? (size_t)(brace - name) : n;
	if (bn == 0)
		return "empty metric name";
	p->base = sanitize(name, bn);
	if (!brace)
		return NULL;
	if (name[n - 1] != '}')
		return "labels do not end with '}'";
	const char *q = brace + 1, *end = name + n - 1;
	while (q < end) {
		const char *eq = memchr(q, '=', (size_t)(end - q));
		if (!eq || eq == q)
			return "a label without a name or '='";
		if (eq[1] != '"')
			return "a label value not in double quotes";
		char *val = xrealloc_(NULL, (size_t)(end - eq));
		size_t k = 0;
		const char *c = eq + 2;
		for (; c < end && *c != '"'; c++) {
			if (*c == '\\') {
				c++;
				if (c >= end) {
					free(val);
					return "a label value ends in '\\'";
				}
				if (*c == 'n')
					val[k++] = '\n';
				else if (*c == '\\' || *c == '"')
					val[k++] = *c;
				else if (*c == 'x' && end - c > 2 &&
					 isxdigit((unsigned char)c[1]) &&
					 isxdigit((unsigned char)c[2])) {
					char hx[3] = { c[1], c[2], 0 };
					val[k] = (char)strtol(hx, NULL, 16);
					if (!val[k++]) {
						free(val);
						return "a label value holding a "
						       "NUL byte (\\x00)";
					}
					c += 2;
				} else {
					free(val);
					return "a label value has an escape "
					       "other than \\\\ \\\" \\n \\xHH";
				}
			} else {
				val[k++] = *c;
			}
		}
		if (c >= end) {
			free(val);
			return "a label value without its closing '\"'";
		}
		val[k] = 0;
		p->l = xrealloc_(p->l, (p->nl + 1) * sizeof *p->l);
		p->l[p->nl].name = sanitize(q, (size_t)(eq - q));
		p->l[p->nl].value = val;
		p->nl++;
		if (strncmp(p->l[p->nl - 1].name, "__", 2) == 0)
			return "a label name starting with \"__\" (reserved)";
		c++; /* the closing quote */
		if (c < end && *c != ',')
			return "labels not separated by ','";
		q = c < end ? c + 1 : c;
	}
	return NULL;
}

static int label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->name,
		      ((const struct label *)b)->name);
}

/* Render labels (sorted) plus up to two extra ones, leaving out "le"
 * (returned in *le).  NULL + reason on a duplicate name. */
static char *render_labels(struct parsed *p, const char *x1, const char *v1,
			   const char *x2, const char *v2, char **le,
			   const char **why)
{
	size_t n = p->nl;
	struct label *all = xrealloc_(NULL, (n + 2) * sizeof *all);
	if (n) /* p->l may be NULL */
		memcpy(all, p->l, n * sizeof *all);
	if (x1)
		all[n++] = (struct label){ (char *)x1, (char *)v1 };
	if (x2)
		all[n++] = (struct label){ (char *)x2, (char *)v2 };
	qsort(all, n, sizeof *all, label_cmp);
	/* The text's size first (every byte escaped at worst): a plain
	 * buffer, not a memstream (whose calloc of BUFSIZ per sample was a
	 * quarter of a scrape's instructions). */
	size_t cap = 1;
	for (size_t i = 0; i < n; i++)
		cap += strlen(all[i].name) + 2 * strlen(all[i].value) + 4;
	char *buf = xrealloc_(NULL, cap), *o = buf;
	*le = NULL;
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		if (i && strcmp(all[i].name, all[i - 1].name) == 0) {
			*why = "two labels with one name (index and field "
			       "are added for arrays and structs)";
			free(buf);
			free(all);
			return NULL;
		}
		if (strcmp(all[i].name, "le") == 0) {
			*le = all[i].value;
			continue;
		}
		if (!first)
			*o++ = ',';
		size_t k = strlen(all[i].name);
		memcpy(o, all[i].name, k);
		o += k;
		*o++ = '=';
		*o++ = '"';
		for (const char *c = all[i].value; *c; c++) {
			if (*c == '\\' || *c == '"') {
				*o++ = '\\';
				*o++ = *c;
			} else if (*c == '\n') {
				*o++ = '\\';
				*o++ = 'n';
			} else {
				*o++ = *c;
			}
		}
		*o++ = '"';
		first = false;
	}
	*o = 0;
	free(all);
	return buf;
}

/* ---- metadata ------------------------------------------------------------- */

static struct meta *meta_get(struct render *r, const char *base, bool make)
{
	for (size_t i = 0; i < r->nmetas; i++)
		if (strcmp(r->metas[i].base, base) == 0)
			return &r->metas[i];
	if (!make)
		return NULL;
	if (r->nmetas == r->capmetas) {
		r->capmetas = r->capmetas ? 2 * r->capmetas : 16;
		r->metas = xrealloc_(r->metas, r->capmetas * sizeof *r->metas);
	}
	struct meta *m = &r->metas[r->nmetas++];
	*m = (struct meta){ xstrdup_(base), NULL, -1, -1 };
	return m;
}

static int lookup(const char *s, const char *const *tab, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(s, tab[i]) == 0)
			return i;
	return -1;
}

static bool is_meta_name(const char *name)
{
	const char *hash = strrchr(name, '#');
	return hash &&
	       (strcmp(hash, "#help") == 0 || strcmp(hash, "#type") == 0 ||
		strcmp(hash, "#mode") == 0);
}

/* A "BASE#help" / "#type" / "#mode" value: returns true if name is one
 * (consumed, possibly with a skip line). */
static bool take_meta(struct render *r, shval_seg *seg, const char *segname,
		      const struct shval_info *in)
{
	if (!is_meta_name(in->name))
		return false;
	const char *hash = strrchr(in->name, '#');
	const char *what = hash + 1;
	if (in->kind != SHVAL_KIND_STRING) {
		skip(r, segname, in->name, "metadata must be a string value");
		return true;
	}
	shval *v;
	int rc = shval_find(seg, in->name, NULL, &v);
	if (rc) {
		if (rc != SHVAL_ENOTFOUND) /* removed meanwhile: nothing */
			skip(r, segname, in->name, "%s", shval_strerror(rc));
		return true;
	}
	size_t cap = in->count + 1, len = 0;
	char *text = xrealloc_(NULL, cap);
	rc = shval_get_str(v, text, cap, &len);
	shval_close(v);
	if (rc) {
		skip(r, segname, in->name, "%s", shval_strerror(rc));
		free(text);
		return true;
	}
	text[len] = 0;
	if (memchr(text, 0, len)) {
		skip(r, segname, in->name, "metadata contains a NUL byte");
		free(text);
		return true;
	}
	char *base = sanitize(in->name, (size_t)(hash - in->name));
	struct meta *m = meta_get(r, base, true);
	free(base);
	if (what[0] == 'h') {
		free(m->help);
		m->help = text;
		return true;
	}
	int t = what[0] == 't' ? lookup(text, type_names, 4)
			       : lookup(text, mode_names, 4);
	if (t < 0)
		skip(r, segname, in->name, "unknown %s \"%s\" (%s)", what,
		     strspn(text, "abcdefghijklmnopqrstuvwxyz") == len ? text
								       : "?",
		     what[0] == 't' ? "counter, gauge, histogram, untyped"
				    : "sum, max, min, livesum");
	else if (what[0] == 't')
		m->type = t;
	else
		m->mode = t;
	free(text);
	return true;
}

/* ---- samples -------------------------------------------------------------- */

static void add_sample(struct render *r, const char *family, const char *name,
		       char *labels, char *le, double v, const struct meta *m,
		       int type, bool contrib, const char *base)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 64;
		r->s = xrealloc_(r->s, r->cap * sizeof *r->s);
	}
	struct sample *s = &r->s[r->n++];
	memset(s, 0, sizeof *s);
	s->family = xstrdup_(family);
	s->name = xstrdup_(name);
	s->labels = labels;
	s->le = le ? xstrdup_(le) : NULL;
	s->lev = 0;
	if (le) {
		if (strcmp(le, "+Inf") == 0)
			s->lev = INFINITY;
		else
			s->lev = strtod(le, NULL);
	}
	s->v = v;
	s->type = type;
	s->mode = m && m->mode >= 0 ? m->mode : M_SUM;
	s->contrib = contrib;
	s->seq = r->n - 1;
	if (m && m->help) {
		s->help = m->help;
	} else {
		char *h = NULL;
		if (asprintf(&h, "shval value %s", base) < 0) {
			fprintf(stderr, "shval: out of memory\n");
			exit(1);
		}
		s->help = h;
		s->help_owned = true;
	}
}

static bool number_at(const unsigned char *p, char code, double *out)
{
	const shval__letter *l = shval__letter_info(code);
	if (!l)
		return false;
	if (l->cls == SHVAL__L_FLOAT) {
		if (code == 'f') {
			float f;
			memcpy(&f, p, 4);
			*out = f;
		} else {
			memcpy(out, p, 8);
		}
		return true;
	}
	if (l->cls != SHVAL__L_INT && l->cls != SHVAL__L_BOOL)
		return false;
	uint64_t bits = shval__int_extend(l, shval__int_load(l, p));
	*out = l->min < 0 ? (double)(int64_t)bits : (double)bits;
	return true;
}

static bool alive(long pid)
{
	return pid == 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* One value: its samples. */
static void take_value(struct render *r, shval_seg *seg, const char *segname,
		       const struct shval_info *in)
{
	if (in->kind == SHVAL_KIND_LOCK)
		return; /* a lock entry: not a value */
	if (in->kind == SHVAL_KIND_STRING) {
		skip(r, segname, in->name, "a string is not a number");
		return;
	}
	struct parsed p;
	const char *why = parse_name(in->name, &p);
	if (why) {
		skip(r, segname, in->name, "%s", why);
		parsed_free(&p);
		return;
	}
	if (p.contrib && !alive(p.pid)) {
		struct meta *m = meta_get(r, p.base, false);
		if (m && m->mode == M_LIVESUM) {
			parsed_free(&p); /* a dead process: dropped */
			return;
		}
	}
	/* family and type */
	const struct meta *m = meta_get(r, p.base, false);
	char *family = xstrdup_(p.base);
	const char *sname = p.base;
	char *sname_owned = NULL;
	int type;
	if (m && m->type >= 0) {
		type = m->type;
	} else {
		static const char *const hs[] = { "_bucket", "_sum", "_count" };
		const struct meta *hm = NULL;
		for (int i = 0; i < 3 && !hm; i++) {
			if (!ends_with(p.base, hs[i]))
				continue;
			size_t bl = strlen(p.base) - strlen(hs[i]);
			char *b = strndup(p.base, bl);
			const struct meta *x = b ? meta_get(r, b, false) : NULL;
			if (x && x->type == T_HISTOGRAM) {
				hm = x;
				free(family);
				family = b;
			} else {
				free(b);
			}
		}
		if (hm) {
			m = hm;
			type = T_HISTOGRAM;
		} else {
			type = ends_with(p.base, "_total") ? T_COUNTER
							   : T_GAUGE;
		}
	}
	if (type == T_COUNTER && !ends_with(family, "_total")) {
		sname_owned = xrealloc_(NULL, strlen(family) + 8);
		sprintf(sname_owned, "%s_total", family);
		free(family);
		family = xstrdup_(sname_owned);
		sname = sname_owned;
	}
	if (type == T_HISTOGRAM && strcmp(family, p.base) == 0) {
		skip(r, segname, in->name,
		     "a histogram's values are %s_bucket{le=...}, %s_sum and "
		     "%s_count",
		     family, family, family);
		goto out;
	}
	bool bucket = type == T_HISTOGRAM && ends_with(p.base, "_bucket");

	/* the bytes, one consistent read */
	shval *v;
	int rc = shval_find(seg, in->name, NULL, &v);
	if (rc) {
		if (rc != SHVAL_ENOTFOUND)
			skip(r, segname, in->name, "%s", shval_strerror(rc));
		goto out;
	}
	unsigned char *buf = xrealloc_(NULL, in->size);
	rc = shval_read(v, buf, in->size);
	shval_close(v);
	if (rc) {
		skip(r, segname, in->name, "%s", shval_strerror(rc));
		free(buf);
		goto out;
	}
	shval__type *t = NULL;
	char terr[256];
	rc = shval__type_parse(in->type, &t, terr, sizeof terr);
	if (rc) {
		skip(r, segname, in->name, "%s", terr);
		free(buf);
		goto out;
	}
	size_t nsamples = 0;
	for (size_t fi = 0; fi < t->nfields; fi++) {
		const shval__field *f = &t->fields[fi];
		char fname[32];
		const char *fl = NULL;
		if (t->kind == SHVAL_KIND_STRUCT) {
			fl = f->name[0] ? f->name : fname;
			snprintf(fname, sizeof fname, "%zu", fi);
		}
		if (f->kind == SHVAL_KIND_STRING)
			continue;
		for (uint32_t e = 0; e < f->count; e++) {
			double x;
			if (!number_at(buf + f->offset + e * f->elem_size,
				       f->code, &x))
				break;
			char idx[32];
			snprintf(idx, sizeof idx, "%" PRIu32, e);
			bool arr = f->kind == SHVAL_KIND_ARRAY;
			char *le = NULL;
			char *labels = render_labels(
				&p, fl ? "field" : (arr ? "index" : NULL),
				fl ? fl : idx, fl && arr ? "index" : NULL, idx,
				&le, &why);
			if (!labels) {
				skip(r, segname, in->name, "%s", why);
				goto done;
			}
			if (bucket && !le) {
				skip(r, segname, in->name,
				     "a histogram bucket without an le label");
				free(labels);
				goto done;
			}
			if (!bucket && le) {
				skip(r, segname, in->name,
				     "an le label outside a histogram's "
				     "_bucket");
				free(labels);
				goto done;
			}
			add_sample(r, family, sname, labels, le, x, m, type,
				   p.contrib, family);
			nsamples++;
		}
	}
	if (!nsamples)
		skip(r, segname, in->name, "type %s has no numbers", in->type);
done:
	shval__type_free(t);
	free(buf);
out:
	free(sname_owned);
	free(family);
	parsed_free(&p);
}

static int sample_cmp(const void *a, const void *b)
{
	const struct sample *x = a, *y = b;
	int c = strcmp(x->family, y->family);
	if (c)
		return c;
	if ((c = strcmp(x->labels, y->labels)))
		return c;
	if ((c = strcmp(x->name, y->name)))
		return c;
	if (x->lev != y->lev)
		return x->lev < y->lev ? -1 : 1;
	if (x->le && y->le && (c = strcmp(x->le, y->le)))
		return c;
	/* plain values before contributions, for the clash check */
	if (x->contrib != y->contrib)
		return (int)x->contrib - (int)y->contrib;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static void fmt_num(FILE *f, double v)
{
	if (isnan(v)) {
		fputs("NaN", f);
	} else if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
	} else if (v == (double)(int64_t)v && fabs(v) < 1e15) {
		/* whole numbers (counts): what "%.15g" prints, without
		 * printf's machinery (most samples of a scrape) */
		char b[24], *o = b + sizeof b;
		uint64_t u = v < 0 ? (uint64_t) - (int64_t)v : (uint64_t)v;
		*--o = 0;
		do
			*--o = (char)('0' + u % 10);
		while (u /= 10);
		if (v < 0)
			*--o = '-';
		fputs(o, f);
	} else {
		char b[40];
		snprintf(b, sizeof b, "%.15g", v);
		if (strtod(b, NULL) != v)
			snprintf(b, sizeof b, "%.17g", v);
		fputs(b, f);
	}
}

static void help_escaped(FILE *f, const char *h)
{
	for (; *h; h++) {
		if (*h == '\\')
			fputs("\\\\", f);
		else if (*h == '\n')
			fputs("\\n", f);
		else
			fputc(*h, f);
	}
}

static bool same_series(const struct sample *a, const struct sample *b)
{
	return strcmp(a->name, b->name) == 0 &&
	       strcmp(a->labels, b->labels) == 0 &&
	       ((!a->le && !b->le) || (a->le && b->le && a->lev == b->lev));
}

int shval_metrics_render(shval_seg *const *segs, int nseg, char **out,
			 size_t *len, char *err, size_t errcap)
{
	struct render r;
	memset(&r, 0, sizeof r);
	r.skipf = open_memstream(&r.skips, &r.skiplen);
	if (!r.skipf) {
		snprintf(err, errcap, "out of memory");
		return -ENOMEM;
	}
	int rc = 0;
	/* two passes: metadata first (it may come after the values in
	 * directory order), then the values */
	for (int pass = 0; pass < 2 && !rc; pass++) {
		for (int i = 0; i < nseg && !rc; i++) {
			const char *sn = shval_seg_name(segs[i]);
			uint64_t cur = 0;
			struct shval_info in;
			for (;;) {
				rc = shval_seg_next(segs[i], &cur, NULL, &in);
				if (rc == SHVAL_ENOTFOUND) {
					rc = 0;
					break;
				}
				if (rc) {
					snprintf(err, errcap,
						 "%s: listing values: %s", sn,
						 shval_strerror(rc));
					break;
				}
				if (pass == 0)
					take_meta(&r, segs[i], sn, &in);
				else if (!is_meta_name(in.name))
					take_value(&r, segs[i], sn, &in);
			}
		}
	}
	fclose(r.skipf);
	char *buf = NULL;
	size_t blen = 0;
	FILE *f = NULL;
	if (!rc)
		f = open_memstream(&buf, &blen);
	if (!rc && !f) {
		snprintf(err, errcap, "out of memory");
		rc = -ENOMEM;
	}
	if (!rc) {
		if (r.n) /* r.s may be NULL */
			qsort(r.s, r.n, sizeof *r.s, sample_cmp);
		/* combine contributions; clashes are skipped */
		size_t k = 0;
		for (size_t i = 0; i < r.n; i++) {
			struct sample *s = &r.s[i];
			struct sample *prev = k ? &r.s[k - 1] : NULL;
			if (prev && same_series(prev, s) && prev->contrib &&
			    s->contrib) {
				double a = prev->v, b = s->v;
				switch (prev->mode) {
				case M_MAX:
					prev->v = a > b ? a : b;
					break;
				case M_MIN:
					prev->v = a < b ? a : b;
					break;
				default:
					prev->v = a + b;
				}
			} else if (prev && same_series(prev, s)) {
				fprintf(f,
					"# shval: skipped a second value for "
					"%s{%s%s%s%s}\n",
					s->name, s->labels,
					s->le ? (s->labels[0] ? "," : "") : "",
					s->le ? "le=" : "", s->le ? s->le : "");
			} else {
				r.s[k++] = *s;
				continue;
			}
			free(s->family);
			free(s->name);
			free(s->labels);
			free(s->le);
			if (s->help_owned)
				free((char *)s->help);
		}
		r.n = k;
		fwrite(r.skips, 1, r.skiplen, f);
		for (size_t i = 0; i < r.n; i++) {
			struct sample *s = &r.s[i];
			if (!i || strcmp(s->family, r.s[i - 1].family)) {
				fprintf(f, "# HELP %s ", s->family);
				help_escaped(f, s->help);
				fprintf(f, "\n# TYPE %s %s\n", s->family,
					type_names[s->type]);
			}
			fputs(s->name, f);
			if (s->labels[0] || s->le) {
				fprintf(f, "{%s", s->labels);
				if (s->le) {
					fprintf(f, "%sle=\"",
						s->labels[0] ? "," : "");
					fmt_num(f, s->lev);
					fputc('"', f);
				}
				fputc('}', f);
			}
			fputc(' ', f);
			fmt_num(f, s->v);
			fputc('\n', f);
		}
		fclose(f);
		*out = buf;
		*len = blen;
	}
	for (size_t i = 0; i < r.n; i++) {
		free(r.s[i].family);
		free(r.s[i].name);
		free(r.s[i].labels);
		free(r.s[i].le);
		if (r.s[i].help_owned)
			free((char *)r.s[i].help);
	}
	free(r.s);
	for (size_t i = 0; i < r.nmetas; i++) {
		free(r.metas[i].base);
		free(r.metas[i].help);
	}
	free(r.metas);
	free(r.skips);
	return rc;
}

/* ---- shval export ----------------------------------------------------- */

/* Open the segments named in argv (read-only); returns 0 or 1 after a
 * message. */
int shval_metrics_open(const char *cmd, int n, char **names, shval_seg **segs);
int shval_metrics_open(const char *cmd, int n, char **names, shval_seg **segs)
{
	for (int i = 0; i < n; i++) {
		int rc = shval_seg_open(names[i], SHVAL_RDONLY, NULL, &segs[i]);
		if (rc) {
			const char *d = shval_errmsg(NULL);
			fprintf(stderr, "shval: %s %s: %s%s%s%s\n", cmd,
				names[i], shval_strerror(rc), d[0] ? " (" : "",
				d, d[0] ? ")" : "");
			while (i--)
				shval_seg_close(segs[i]);
			return 1;
		}
	}
	return 0;
}

int shval_cmd_export(int argc, char **argv)
{
	int nseg = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return shval_ext_help("export");
		if (argv[i][0] == '-' && argv[i][1] == '-')
			return shval_ext_usage("export", "unknown option '%s'",
					       argv[i]);
		argv[nseg++] = argv[i];
	}
	if (nseg == 0)
		return shval_ext_usage("export", "missing SEG");
	shval_seg **segs = calloc((size_t)nseg, sizeof *segs);
	if (!segs)
		return 1;
	if (shval_metrics_open("export", nseg, argv, segs)) {
		free(segs);
		return 1;
	}
	char *out = NULL, err[512] = "";
	size_t len = 0;
	int rc = shval_metrics_render(segs, nseg, &out, &len, err, sizeof err);
	for (int i = 0; i < nseg; i++)
		shval_seg_close(segs[i]);
	free(segs);
	if (rc) {
		fprintf(stderr, "shval: export: %s\n", err);
		return 1;
	}
	fwrite(out, 1, len, stdout);
	free(out);
	return 0;
}
