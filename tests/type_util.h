/*
 * tests/type_util.h — helpers of the type and text tests (test_type, test_text):
 * parsing types that must be valid or must be refused, formatting and
 * parsing values, a tiny strict JSON validator.
 */
#ifndef SHVAL_TEST_TYPE_UTIL_H
#define SHVAL_TEST_TYPE_UTIL_H

/* Not every test file uses every helper. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-variable"

/* ---- helpers ------------------------------------------------------------ */

static char errbuf[512];

/* Parse a type that must be valid. */
static shval__type *tp(const char *s)
{
	shval__type *t = NULL;
	int rc = shval__type_parse(s, &t, errbuf, sizeof errbuf);
	if (rc != 0 || !t)
		FAIL("type \"%s\" rejected: %d %s", s, rc, errbuf);
	return t;
}

/* A type string must be rejected with SHVAL_EBADTYPE and a message
 * containing want (if not NULL). */
static void reject(const char *s, const char *want)
{
	shval__type *t = (shval__type *)1;
	errbuf[0] = 0;
	int rc = shval__type_parse(s, &t, errbuf, sizeof errbuf);
	if (rc != SHVAL_EBADTYPE)
		FAIL("type \"%s\": expected SHVAL_EBADTYPE, got %d (%s)", s, rc,
		     t && t != (shval__type *)1 ? t->canon : "?");
	ASSERT(t == NULL);
	if (want && !strstr(errbuf, want))
		FAIL("type \"%s\": message \"%s\" lacks \"%s\"", s, errbuf,
		     want);
	if (strchr(errbuf, '\n'))
		FAIL("type \"%s\": message has a newline", s);
	ASSERT(strncmp(errbuf, "bad type \"", 10) == 0);
}

static void canon_is(const char *s, const char *want)
{
	shval__type *t = tp(s);
	ASSERT_STREQ(t->canon, want);
	/* the canonical form is a fixed point */
	shval__type *t2 = tp(t->canon);
	ASSERT_STREQ(t2->canon, want);
	ASSERT_UEQ(t2->size, t->size);
	shval__type_free(t2);
	shval__type_free(t);
}

/* Text of data (t->size bytes) as a malloc'd string; *len its length. */
static char *fmt(const shval__type *t, const void *data, unsigned flags,
                 size_t *len)
{
	shval__buf b;
	shval__buf_init(&b);
	ASSERT_OK(shval__text_format(t, data, flags, &b));
	ASSERT(b.p != NULL);
	ASSERT_EQ(b.p[b.len], 0);
	if (len)
		*len = b.len;
	return b.p;
}

static void fmt_is(const shval__type *t, const void *data, unsigned flags,
                   const char *want)
{
	char *s = fmt(t, data, flags, NULL);
	ASSERT_STREQ(s, want);
	free(s);
}

/* Parse one argument into a buffer for a non-struct type. */
static int parse1(const shval__type *t, void *data, const char *arg)
{
	const char *argv[1] = { arg };
	errbuf[0] = 0;
	return shval__text_parse(t, data, 1, argv, errbuf, sizeof errbuf);
}

/* ---- a tiny strict JSON validator (RFC 8259 + valid UTF-8) -------------- */

struct jp { const unsigned char *s; size_t i, n; int depth; };

static void jws(struct jp *p)
{
	while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' ||
	                       p->s[p->i] == '\n' || p->s[p->i] == '\r'))
		p->i++;
}

static int jvalue(struct jp *p);

static int jstring(struct jp *p)
{
	if (p->i >= p->n || p->s[p->i] != '"')
		return 0;
	p->i++;
	while (p->i < p->n) {
		unsigned char c = p->s[p->i];
		if (c == '"') {
			p->i++;
			return 1;
		}
		if (c < 0x20)
			return 0;
		if (c == '\\') {
			p->i++;
			if (p->i >= p->n)
				return 0;
			c = p->s[p->i];
			if (c == 'u') {
				for (int k = 1; k <= 4; k++)
					if (p->i + k >= p->n ||
					    !strchr("0123456789abcdefABCDEF",
					            p->s[p->i + k]) ||
					    !p->s[p->i + k])
						return 0;
				p->i += 5;
			} else if (strchr("\"\\/bfnrt", c) && c) {
				p->i++;
			} else {
				return 0;
			}
			continue;
		}
		if (c < 0x80) {
			p->i++;
			continue;
		}
		/* strict UTF-8 */
		int len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3
		        : c >= 0xc2 && c <= 0xdf ? 2 : 0;
		if (c >= 0xf5 || len == 0 || p->i + (size_t)len > p->n)
			return 0;
		uint32_t cp = c & (0xff >> (len + 1));
		for (int k = 1; k < len; k++) {
			if ((p->s[p->i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p->s[p->i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p->i += (size_t)len;
	}
	return 0;
}

static int jdigits(struct jp *p)
{
	size_t st = p->i;
	while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
		p->i++;
	return p->i > st;
}

static int jnumber(struct jp *p)
{
	if (p->i < p->n && p->s[p->i] == '-')
		p->i++;
	if (p->i < p->n && p->s[p->i] == '0')
		p->i++;
	else if (!jdigits(p))
		return 0;
	if (p->i < p->n && p->s[p->i] == '.') {
		p->i++;
		if (!jdigits(p))
			return 0;
	}
	if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
		p->i++;
		if (p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
			p->i++;
		if (!jdigits(p))
			return 0;
	}
	return 1;
}

static int jlit(struct jp *p, const char *w)
{
	size_t l = strlen(w);
	if (p->n - p->i < l || memcmp(p->s + p->i, w, l))
		return 0;
	p->i += l;
	return 1;
}

static int jvalue(struct jp *p)
{
	if (++p->depth > 64)
		return 0;
	jws(p);
	if (p->i >= p->n)
		return 0;
	unsigned char c = p->s[p->i];
	int ok;
	if (c == '{' || c == '[') {
		unsigned char close = c == '{' ? '}' : ']';
		p->i++;
		jws(p);
		if (p->i < p->n && p->s[p->i] == close) {
			p->i++;
			ok = 1;
		} else {
			for (;;) {
				if (c == '{') {
					jws(p);
					if (!jstring(p))
						return 0;
					jws(p);
					if (p->i >= p->n || p->s[p->i] != ':')
						return 0;
					p->i++;
				}
				if (!jvalue(p))
					return 0;
				jws(p);
				if (p->i < p->n && p->s[p->i] == ',') {
					p->i++;
					continue;
				}
				if (p->i < p->n && p->s[p->i] == close) {
					p->i++;
					break;
				}
				return 0;
			}
			ok = 1;
		}
	} else if (c == '"') {
		ok = jstring(p);
	} else if (c == 't') {
		ok = jlit(p, "true");
	} else if (c == 'f') {
		ok = jlit(p, "false");
	} else if (c == 'n') {
		ok = jlit(p, "null");
	} else {
		ok = jnumber(p);
	}
	p->depth--;
	return ok;
}

static int json_valid(const char *s, size_t n)
{
	struct jp p = { (const unsigned char *)s, 0, n, 0 };
	if (!jvalue(&p))
		return 0;
	jws(&p);
	return p.i == n;
}

static void assert_json(const shval__type *t, const void *data)
{
	size_t n;
	char *s = fmt(t, data, SHVAL_TEXT_JSON, &n);
	if (!json_valid(s, n))
		FAIL("invalid JSON for type %s: %s", t->canon, s);
	free(s);
}

#pragma GCC diagnostic pop

#endif
