/*
 * cli/shval.c — the shval(1) command: list, inspect, change and watch
 * shval segments from the shell.
 *
 * Uses the public API (include/shval.h), and the library's type letters
 * and text forms (src/type.h) to print the result of `add` exactly as
 * `get` prints a value.  One command per function,
 * listed in the command table `cmds` below, which also drives option
 * parsing and the help texts.  The manual is docs/shval.1.
 *
 * Exit status: 0 success, 1 runtime error, 2 usage error, 3 timeout
 * (wait, watch).  Runtime errors print one line on stderr:
 *     shval: COMMAND SEGMENT [VALUE]: what went wrong (library detail)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ext.h" /* export, serve, top: cli/ext.c */
#include "shval.h"
#include "type.h" /* letters and text forms: linked statically */

enum { EX_OK = 0, EX_RUNTIME = 1, EX_USAGE = 2, EX_TIMEOUT = 3 };

#define SHM_DIR "/dev/shm"

/* ---- options ----------------------------------------------------------- */

enum opt_id {
	O_JSON,
	O_SIZE,
	O_MAX,
	O_MODE,
	O_TEMP,
	O_RAW,
	O_LOCK,
	O_RLOCK,
	O_ATOMIC,
	O_TIMEOUT,
	O_COUNT,
	O_REPAIR,
	O_FORCE,
	O_HELP,
	O_N
};

static const struct {
	const char *name;
	bool has_arg;
} opt_tab[O_N] = {
	[O_JSON] = { "json", false },     [O_SIZE] = { "size", true },
	[O_MAX] = { "max", true },        [O_MODE] = { "mode", true },
	[O_TEMP] = { "temp", false },     [O_RAW] = { "raw", false },
	[O_LOCK] = { "lock", false },     [O_RLOCK] = { "rlock", false },
	[O_ATOMIC] = { "atomic", false }, [O_TIMEOUT] = { "timeout", true },
	[O_COUNT] = { "count", true },    [O_REPAIR] = { "repair", false },
	[O_FORCE] = { "force", false },   [O_HELP] = { "help", false },
};

#define OPT(x) (1u << (x))

struct cmd;

/* A parsed command line. */
struct args {
	const struct cmd *cmd;
	const char *opt[O_N]; /* argument, "" for a flag; NULL if not given */
	char **pos;           /* positional arguments */
	int npos;
};

static bool has(const struct args *a, enum opt_id o)
{
	return a->opt[o] != NULL;
}

/* ---- the command table ------------------------------------------------- */

static int cmd_ls(struct args *a);
static int cmd_new(struct args *a);
static int cmd_info(struct args *a);
static int cmd_show(struct args *a);
static int cmd_create(struct args *a);
static int cmd_get(struct args *a);
static int cmd_set(struct args *a);
static int cmd_add(struct args *a);
static int cmd_rm(struct args *a);
static int cmd_unlink(struct args *a);
static int cmd_wait(struct args *a);
static int cmd_watch(struct args *a);
static int cmd_check(struct args *a);
static int cmd_help(struct args *a);
static int cmd_version(struct args *a);

struct cmd {
	const char *name;
	int (*run)(struct args *);
	int min_pos, max_pos; /* max_pos < 0: unlimited */
	unsigned opts;        /* OPT() bits accepted (--help always is) */
	const char *synopsis; /* after "shval NAME " */
	const char *summary;  /* one line for the usage table */
	const char *details;  /* for "shval NAME --help" */
};

static const struct cmd cmds[] = {
	{ "ls", cmd_ls, 0, -1, OPT(O_JSON), "[SEG...] [--json]",
	  "list the segments in " SHM_DIR " (or SEGs)",
	  "Lists the shval segments in " SHM_DIR ", or the segments SEG given\n"
	  "(any kind, e.g. redis://host:port/prefix): name, used and maximum\n"
	  "size, values, attached processes (alive and dead, not counting this\n"
	  "command), creator pid and age.  Files that are not shval segments\n"
	  "are skipped.  Segments are opened read-only, without attaching,\n"
	  "except temporary segments whose processes all died: ls opens those\n"
	  "normally, which makes the library remove them (ls cleans them up).\n"
	  "  --json   one JSON document {\"segments\": [...], \"errors\": [...]}\n" },
	{ "new", cmd_new, 1, 1,
	  OPT(O_SIZE) | OPT(O_MAX) | OPT(O_MODE) | OPT(O_TEMP),
	  "SEG [--size N] [--max N] [--mode 0640] [--temp]",
	  "create a segment (error if it exists)",
	  "Creates the segment SEG (\"/name\" in " SHM_DIR
	  ", or \"file:PATH\").\n"
	  "  --size N     initial size in bytes (suffixes k, m, g; default 64k)\n"
	  "  --max N      maximum size (suffixes k, m, g; default 1g)\n"
	  "  --mode MODE  octal permission bits (default 0600)\n"
	  "  --temp       temporary: removed when its last attached process\n"
	  "               goes.  shval new itself detaches on exit, so the\n"
	  "               segment is removed at once unless another process\n"
	  "               attached meanwhile.\n" },
	{ "info", cmd_info, 1, 1, OPT(O_JSON), "SEG [--json]",
	  "show the segment header",
	  "Shows format version, sizes, counts, segment version, creator,\n"
	  "permissions and the attached processes (not counting this command).\n"
	  "  --json   one JSON document\n" },
	{ "show", cmd_show, 1, 2, OPT(O_JSON), "SEG [PREFIX] [--json]",
	  "one row per value: name, type, mode, version, value",
	  "Lists the values of SEG (those whose name starts with PREFIX).\n"
	  "Control characters in values are shown as C escapes so that each\n"
	  "value stays on one row; use get or --json for the exact bytes.\n"
	  "  --json   one JSON document {\"segment\": ..., \"values\": [...]}\n" },
	{ "create", cmd_create, 3, -1,
	  OPT(O_RAW) | OPT(O_LOCK) | OPT(O_RLOCK) | OPT(O_ATOMIC),
	  "SEG NAME TYPE [--raw|--lock|--rlock|--atomic] [VALUE...]",
	  "create a value, optionally setting it",
	  "Creates value NAME of type TYPE (e.g. q, d, 64s, 10i, \"x:d y:d\")\n"
	  "in SEG, which must exist, with the VALUE arguments (parsed as by\n"
	  "set) as its contents, or zeros.  Invalid VALUEs create nothing.\n"
	  "  --rlock   robust recursive lock (default)\n"
	  "  --lock    robust non-recursive lock\n"
	  "  --raw     no synchronisation\n"
	  "  --atomic  lock-free scalar\n" },
	{ "get", cmd_get, 2, 2, OPT(O_JSON), "SEG NAME [--json]",
	  "print a value as text",
	  "Prints the value: integers exact, floats in shortest round-trip\n"
	  "form, strings as their bytes, arrays space-separated, structs as\n"
	  "field=value pairs.\n"
	  "  --json   the value as a JSON document (strings escaped exactly)\n" },
	{ "set", cmd_set, 3, -1, 0, "SEG NAME VALUE...",
	  "set a value from text",
	  "Parses VALUE by the value's type: one argument for a scalar or\n"
	  "string, one per element for an array, field=value arguments for a\n"
	  "struct (fields not given keep their values).  Nothing is written\n"
	  "unless all arguments parse.\n" },
	{ "add", cmd_add, 3, 3, 0, "SEG NAME DELTA",
	  "add to a number atomically; print the new value",
	  "Adds DELTA (an integer, or a real number for f and d values) with\n"
	  "one atomic operation (atomic values) or under the value's lock, and\n"
	  "prints the result.  Integers wrap modulo the type's width.\n" },
	{ "rm", cmd_rm, 2, 2, 0, "SEG NAME", "remove a value",
	  "Removes value NAME from SEG.\n" },
	{ "unlink", cmd_unlink, 1, 1, OPT(O_FORCE), "SEG [--force]",
	  "remove a segment's name",
	  "Removes the segment's name; processes that have it open keep it.\n"
	  "Only a shval segment is removed: another file of that name is\n"
	  "refused and left alone.\n"
	  "  --force  remove the name whatever it is\n" },
	{ "wait", cmd_wait, 2, 2, OPT(O_TIMEOUT) | OPT(O_JSON),
	  "SEG NAME [--timeout SEC] [--json]",
	  "wait until a value changes; print it",
	  "Sleeps (no polling) until the value's version changes, then prints\n"
	  "the new value.  Exit status 3 on timeout.\n"
	  "  --timeout SEC  give up after SEC seconds (fractions allowed)\n"
	  "  --json         print the value as JSON\n" },
	{ "watch", cmd_watch, 1, -1,
	  OPT(O_COUNT) | OPT(O_TIMEOUT) | OPT(O_JSON),
	  "SEG [NAME...] [--count N] [--timeout SEC] [--json]",
	  "print name=value lines as values change",
	  "Sleeps on the segment's version (no polling) and prints a line\n"
	  "name=value for each value (all, or the NAMEs) whose text changed,\n"
	  "including values created meanwhile.  Control characters are shown\n"
	  "as C escapes.\n"
	  "  --count N      exit after N lines\n"
	  "  --timeout SEC  exit with status 3 after SEC seconds unless --count\n"
	  "                 lines were printed by then\n"
	  "  --json         one JSON object per line:\n"
	  "                 {\"name\": ..., \"version\": N, \"value\": ...}\n" },
	{ "check", cmd_check, 1, 1, OPT(O_REPAIR) | OPT(O_JSON),
	  "SEG [--repair] [--json]",
	  "verify a segment; with --repair, recover what can be",
	  "Opens SEG (which validates its header), reads every value and\n"
	  "reports damaged entries, values left partly written by a dead\n"
	  "writer and processes that died attached.  --repair also probes each\n"
	  "lock: a lock held by a dead process is recovered (the value rolls\n"
	  "back to its last committed state) and reported; partly written\n"
	  "values are rewritten whole.  Exit status 1 if problems remain.\n"
	  "  --repair  recover dead locks and partial values, free the attach\n"
	  "            slots of dead processes\n"
	  "  --json    one JSON document\n" },
	{ "help", cmd_help, 0, 1, 0, "[COMMAND]", "show help",
	  "Shows the list of commands, or the help of COMMAND.\n" },
	{ "version", cmd_version, 0, 0, 0, "", "print the library version",
	  "Prints the version of libshval this command was built with.\n" },
};

#define NCMDS (sizeof cmds / sizeof cmds[0])

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strcmp(cmds[i].name, name) == 0)
			return &cmds[i];
	return NULL;
}

static void usage_table(FILE *f)
{
	fprintf(f, "usage: shval COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < NCMDS; i++) {
		char left[128];
		snprintf(left, sizeof left, "%s %s", cmds[i].name,
			 cmds[i].synopsis);
		if (strlen(left) > 34)
			fprintf(f, "  %s\n  %-34s %s\n", left, "",
				cmds[i].summary);
		else
			fprintf(f, "  %-34s %s\n", left, cmds[i].summary);
	}
	for (size_t i = 0; i < shval_ext_ncmds; i++) {
		char left[128];
		snprintf(left, sizeof left, "%s %s", shval_ext_cmds[i].name,
			 shval_ext_cmds[i].synopsis);
		fprintf(f, "  %-34s %s\n", left, shval_ext_cmds[i].summary);
	}
	fprintf(f, "\nSEG is \"/name\" (in " SHM_DIR "), \"file:PATH\" or\n"
		   "\"redis://[user:password@]host:port/prefix\" (also\n"
		   "\"redis+unix:///path/to/socket?prefix=P\").  Exit "
		   "status: 0 ok, 1 error, 2 usage, 3 timeout.\n"
		   "Run 'shval COMMAND --help' for a command's options, 'man "
		   "shval' for the manual.\n");
}

static void cmd_usage(const struct cmd *c, FILE *f)
{
	fprintf(f, "usage: shval %s %s\n", c->name, c->synopsis);
}

static void put_safe(FILE *f, const char *s);

/* A usage error: message, synopsis, exit status 2. */
static int usage_error(const struct cmd *c, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "shval%s%s: ", c ? " " : "", c ? c->name : "");
	char *msg = NULL;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n >= 0) {
		put_safe(stderr, msg); /* arguments may hold anything */
		free(msg);
	}
	fputc('\n', stderr);
	if (c) {
		cmd_usage(c, stderr);
		fprintf(stderr, "Try 'shval %s --help'.\n", c->name);
	} else {
		fprintf(stderr, "Try 'shval help'.\n");
	}
	return EX_USAGE;
}

/* ---- errors ------------------------------------------------------------ */

/* "no such value" from "SHVAL_ENOTFOUND: no such value". */
static const char *errtext(int code)
{
	const char *s = shval_strerror(code);
	const char *p = strstr(s, ": ");
	return p ? p + 2 : s;
}

/* A segment name for a message: a Redis URL's password replaced by "***"
 * (the library never shows it either: include/shval.h). */
static void put_seg_name(FILE *f, const char *seg)
{
	const char *auth = NULL, *at = NULL;
	if (strncmp(seg, "redis://", 8) == 0) {
		auth = seg + 8;
		size_t n = strcspn(auth, "/?");
		for (const char *p = auth; p < auth + n; p++)
			if (*p == '@')
				at = p;
	}
	const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
	if (!colon) {
		put_safe(f, seg);
		return;
	}
	char *copy = strdup(seg);
	if (!copy) {
		fputs("redis://(name not shown)", f);
		return;
	}
	snprintf(copy + (colon + 1 - seg),
		 strlen(seg) + 1 - (size_t)(colon + 1 - seg), "***%s", at);
	put_safe(f, copy);
	free(copy);
}

/* Print "shval: CMD SEG [VALUE]: text (detail)" and return 1.  detail may
 * be NULL or "". */
static int fail_detail(const struct args *a, const char *seg, const char *value,
		       const char *text, const char *detail)
{
	/* names, paths and the library's message (which quotes them) go
	 * through put_safe: no terminal control sequence gets through */
	fprintf(stderr, "shval: %s", a->cmd->name);
	if (seg) {
		fputc(' ', stderr);
		put_seg_name(stderr, seg);
	}
	if (value) {
		fputc(' ', stderr);
		put_safe(stderr, value);
	}
	fputs(": ", stderr);
	put_safe(stderr, text);
	if (detail && detail[0] && strcmp(detail, text) != 0) {
		fputs(" (", stderr);
		put_safe(stderr, detail);
		fputc(')', stderr);
	}
	fputc('\n', stderr);
	return EX_RUNTIME;
}

/* A failed library call on seg (NULL: a failed shval_seg_open). */
static int fail(const struct args *a, const char *value, int code,
		const shval_seg *seg)
{
	return fail_detail(a, a->npos ? a->pos[0] : NULL, value, errtext(code),
			   shval_errmsg(seg));
}

/* ---- small helpers ----------------------------------------------------- */

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "shval: out of memory\n");
		exit(EX_RUNTIME);
	}
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p) {
		fprintf(stderr, "shval: out of memory\n");
		exit(EX_RUNTIME);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

/* The value as text (flags: 0 or SHVAL_TEXT_JSON), of any length: *out is
 * malloc'ed and NUL-terminated, *len its length (NULs may be inside). */
static int value_text(shval *v, unsigned flags, char **out, size_t *len)
{
	size_t n = 0;
	*out = NULL;
	int r = shval_to_text(v, flags, NULL, 0, &n);
	while (r == SHVAL_ETOOBIG) { /* a string may grow between calls */
		char *buf = xmalloc(n + 1);
		r = shval_to_text(v, flags, buf, n + 1, &n);
		if (r == 0) {
			*out = buf;
			*len = n;
			return 0;
		}
		free(buf);
	}
	return r;
}

static size_t utf8_len(const unsigned char *s);
static size_t utf8_len_n(const unsigned char *s, size_t n);

/* get and wait print a string value as its raw bytes, which set takes
 * back as they are, except when the bytes could not come back through an
 * argument (a NUL) or would read as the quoted form (a leading quote):
 * then they print in the quoted form of a struct's string field, "..."
 * with C escapes, which set parses (src/text.c).  So `set` parses what
 * `get` prints, for every type. */
static bool needs_quotes(shval *v, const char *text, size_t len)
{
	struct shval_info in;
	return len > 0 && shval_info(v, &in) == 0 &&
	       in.kind == SHVAL_KIND_STRING &&
	       (text[0] == '"' || memchr(text, 0, len));
}

static void put_quoted(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t k;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c >= 0x20 && c < 0x7f)
			fputc(c, f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == 0 &&
			 !(i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9'))
			fputs("\\0", f);
		else if (c >= 0x80 && i + 1 < n &&
			 (k = utf8_len((const unsigned char *)s + i)) > 0 &&
			 i + k <= n) {
			fwrite(s + i, 1, k, f);
			i += k;
			continue;
		} else
			fprintf(f, "\\x%02x", c);
		i++;
	}
	fputc('"', f);
}

/* A value's plain or JSON text as get prints it (no newline). */
static void put_value(FILE *f, shval *v, const char *text, size_t len,
		      bool json)
{
	if (!json && needs_quotes(v, text, len))
		put_quoted(f, text, len);
	else
		fwrite(text, 1, len, f);
}

/* Set v from text arguments as set does: a string value given in the
 * quoted form ("..." with C escapes, as get prints some) is unquoted;
 * everything else is the library's text form.  err: the reason, for
 * failures found here (else the library's message applies). */
static int text_set(shval *v, int argc, char **argv, char *err, size_t cap)
{
	struct shval_info in;
	err[0] = 0;
	if (argc == 1 && argv[0][0] == '"' && shval_info(v, &in) == 0 &&
	    in.kind == SHVAL_KIND_STRING) {
		size_t n = strlen(argv[0]), len;
		unsigned char *b = xmalloc(n);
		int r = shval__text_unquote(argv[0], b, &len, err, cap);
		if (r == 0)
			r = shval_set_str(v, (const char *)b, len);
		free(b);
		return r;
	}
	return shval_from_text(v, argc, (const char *const *)argv);
}

/* Write bytes with control characters as C escapes (one-line display).
 * Nothing that a terminal takes as a control reaches it: C0 controls and
 * DEL, C1 controls (U+0080..U+009F: CSI, OSC...) and bytes that are not
 * well-formed UTF-8 (a lone 0x9b is CSI to an 8-bit terminal) print as
 * \xHH; well-formed UTF-8 as is. */
static void put_display(FILE *f, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		size_t k;
		switch (c) {
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\0':
			fputs("\\0", f);
			break;
		default:
			if (c < 0x20 || c == 0x7f) {
				fprintf(f, "\\x%02x", c);
			} else if (c < 0x80) {
				fputc(c, f);
			} else if ((k = utf8_len_n((const unsigned char *)s + i,
						   n - i)) > 0 &&
				   !(c == 0xc2 &&
				     (unsigned char)s[i + 1] < 0xa0)) {
				fwrite(s + i, 1, k, f);
				i += k - 1;
			} else {
				fprintf(f, "\\x%02x", c);
			}
		}
	}
}

/* put_display for the commands in other files (cli/ext.h). */
void shval_cli_display(FILE *f, const char *s, size_t n)
{
	put_display(f, s, n);
}

/* A NUL-terminated string for a terminal (put_display). */
static void put_safe(FILE *f, const char *s)
{
	put_display(f, s, strlen(s));
}

/* The escaped form of s (put_display), malloc'ed. */
static char *safe_dup(const char *s)
{
	char *out = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&out, &len);
	if (!m) {
		fprintf(stderr, "shval: out of memory\n");
		exit(EX_RUNTIME);
	}
	put_safe(m, s);
	fclose(m);
	return out;
}

/* Length of the well-formed UTF-8 character at s (up to its NUL), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned c = s[0];
	size_t len;
	uint32_t cp, min;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* utf8_len for a buffer of n bytes that need not end with a NUL. */
static size_t utf8_len_n(const unsigned char *s, size_t n)
{
	unsigned char b[4] = { 0 };
	memcpy(b, s, n < 4 ? n : 4);
	size_t k = utf8_len(b[0] ? b : (const unsigned char *)"");
	return k <= n ? k : 0;
}

/* A JSON string literal.  Valid UTF-8 as is; each byte of invalid UTF-8
 * as \u00XX, as the library's JSON text does (the output stays valid
 * JSON and UTF-8 whatever a name or path holds). */
static void put_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		size_t k;
		if (*p >= 0x80 && (k = utf8_len(p)) > 0) {
			fwrite(p, 1, k, f);
			p += k - 1;
			continue;
		}
		if (*p >= 0x80) {
			fprintf(f, "\\u%04x", *p);
			continue;
		}
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

/* Display width of a string as put_safe shows it (code points of its
 * escaped form, good enough for names). */
static size_t width_of(const char *s)
{
	char *e = safe_dup(s);
	size_t w = 0;
	for (const char *p = e; *p; p++)
		if (((unsigned char)*p & 0xc0) != 0x80)
			w++;
	free(e);
	return w;
}

static void put_padded(const char *s, size_t width)
{
	put_safe(stdout, s);
	for (size_t w = width_of(s); w < width; w++)
		fputc(' ', stdout);
}

static const char *mode_name(unsigned mode)
{
	switch (mode & SHVAL_MODE_MASK) {
	case SHVAL_RLOCK:
		return "rlock";
	case SHVAL_LOCK:
		return "lock";
	case SHVAL_RAW:
		return "raw";
	default:
		return "atomic";
	}
}

static const char *kind_name(unsigned kind)
{
	switch (kind) {
	case SHVAL_KIND_SCALAR:
		return "scalar";
	case SHVAL_KIND_ARRAY:
		return "array";
	case SHVAL_KIND_STRING:
		return "string";
	case SHVAL_KIND_STRUCT:
		return "struct";
	case SHVAL_KIND_LOCK:
		return "lock";
	default:
		return "unknown";
	}
}

/* "64K", "1G", "1.5M": binary units. */
static void fmt_size(uint64_t n, char *buf, size_t cap)
{
	static const char units[] = "BKMGTP";
	int u = 0;
	uint64_t div = 1;
	while (u < 5 && n >= div * 1024) {
		div *= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%" PRIu64 "B", n);
	else if (n % div == 0)
		snprintf(buf, cap, "%" PRIu64 "%c", n / div, units[u]);
	else
		snprintf(buf, cap, "%.1f%c", (double)n / (double)div, units[u]);
}

/* "42s", "5m", "3h", "12d". */
static void fmt_age(int64_t secs, char *buf, size_t cap)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, cap, "%" PRId64 "s", secs);
	else if (secs < 7200)
		snprintf(buf, cap, "%" PRId64 "m", secs / 60);
	else if (secs < 172800)
		snprintf(buf, cap, "%" PRId64 "h", secs / 3600);
	else
		snprintf(buf, cap, "%" PRId64 "d", secs / 86400);
}

/* Monotonic clock in ns, for deadlines. */
static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SHVAL_SEC + ts.tv_nsec;
}

/* ---- argument parsing -------------------------------------------------- */

/* "64k", "1m", "2G", "4096": bytes. */
static bool parse_size(const char *s, uint64_t *out)
{
	char *end;
	if (!*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno)
		return false;
	uint64_t mul = 1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		end++;
		break;
	}
	if (*end || n > UINT64_MAX / mul)
		return false;
	*out = (uint64_t)n * mul;
	return true;
}

/* Seconds, fractions allowed, into ns. */
static bool parse_seconds(const char *s, int64_t *ns)
{
	char *end;
	errno = 0;
	double d = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(d) || d < 0 || d > 1e9)
		return false;
	*ns = (int64_t)(d * 1e9);
	return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	if (!*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (*end || errno)
		return false;
	*out = n;
	return true;
}

/* Options are long ("--json", "--size N", "--size=N") or "-h"; "--" ends
 * them.  Everything else, including "-5", is positional (values may be
 * negative numbers). */
static int parse_args(const struct cmd *c, int argc, char **argv,
		      struct args *a)
{
	memset(a, 0, sizeof *a);
	a->cmd = c;
	a->pos = xmalloc(sizeof(char *) * (size_t)(argc + 1));
	bool opts_done = false;
	for (int i = 0; i < argc; i++) {
		char *s = argv[i];
		if (!opts_done && strcmp(s, "--") == 0) {
			opts_done = true;
			continue;
		}
		if (!opts_done && strcmp(s, "-h") == 0) {
			a->opt[O_HELP] = "";
			continue;
		}
		if (opts_done || strncmp(s, "--", 2) != 0) {
			a->pos[a->npos++] = s;
			continue;
		}
		const char *name = s + 2, *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		int id = -1;
		for (int k = 0; k < O_N; k++)
			if (strlen(opt_tab[k].name) == nlen &&
			    strncmp(opt_tab[k].name, name, nlen) == 0)
				id = k;
		if (id < 0 || (id != O_HELP && !(c->opts & OPT(id))))
			return usage_error(c, "unknown option '%.*s'",
					   (int)(nlen + 2), s);
		if (opt_tab[id].has_arg) {
			if (eq)
				a->opt[id] = eq + 1;
			else if (i + 1 < argc)
				a->opt[id] = argv[++i];
			else
				return usage_error(c,
						   "option --%s needs an "
						   "argument",
						   opt_tab[id].name);
		} else {
			if (eq)
				return usage_error(c,
						   "option --%s takes no "
						   "argument",
						   opt_tab[id].name);
			a->opt[id] = "";
		}
	}
	if (has(a, O_HELP))
		return 0;
	if (a->npos < c->min_pos)
		return usage_error(c, "missing arguments");
	if (c->max_pos >= 0 && a->npos > c->max_pos)
		return usage_error(c, "too many arguments (unexpected '%s')",
				   a->pos[c->max_pos]);
	return 0;
}

/* Open SEG (pos[0]); value: the value name for messages, or NULL.
 * flags: 0, or SHVAL_RDONLY for commands that only read (they then work
 * with read permission alone and do not attach to the segment). */
static int open_seg(struct args *a, const char *value, unsigned flags,
		    shval_seg **seg)
{
	int r = shval_seg_open(a->pos[0], flags, NULL, seg);
	return r ? fail(a, value, r, NULL) : 0;
}

/* Open SEG and find value NAME (pos[1]). */
static int open_value(struct args *a, unsigned flags, shval_seg **seg,
		      shval **v)
{
	*v = NULL;
	if (open_seg(a, a->pos[1], flags, seg))
		return EX_RUNTIME;
	int r = shval_find(*seg, a->pos[1], NULL, v);
	if (r) {
		fail(a, a->pos[1], r, *seg);
		shval_seg_close(*seg);
		*seg = NULL;
		return EX_RUNTIME;
	}
	return 0;
}

/* Attached processes other than this one. */
struct procs {
	shval_proc *list;
	size_t n;
	unsigned alive, dead;
};

static void get_procs(shval_seg *seg, struct procs *p)
{
	size_t cap = 16, n = 0;
	memset(p, 0, sizeof *p);
	p->list = xmalloc(cap * sizeof *p->list);
	for (;;) {
		if (shval_seg_procs(seg, p->list, cap, &n) != 0)
			n = 0;
		if (n <= cap)
			break;
		cap = n;
		p->list = xrealloc(p->list, cap * sizeof *p->list);
	}
	pid_t me = getpid();
	for (size_t i = 0; i < n; i++) {
		if (p->list[i].pid == me)
			continue;
		p->list[p->n++] = p->list[i];
		if (p->list[i].alive)
			p->alive++;
		else
			p->dead++;
	}
}

/* ---- ls ---------------------------------------------------------------- */

static bool valid_shm_name(const char *s)
{
	size_t n = strlen(s);
	if (n < 1 || n > 200)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '.' || *s == '_' ||
		      *s == '-'))
			return false;
	return true;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

struct ls_row {
	char *name;
	char *error; /* NULL: the fields below are valid */
	struct shval_seg_info info;
	struct procs procs;
	bool foreign;
};

static int cmd_ls(struct args *a)
{
	char **names = NULL;
	size_t nnames = 0, cap = 0;
	if (a->npos > 0) { /* the segments named, of any kind */
		names = xmalloc((size_t)a->npos * sizeof *names);
		for (int i = 0; i < a->npos; i++)
			names[nnames++] = xstrdup(a->pos[i]);
		goto listed;
	}
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return fail_detail(a, NULL, NULL, "cannot read " SHM_DIR,
				   strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (!valid_shm_name(de->d_name) ||
		    strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) !=
			    0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (nnames == cap) {
			cap = cap ? 2 * cap : 32;
			names = xrealloc(names, cap * sizeof *names);
		}
		size_t n = strlen(de->d_name);
		names[nnames] = xmalloc(n + 2);
		names[nnames][0] = '/';
		memcpy(names[nnames] + 1, de->d_name, n + 1);
		nnames++;
	}
	closedir(d);
	if (nnames)
		qsort(names, nnames, sizeof *names, cmp_str);
listed:;
	struct ls_row *rows = xmalloc((nnames ? nnames : 1) * sizeof *rows);
	size_t nrows = 0;
	for (size_t i = 0; i < nnames; i++) {
		struct ls_row *row = &rows[nrows];
		memset(row, 0, sizeof *row);
		/* Look read-only: no attaching to live segments, and files we
		 * may only read are listed too. */
		shval_seg *seg;
		int r = shval_seg_open(names[i], SHVAL_RDONLY, NULL, &seg);
		if (r == SHVAL_EFOREIGN) { /* another user's segment */
			row->foreign = true;
			r = shval_seg_open(names[i],
					   SHVAL_RDONLY | SHVAL_FOREIGN, NULL,
					   &seg);
		}
		if (r == -EACCES || r == -EPERM)
			continue; /* unreadable: cannot tell what it is */
		if (r == 0 && !row->foreign &&
		    shval_seg_info(seg, &row->info) == 0 &&
		    (row->info.flags & SHVAL_TEMP) && row->info.nalive == 0) {
			/* A temporary segment whose processes all died: a
			 * normal open removes it (then -ENOENT). */
			shval_seg_close(seg);
			r = shval_seg_open(names[i], 0, NULL, &seg);
		}
		/* Not a shval segment, or gone meanwhile: skip silently
		 * (a segment named on the command line is reported). */
		if (a->npos == 0 && (r == SHVAL_ECORRUPT || r == -ENOENT ||
				     r == SHVAL_EBADNAME))
			continue;
		row->name = names[i];
		nrows++;
		if (r) {
			const char *m = shval_errmsg(NULL);
			row->error = xstrdup(m[0] ? m : errtext(r));
			continue;
		}
		r = shval_seg_info(seg, &row->info);
		if (r)
			row->error =
				xstrdup(shval_errmsg(seg)[0] ? shval_errmsg(seg)
							     : errtext(r));
		else
			get_procs(seg, &row->procs);
		shval_seg_close(seg);
	}

	time_t now = time(NULL);
	if (has(a, O_JSON)) {
		printf("{\"segments\": [");
		bool first = true;
		for (size_t i = 0; i < nrows; i++) {
			struct ls_row *row = &rows[i];
			if (row->error)
				continue;
			const struct shval_seg_info *s = &row->info;
			printf("%s\n  {\"name\": ", first ? "" : ",");
			first = false;
			put_json_str(stdout, row->name);
			printf(", \"size\": %" PRIu64 ", \"used\": %" PRIu64
			       ", \"max_size\": %" PRIu64
			       ", \"values\": %" PRIu64
			       ", \"attached\": %zu, \"alive\": %u, \"dead\": %u"
			       ", \"creator_pid\": %d, \"created\": %" PRId64
			       ", \"age_seconds\": %" PRId64
			       ", \"temp\": %s, \"mode\": \"%04o\", \"owner\": %u"
			       ", \"foreign\": %s}",
			       s->size, s->used, s->max_size, s->nvalues,
			       row->procs.n, row->procs.alive, row->procs.dead,
			       (int)s->creator_pid, s->created,
			       (int64_t)now - s->created,
			       (s->flags & SHVAL_TEMP) ? "true" : "false",
			       s->mode, (unsigned)s->owner,
			       row->foreign ? "true" : "false");
		}
		printf("%s], \"errors\": [", first ? "" : "\n");
		first = true;
		for (size_t i = 0; i < nrows; i++) {
			if (!rows[i].error)
				continue;
			printf("%s\n  {\"name\": ", first ? "" : ",");
			first = false;
			put_json_str(stdout, rows[i].name);
			printf(", \"error\": ");
			put_json_str(stdout, rows[i].error);
			printf("}");
		}
		printf("%s]}\n", first ? "" : "\n");
	} else {
		size_t wname = 4;
		for (size_t i = 0; i < nrows; i++)
			if (width_of(rows[i].name) > wname)
				wname = width_of(rows[i].name);
		put_padded("NAME", wname);
		printf("  %-13s %6s %5s %4s %8s %5s  %s\n", "USED/MAX",
		       "VALUES", "ALIVE", "DEAD", "CREATOR", "AGE", "NOTE");
		for (size_t i = 0; i < nrows; i++) {
			struct ls_row *row = &rows[i];
			put_padded(row->name, wname);
			if (row->error) {
				printf("  %-13s %6s %5s %4s %8s %5s  ", "-",
				       "-", "-", "-", "-", "-");
				put_safe(stdout, row->error);
				putchar('\n');
				continue;
			}
			const struct shval_seg_info *s = &row->info;
			char used[32], max[32], um[72], age[24];
			fmt_size(s->used, used, sizeof used);
			fmt_size(s->max_size, max, sizeof max);
			snprintf(um, sizeof um, "%s/%s", used, max);
			fmt_age((int64_t)now - s->created, age, sizeof age);
			char note[64] = "";
			if (s->flags & SHVAL_TEMP)
				strcat(note, "temp ");
			if (row->foreign)
				snprintf(note + strlen(note),
					 sizeof note - strlen(note), "uid %u",
					 (unsigned)s->owner);
			printf("  %-13s %6" PRIu64 " %5u %4u %8d %5s  %s\n", um,
			       s->nvalues, row->procs.alive, row->procs.dead,
			       (int)s->creator_pid, age, note);
		}
	}
	bool errors = false;
	for (size_t i = 0; i < nrows; i++) {
		errors |= rows[i].error != NULL;
		free(rows[i].error);
		free(rows[i].procs.list);
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	free(rows);
	/* a segment named on the command line that cannot be listed */
	return errors && a->npos > 0 ? EX_RUNTIME : EX_OK;
}

/* ---- new, info --------------------------------------------------------- */

static int cmd_new(struct args *a)
{
	shval_seg_opts o = { .struct_size = sizeof o };
	unsigned flags = SHVAL_CREATE | SHVAL_EXCL;
	if (has(a, O_SIZE) && !parse_size(a->opt[O_SIZE], &o.initial_size))
		return usage_error(a->cmd,
				   "bad size '%s' (expected bytes, with "
				   "an optional k, m or g)",
				   a->opt[O_SIZE]);
	if (has(a, O_MAX) && !parse_size(a->opt[O_MAX], &o.max_size))
		return usage_error(a->cmd,
				   "bad size '%s' (expected bytes, with "
				   "an optional k, m or g)",
				   a->opt[O_MAX]);
	if (has(a, O_MODE)) {
		char *end;
		const char *m = a->opt[O_MODE];
		errno = 0;
		unsigned long mode = strtoul(m, &end, 8);
		if (!*m || *m == '-' || *end || errno || mode > 07777 ||
		    mode == 0)
			return usage_error(a->cmd,
					   "bad mode '%s' (expected octal "
					   "permission bits such as 0640)",
					   m);
		o.mode = (unsigned)mode;
	}
	if (has(a, O_TEMP))
		flags |= SHVAL_TEMP;
	shval_seg *seg;
	int r = shval_seg_open(a->pos[0], flags, &o, &seg);
	if (r)
		return fail(a, NULL, r, NULL);
	shval_seg_close(seg);
	return EX_OK;
}

static int cmd_info(struct args *a)
{
	shval_seg *seg;
	if (open_seg(a, NULL, SHVAL_RDONLY, &seg))
		return EX_RUNTIME;
	struct shval_seg_info s;
	int r = shval_seg_info(seg, &s);
	if (r) {
		fail(a, NULL, r, seg);
		shval_seg_close(seg);
		return EX_RUNTIME;
	}
	struct procs p;
	get_procs(seg, &p);
	int64_t age = (int64_t)time(NULL) - s.created;
	if (has(a, O_JSON)) {
		printf("{\"segment\": ");
		put_json_str(stdout, a->pos[0]);
		printf(", \"format\": \"%u.%u\", \"format_major\": %u, "
		       "\"format_minor\": %u, \"size\": %" PRIu64
		       ", \"used\": %" PRIu64 ", \"max_size\": %" PRIu64
		       ", \"values\": %" PRIu64 ", \"version\": %" PRIu64
		       ", \"temp\": %s, \"mode\": \"%04o\", \"owner\": %u"
		       ", \"creator_pid\": %d, \"created\": %" PRId64
		       ", \"age_seconds\": %" PRId64
		       ", \"attached\": %zu, \"alive\": %u, \"dead\": %u"
		       ", \"processes\": [",
		       s.format_major, s.format_minor, s.format_major,
		       s.format_minor, s.size, s.used, s.max_size, s.nvalues,
		       s.version, (s.flags & SHVAL_TEMP) ? "true" : "false",
		       s.mode, (unsigned)s.owner, (int)s.creator_pid, s.created,
		       age, p.n, p.alive, p.dead);
		for (size_t i = 0; i < p.n; i++)
			printf("%s{\"pid\": %d, \"alive\": %s}", i ? ", " : "",
			       (int)p.list[i].pid,
			       p.list[i].alive ? "true" : "false");
		printf("]}\n");
	} else {
		char b1[32], b2[32], b3[32], agebuf[24], when[64] = "?";
		time_t t = (time_t)s.created;
		struct tm tm;
		if (localtime_r(&t, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
		fmt_size(s.size, b1, sizeof b1);
		fmt_size(s.used, b2, sizeof b2);
		fmt_size(s.max_size, b3, sizeof b3);
		fmt_age(age, agebuf, sizeof agebuf);
		fputs("segment:    ", stdout);
		put_safe(stdout, a->pos[0]);
		putchar('\n');
		printf("format:     %u.%u\n", s.format_major, s.format_minor);
		bool remote = strncmp(a->pos[0], "redis", 5) == 0;
		if (remote) { /* include/shval.h, REDIS SEGMENTS */
			printf("size:       %" PRIu64 " (%s: the server's "
			       "memory for the segment's keys)\n",
			       s.size, b1);
			printf("used:       %" PRIu64 " (%s)\n", s.used, b2);
			printf("max size:   none (the server's maxmemory)\n");
		} else {
			printf("size:       %" PRIu64 " (%s)\n", s.size, b1);
			printf("used:       %" PRIu64 " (%s)\n", s.used, b2);
			printf("max size:   %" PRIu64 " (%s)\n", s.max_size,
			       b3);
		}
		printf("values:     %" PRIu64 "\n", s.nvalues);
		printf("version:    %" PRIu64 "\n", s.version);
		printf("temporary:  %s\n",
		       (s.flags & SHVAL_TEMP) ? "yes" : "no");
		if (remote) {
			printf("mode:       - (the server's ACLs)\n");
			printf("creator:    pid %d (on its host)\n",
			       (int)s.creator_pid);
			printf("created:    %s (%s ago)\n", when, agebuf);
			printf("attached:   - (not tracked on Redis)\n");
		} else {
			printf("mode:       %04o\n", s.mode);
			printf("owner:      uid %u\n", (unsigned)s.owner);
			printf("creator:    pid %d\n", (int)s.creator_pid);
			printf("created:    %s (%s ago)\n", when, agebuf);
			printf("attached:   %zu (%u alive, %u dead)\n", p.n,
			       p.alive, p.dead);
		}
		for (size_t i = 0; i < p.n; i++)
			printf("  pid %d %s\n", (int)p.list[i].pid,
			       p.list[i].alive ? "alive" : "dead");
	}
	free(p.list);
	shval_seg_close(seg);
	return EX_OK;
}

/* ---- show -------------------------------------------------------------- */

struct show_row {
	struct shval_info info;
	char *text; /* NULL for lock entries */
	size_t len;
	char ver[24];
};

static int cmd_show(struct args *a)
{
	shval_seg *seg;
	if (open_seg(a, NULL, SHVAL_RDONLY, &seg))
		return EX_RUNTIME;
	const char *prefix = a->npos > 1 ? a->pos[1] : NULL;
	bool json = has(a, O_JSON);
	struct show_row *rows = NULL;
	size_t n = 0, cap = 0;
	uint64_t cursor = 0;
	int r, rc = EX_OK;
	bool bad_rows = false; /* reported on stderr; the others are shown */
	struct shval_info info;
	for (;;) {
		uint64_t was = cursor;
		r = shval_seg_next(seg, &cursor, prefix, &info);
		/* a damaged slot: the cursor is past it */
		if (r == SHVAL_ECORRUPT && cursor > was) {
			fail(a, NULL, r, seg);
			bad_rows = true;
			continue;
		}
		if (r)
			break;
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			rows = xrealloc(rows, cap * sizeof *rows);
		}
		struct show_row *row = &rows[n];
		row->info = info;
		row->text = NULL;
		row->len = 0;
		snprintf(row->ver, sizeof row->ver, "%" PRIu64, info.version);
		if (info.kind != SHVAL_KIND_LOCK) {
			shval *v;
			r = shval_find(seg, info.name, NULL, &v);
			if (r == SHVAL_ENOTFOUND)
				continue; /* removed meanwhile */
			if (r == 0) {
				r = value_text(v, json ? SHVAL_TEXT_JSON : 0,
					       &row->text, &row->len);
				shval_close(v);
			}
			if (r == SHVAL_ESTALE)
				continue;
			if (r) { /* only this row fails */
				fail(a, info.name, r, seg);
				bad_rows = true;
				continue;
			}
		}
		n++;
	}
	if (r != SHVAL_ENOTFOUND && rc == EX_OK)
		rc = fail(a, NULL, r, seg);
	if (rc == EX_OK && json) {
		printf("{\"segment\": ");
		put_json_str(stdout, a->pos[0]);
		printf(", \"values\": [");
		for (size_t i = 0; i < n; i++) {
			const struct shval_info *in = &rows[i].info;
			printf("%s\n  {\"name\": ", i ? "," : "");
			put_json_str(stdout, in->name);
			printf(", \"type\": ");
			put_json_str(stdout, in->type);
			printf(", \"kind\": \"%s\", \"mode\": \"%s\", \"version\": %s"
			       ", \"size\": %zu, \"partial\": %s, \"value\": ",
			       kind_name(in->kind), mode_name(in->mode),
			       rows[i].ver, in->size,
			       (in->flags & SHVAL_INFO_PARTIAL) ? "true"
								: "false");
			if (rows[i].text)
				fwrite(rows[i].text, 1, rows[i].len, stdout);
			else
				fputs("null", stdout);
			putchar('}');
		}
		printf("%s]}\n", n ? "\n" : "");
	} else if (rc == EX_OK) {
		size_t w[4] = { 4, 4, 4, 7 };
		for (size_t i = 0; i < n; i++) {
			const char *cols[4] = { rows[i].info.name,
						rows[i].info.type,
						mode_name(rows[i].info.mode),
						rows[i].ver };
			for (int k = 0; k < 4; k++)
				if (width_of(cols[k]) > w[k])
					w[k] = width_of(cols[k]);
		}
		const char *hdr[4] = { "NAME", "TYPE", "MODE", "VERSION" };
		for (int k = 0; k < 4; k++) {
			put_padded(hdr[k], w[k]);
			fputs("  ", stdout);
		}
		puts("VALUE");
		for (size_t i = 0; i < n; i++) {
			const struct shval_info *in = &rows[i].info;
			const char *cols[4] = {
				in->name,
				in->kind == SHVAL_KIND_LOCK ? "lock" : in->type,
				mode_name(in->mode), rows[i].ver
			};
			for (int k = 0; k < 4; k++) {
				put_padded(cols[k], w[k]);
				fputs("  ", stdout);
			}
			if (rows[i].text)
				put_display(stdout, rows[i].text, rows[i].len);
			else
				fputs("-", stdout);
			if (in->flags & SHVAL_INFO_PARTIAL)
				fputs("  (partial)", stdout);
			putchar('\n');
		}
	}
	for (size_t i = 0; i < n; i++)
		free(rows[i].text);
	free(rows);
	shval_seg_close(seg);
	return rc == EX_OK && bad_rows ? EX_RUNTIME : rc;
}

/* ---- create, get, set, add, rm, unlink --------------------------------- */

/* The initial bytes of a value of type `type` parsed from text: the text
 * is parsed into a scratch value of this process's anonymous segment, so
 * that the real value is created with its contents in one step (watchers
 * never see it zero-filled, and bad text creates nothing). */
static int initial_bytes(struct args *a, const char *type, int argc,
			 char **argv, void **out, size_t *size)
{
	*out = NULL;
	char canon[SHVAL_TYPE_MAX + 1];
	int r = shval_type_canonical(type, canon, sizeof canon, size);
	if (r)
		return fail_detail(a, a->pos[0], a->pos[1], errtext(r),
				   shval_errmsg(NULL));
	shval *tmp;
	if ((r = shval_new(canon, SHVAL_RAW, NULL, 0, &tmp)) != 0) {
		shval_seg *anon = NULL;
		shval_anon_segment(&anon);
		return fail_detail(a, a->pos[0], a->pos[1], errtext(r),
				   shval_errmsg(anon));
	}
	int rc = EX_OK;
	void *buf = xmalloc(*size);
	char err[256];
	r = text_set(tmp, argc, argv, err, sizeof err);
	if (r == 0)
		r = shval_read(tmp, buf, *size);
	if (r) {
		rc = fail_detail(a, a->pos[0], a->pos[1], errtext(r),
				 err[0] ? err
					: shval_errmsg(shval_segment(tmp)));
		free(buf);
		buf = NULL;
	}
	struct shval_info info;
	if (shval_info(tmp, &info) == 0)
		shval_remove(shval_segment(tmp), info.name);
	shval_close(tmp);
	*out = buf;
	return rc;
}

static int cmd_create(struct args *a)
{
	unsigned mode = SHVAL_RLOCK;
	int nmodes = 0;
	static const struct {
		enum opt_id o;
		unsigned mode;
	} modes[] = {
		{ O_RLOCK, SHVAL_RLOCK },
		{ O_LOCK, SHVAL_LOCK },
		{ O_RAW, SHVAL_RAW },
		{ O_ATOMIC, SHVAL_ATOMIC },
	};
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (has(a, modes[i].o)) {
			mode = modes[i].mode;
			nmodes++;
		}
	if (nmodes > 1)
		return usage_error(a->cmd,
				   "give at most one of --rlock, --lock, "
				   "--raw, --atomic");
	shval_seg *seg;
	if (open_seg(a, a->pos[1], 0, &seg))
		return EX_RUNTIME;
	void *init = NULL;
	size_t size = 0;
	if (a->npos > 3 && initial_bytes(a, a->pos[2], a->npos - 3, a->pos + 3,
					 &init, &size)) {
		shval_seg_close(seg);
		return EX_RUNTIME;
	}
	shval *v;
	int r = shval_create(seg, a->pos[1], a->pos[2], mode, init, size, &v);
	int rc = r ? fail(a, a->pos[1], r, seg) : EX_OK;
	shval_close(v);
	free(init);
	shval_seg_close(seg);
	return rc;
}

static int cmd_get(struct args *a)
{
	shval_seg *seg;
	shval *v;
	if (open_value(a, SHVAL_RDONLY, &seg, &v))
		return EX_RUNTIME;
	char *text;
	size_t len;
	int rc = EX_OK;
	int r = value_text(v, has(a, O_JSON) ? SHVAL_TEXT_JSON : 0, &text,
			   &len);
	if (r) {
		rc = fail(a, a->pos[1], r, seg);
	} else {
		put_value(stdout, v, text, len, has(a, O_JSON));
		putchar('\n');
		free(text);
	}
	shval_close(v);
	shval_seg_close(seg);
	return rc;
}

static int cmd_set(struct args *a)
{
	shval_seg *seg;
	shval *v;
	if (open_value(a, 0, &seg, &v))
		return EX_RUNTIME;
	int rc = EX_OK;
	char err[256];
	int r = text_set(v, a->npos - 2, a->pos + 2, err, sizeof err);
	if (r)
		rc = err[0] ? fail_detail(a, a->pos[0], a->pos[1], errtext(r),
					  err)
			    : fail(a, a->pos[1], r, seg);
	shval_close(v);
	shval_seg_close(seg);
	return rc;
}

/* Print one element of letter code (bytes in the letter's layout) as the
 * library's text form shows it, and a newline. */
static void print_elem(char code, const void *bytes)
{
	char type[2] = { code, '\0' };
	shval__type *t = NULL;
	shval__buf b;
	shval__buf_init(&b);
	if (shval__type_parse(type, &t, NULL, 0) == 0)
		shval__text_format(t, bytes, 0, &b);
	if (b.p)
		fwrite(b.p, 1, b.len, stdout);
	putchar('\n');
	shval__buf_free(&b);
	shval__type_free(t);
}

static int cmd_add(struct args *a)
{
	shval_seg *seg;
	shval *v;
	if (open_value(a, 0, &seg, &v))
		return EX_RUNTIME;
	struct shval_info info;
	int r = shval_info(v, &info);
	int rc = EX_OK;
	const char *ds = a->pos[2];
	char code = info.kind == SHVAL_KIND_SCALAR ? info.type[0] : 0;
	char *end;
	errno = 0;
	if (r) {
		rc = fail(a, a->pos[1], r, seg);
	} else if (code == 'f' || code == 'd') {
		double delta = strtod(ds, &end);
		if (!*ds || *end || (errno == ERANGE && isinf(delta))) {
			rc = fail_detail(a, a->pos[0], a->pos[1],
					 "malformed delta",
					 "expected a real number");
		} else if ((r = shval_add_f64(v, delta, &delta)) != 0) {
			rc = fail(a, a->pos[1], r, seg);
		} else {
			unsigned char bytes[8];
			if (code == 'f') {
				float f = (float)delta;
				memcpy(bytes, &f, sizeof f);
			} else {
				memcpy(bytes, &delta, sizeof delta);
			}
			print_elem(code, bytes);
		}
	} else {
		long long delta = strtoll(ds, &end, 10);
		int64_t result;
		if (!*ds || *end || errno) {
			rc = fail_detail(
				a, a->pos[0], a->pos[1], "malformed delta",
				errno == ERANGE ? "out of the 64-bit range"
						: "expected an integer");
		} else if ((r = shval_add_i64(v, delta, &result)) != 0) {
			rc = fail(a, a->pos[1], r, seg);
		} else {
			unsigned char bytes[8];
			shval__int_store(shval__letter_info(code), bytes,
					 (uint64_t)result);
			print_elem(code, bytes);
		}
	}
	shval_close(v);
	shval_seg_close(seg);
	return rc;
}

static int cmd_rm(struct args *a)
{
	shval_seg *seg;
	if (open_seg(a, a->pos[1], 0, &seg))
		return EX_RUNTIME;
	int r = shval_remove(seg, a->pos[1]);
	int rc = r ? fail(a, a->pos[1], r, seg) : EX_OK;
	shval_seg_close(seg);
	return rc;
}

static int cmd_unlink(struct args *a)
{
	int r = shval_seg_unlink_ex(a->pos[0],
				    has(a, O_FORCE) ? SHVAL_UNLINK_FORCE : 0);
	return r ? fail(a, NULL, r, NULL) : EX_OK;
}

/* ---- wait, watch ------------------------------------------------------- */

/* Relative timeout left before deadline (SHVAL_FOREVER if deadline < 0). */
static int64_t remaining(int64_t deadline)
{
	if (deadline < 0)
		return SHVAL_FOREVER;
	int64_t left = deadline - now_ns();
	return left > 0 ? left : 0;
}

static int get_deadline(struct args *a, int64_t *deadline)
{
	int64_t ns;
	*deadline = -1;
	if (!has(a, O_TIMEOUT))
		return 0;
	if (!parse_seconds(a->opt[O_TIMEOUT], &ns))
		return usage_error(a->cmd,
				   "bad timeout '%s' (expected seconds)",
				   a->opt[O_TIMEOUT]);
	*deadline = now_ns() + ns;
	return 0;
}

static int cmd_wait(struct args *a)
{
	int64_t deadline;
	if (get_deadline(a, &deadline))
		return EX_USAGE;
	shval_seg *seg;
	shval *v;
	if (open_value(a, 0, &seg, &v))
		return EX_RUNTIME;
	uint64_t seen = shval_value_version(v);
	int r, rc = EX_OK;
	while ((r = shval_wait(v, &seen, remaining(deadline))) == -EINTR)
		;
	if (r == -ETIMEDOUT) {
		fprintf(stderr, "shval: wait %s %s: timed out\n", a->pos[0],
			a->pos[1]);
		rc = EX_TIMEOUT;
	} else if (r) {
		rc = fail(a, a->pos[1], r, seg);
	} else {
		char *text;
		size_t len;
		r = value_text(v, has(a, O_JSON) ? SHVAL_TEXT_JSON : 0, &text,
			       &len);
		if (r) {
			rc = fail(a, a->pos[1], r, seg);
		} else {
			put_value(stdout, v, text, len, has(a, O_JSON));
			putchar('\n');
			free(text);
		}
	}
	shval_close(v);
	shval_seg_close(seg);
	return rc;
}

/* One watched value: its last text, to print only real changes. */
struct watched {
	char *name;
	shval *v;   /* NULL while the value does not exist */
	char *text; /* last text seen; NULL: none yet */
	size_t len;
	uint64_t ver; /* version at the last read */
	bool seen;    /* met in this scan (all-values mode) */
};

struct watch {
	struct args *a;
	shval_seg *seg;
	bool all; /* no NAMEs: all values, including new ones */
	bool json;
	struct watched *w;
	size_t n, cap;
	uint64_t count, printed; /* count 0: unlimited */
};

static struct watched *watch_add(struct watch *st, const char *name)
{
	if (st->n == st->cap) {
		st->cap = st->cap ? 2 * st->cap : 16;
		st->w = xrealloc(st->w, st->cap * sizeof *st->w);
	}
	struct watched *e = &st->w[st->n++];
	memset(e, 0, sizeof *e);
	e->name = xstrdup(name);
	return e;
}

static void watch_drop(struct watched *e)
{
	shval_close(e->v);
	free(e->name);
	free(e->text);
}

/* Re-read one value; print it if its text changed and print is set.
 * ver_hint: the version from shval_seg_next, or 0 to always re-read.
 * Returns 0 or a runtime error code (already reported). */
static int watch_one(struct watch *st, struct watched *e, uint64_t ver_hint,
		     bool print)
{
	if (st->count && st->printed >= st->count)
		print = false;
	if (e->v && e->text && ver_hint && ver_hint == e->ver)
		return 0; /* unchanged since the last read */
	char *text = NULL;
	size_t len = 0;
	int r = 0;
	for (int tries = 0; tries < 2; tries++) {
		if (!e->v) {
			r = shval_find(st->seg, e->name, NULL, &e->v);
			if (r == SHVAL_ENOTFOUND)
				break;
			if (r)
				return fail(st->a, e->name, r, st->seg);
		}
		uint64_t ver = shval_value_version(e->v);
		r = value_text(e->v, st->json ? SHVAL_TEXT_JSON : 0, &text,
			       &len);
		if (r == SHVAL_ESTALE) { /* removed, maybe created anew */
			shval_close(e->v);
			e->v = NULL;
			continue;
		}
		if (r)
			return fail(st->a, e->name, r, st->seg);
		e->ver = ver_hint ? ver_hint : ver;
		break;
	}
	if (!text) { /* the value is gone: forget its text */
		free(e->text);
		e->text = NULL;
		return 0;
	}
	bool changed = !e->text || e->len != len || memcmp(e->text, text, len);
	if (changed && print) {
		if (st->json) {
			struct shval_info info;
			printf("{\"name\": ");
			put_json_str(stdout, e->name);
			printf(", \"version\": %" PRIu64 ", \"value\": ",
			       shval_info(e->v, &info) == 0 ? info.version
							    : e->ver);
			fwrite(text, 1, len, stdout);
			printf("}\n");
		} else {
			put_safe(stdout, e->name);
			putchar('=');
			put_display(stdout, text, len);
			putchar('\n');
		}
		fflush(stdout);
		st->printed++;
	}
	free(e->text);
	e->text = text;
	e->len = len;
	return 0;
}

static int watch_scan(struct watch *st, bool print)
{
	if (!st->all) {
		for (size_t i = 0; i < st->n; i++)
			if (watch_one(st, &st->w[i], 0, print))
				return EX_RUNTIME;
		return 0;
	}
	for (size_t i = 0; i < st->n; i++)
		st->w[i].seen = false;
	uint64_t cursor = 0;
	size_t hint = 0;
	struct shval_info info;
	int r;
	while ((r = shval_seg_next(st->seg, &cursor, NULL, &info)) == 0) {
		if (info.kind == SHVAL_KIND_LOCK)
			continue;
		/* Directory order rarely changes: try the next slot first. */
		struct watched *e = NULL;
		if (hint < st->n && strcmp(st->w[hint].name, info.name) == 0)
			e = &st->w[hint];
		for (size_t i = 0; !e && i < st->n; i++)
			if (strcmp(st->w[i].name, info.name) == 0)
				e = &st->w[i];
		if (!e)
			e = watch_add(st, info.name);
		hint = (size_t)(e - st->w) + 1;
		e->seen = true;
		if (watch_one(st, e, info.version, print))
			return EX_RUNTIME;
	}
	if (r != SHVAL_ENOTFOUND)
		return fail(st->a, NULL, r, st->seg);
	size_t k = 0; /* forget values that were removed */
	for (size_t i = 0; i < st->n; i++) {
		if (st->w[i].seen)
			st->w[k++] = st->w[i];
		else
			watch_drop(&st->w[i]);
	}
	st->n = k;
	return 0;
}

static int cmd_watch(struct args *a)
{
	struct watch st = { .a = a,
			    .all = a->npos == 1,
			    .json = has(a, O_JSON) };
	int64_t deadline;
	if (get_deadline(a, &deadline))
		return EX_USAGE;
	if (has(a, O_COUNT) &&
	    (!parse_u64(a->opt[O_COUNT], &st.count) || st.count == 0))
		return usage_error(a->cmd,
				   "bad count '%s' (expected a positive "
				   "integer)",
				   a->opt[O_COUNT]);
	if (open_seg(a, NULL, 0, &st.seg))
		return EX_RUNTIME;
	int rc = EX_OK;
	for (int i = 1; i < a->npos; i++) {
		struct watched *e = watch_add(&st, a->pos[i]);
		int r = shval_find(st.seg, e->name, NULL, &e->v);
		if (r) {
			rc = fail(a, e->name, r, st.seg);
			goto out;
		}
	}
	/* Take the version before reading, so that no change is missed. */
	uint64_t seen = shval_seg_version(st.seg);
	if (watch_scan(&st, false)) {
		rc = EX_RUNTIME;
		goto out;
	}
	while (!st.count || st.printed < st.count) {
		int r = shval_seg_wait(st.seg, &seen, remaining(deadline));
		if (r == -EINTR)
			continue;
		if (r == -ETIMEDOUT) {
			fprintf(stderr, "shval: watch %s: timed out\n",
				a->pos[0]);
			rc = EX_TIMEOUT;
			break;
		}
		if (r) {
			rc = fail(a, NULL, r, st.seg);
			break;
		}
		if (watch_scan(&st, true)) {
			rc = EX_RUNTIME;
			break;
		}
	}
out:
	for (size_t i = 0; i < st.n; i++)
		watch_drop(&st.w[i]);
	free(st.w);
	shval_seg_close(st.seg);
	return rc;
}

/* ---- check ------------------------------------------------------------- */

struct problem {
	char *value; /* NULL: about the segment */
	const char *kind;
	char *message;
	bool error; /* false: a warning, does not fail the check */
	bool repaired;
	pid_t pid; /* dead_process: the process */
};

struct check {
	struct problem *p;
	size_t n, cap;
};

static void problem(struct check *c, const char *value, const char *kind,
		    bool error, bool repaired, const char *fmt, ...)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->p = xrealloc(c->p, c->cap * sizeof *c->p);
	}
	struct problem *p = &c->p[c->n++];
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	p->message = xmalloc((size_t)len + 1);
	va_start(ap, fmt);
	vsnprintf(p->message, (size_t)len + 1, fmt, ap);
	va_end(ap);
	p->value = value ? xstrdup(value) : NULL;
	p->kind = kind;
	p->error = error;
	p->repaired = repaired;
	p->pid = 0;
}

/* Detail for a failed call: the library's message, else the code's text. */
static const char *detail(shval_seg *seg, int code)
{
	const char *m = shval_errmsg(seg);
	return m[0] ? m : errtext(code);
}

/* Read and verify one value; with repair, probe its lock. */
static void check_value(struct check *c, shval_seg *seg,
			const struct shval_info *in, bool repair)
{
	if (in->kind == SHVAL_KIND_LOCK)
		return; /* a bare lock entry: nothing to read */
	shval *v;
	int r = shval_find(seg, in->name, NULL, &v);
	if (r == SHVAL_ENOTFOUND)
		return; /* removed meanwhile */
	if (r) {
		problem(c, in->name, "damaged", true, false, "%s",
			detail(seg, r));
		return;
	}
	struct shval_info info;
	unsigned char *buf = NULL;
	char *text = NULL;
	size_t len;
	if ((r = shval_info(v, &info)) != 0)
		goto bad;
	buf = xmalloc(info.size);
	if ((r = shval_read(v, buf, info.size)) != 0)
		goto bad;
	if ((r = value_text(v, 0, &text, &len)) != 0)
		goto bad;
	if (info.flags & SHVAL_INFO_PARTIAL) {
		bool fixed = repair && shval_write(v, buf, info.size) == 0;
		problem(c, in->name, "partial", true, fixed,
			"partly updated by a writer that died (elements may mix "
			"old and new)%s",
			fixed ? "; rewritten whole" : "");
	}
	free(text);
	free(buf);
	shval_close(v);
	return;
bad:
	problem(c, in->name, "damaged", true, false, "%s", detail(seg, r));
	free(text);
	free(buf);
	shval_close(v);
}

static void on_problem(const shval_problem *p, void *arg)
{
	struct check *c = arg;
	if (p->code == 0)
		return; /* warnings (partly updated values): check_value reports */
	problem(c, p->name[0] ? p->name : NULL,
		p->code == SHVAL_EOWNERDEAD ? "dead_lock_owner" : "damaged",
		true, p->repaired, "%s", p->what);
}

static int cmd_check(struct args *a)
{
	bool repair = has(a, O_REPAIR), json = has(a, O_JSON);
	shval_seg *seg;
	if (open_seg(a, NULL, repair ? 0 : SHVAL_RDONLY, &seg))
		return EX_RUNTIME;
	struct check c = { 0 };
	struct shval_seg_info si;
	uint64_t checked = 0;
	int r = shval_seg_info(seg, &si);
	if (r) {
		problem(&c, NULL, "damaged", true, false, "%s", detail(seg, r));
	} else {
		struct procs p;
		get_procs(seg, &p);
		for (size_t i = 0; i < p.n; i++)
			if (!p.list[i].alive) {
				problem(&c, NULL, "dead_process", false, false,
					"process %d died while attached; locks it "
					"held are recovered by the next locker%s",
					(int)p.list[i].pid,
					repair ? "" : " (see --repair)");
				c.p[c.n - 1].pid = p.list[i].pid;
			}
		free(p.list);
		/* The library's deep verification: bounds of every entry, type
		 * record, lock and list; locks held by dead owners (seen in the
		 * lock word, no probing); with --repair it takes those locks
		 * (rolling their values back) and finishes interrupted work. */
		size_t nprob;
		r = shval_seg_verify(seg,
				     SHVAL_VERIFY_DEEP |
					     (repair ? SHVAL_VERIFY_REPAIR : 0),
				     on_problem, &c, &nprob);
		if (r && r != SHVAL_ECORRUPT)
			problem(&c, NULL, "damaged", true, false, "verify: %s",
				detail(seg, r));
		if (repair) { /* the repair freed dead processes' slots */
			get_procs(seg, &p);
			for (size_t i = 0; i < c.n; i++) {
				if (!c.p[i].pid)
					continue;
				bool still = false;
				for (size_t k = 0; k < p.n; k++)
					still |= p.list[k].pid == c.p[i].pid;
				if (still)
					continue;
				c.p[i].repaired = true;
				free(c.p[i].message);
				c.p[i].message = xmalloc(80);
				snprintf(c.p[i].message, 80,
					 "process %d died while attached; its "
					 "attach slot freed",
					 (int)c.p[i].pid);
			}
			free(p.list);
		}
		uint64_t cursor = 0;
		struct shval_info info;
		while ((r = shval_seg_next(seg, &cursor, NULL, &info)) == 0) {
			checked++;
			check_value(&c, seg, &info, repair);
		}
		if (r != SHVAL_ENOTFOUND)
			problem(&c, NULL, "damaged", true, false,
				"directory: %s", detail(seg, r));
		else if (checked < si.nvalues)
			problem(&c, NULL, "damaged", true, false,
				"the header counts %" PRIu64
				" entries but only %" PRIu64
				" could be read (damaged entries, or values "
				"removed during the check)",
				si.nvalues, checked);
	}
	size_t errors = 0, repaired = 0;
	for (size_t i = 0; i < c.n; i++) {
		if (c.p[i].error && !c.p[i].repaired)
			errors++;
		if (c.p[i].repaired)
			repaired++;
	}
	const char *note = NULL;
	if (json) {
		printf("{\"segment\": ");
		put_json_str(stdout, a->pos[0]);
		printf(", \"checked\": %" PRIu64 ", \"repair\": %s, \"ok\": %s"
		       ", \"errors\": %zu, \"repaired\": %zu, \"note\": ",
		       checked, repair ? "true" : "false",
		       errors ? "false" : "true", errors, repaired);
		if (note)
			put_json_str(stdout, note);
		else
			fputs("null", stdout);
		printf(", \"problems\": [");
		for (size_t i = 0; i < c.n; i++) {
			printf("%s\n  {\"value\": ", i ? "," : "");
			if (c.p[i].value)
				put_json_str(stdout, c.p[i].value);
			else
				fputs("null", stdout);
			printf(", \"kind\": \"%s\", \"severity\": \"%s\", "
			       "\"repaired\": %s, \"message\": ",
			       c.p[i].kind, c.p[i].error ? "error" : "warning",
			       c.p[i].repaired ? "true" : "false");
			put_json_str(stdout, c.p[i].message);
			putchar('}');
		}
		printf("%s]}\n", c.n ? "\n" : "");
	} else {
		put_safe(stdout, a->pos[0]);
		printf(": %" PRIu64 " values checked\n", checked);
		for (size_t i = 0; i < c.n; i++) {
			printf("%s: %s",
			       c.p[i].repaired ? "repaired"
			       : c.p[i].error  ? "error"
					       : "warning",
			       c.p[i].value ? "value " : "");
			if (c.p[i].value) {
				put_safe(stdout, c.p[i].value);
				fputs(": ", stdout);
			}
			put_safe(stdout, c.p[i].message);
			putchar('\n');
		}
		if (note)
			printf("note: %s\n", note);
		if (errors)
			printf("%zu problem%s found\n", errors,
			       errors == 1 ? "" : "s");
		else
			printf("ok%s\n", repaired ? " (after repair)" : "");
	}
	for (size_t i = 0; i < c.n; i++) {
		free(c.p[i].value);
		free(c.p[i].message);
	}
	free(c.p);
	shval_seg_close(seg);
	return errors ? EX_RUNTIME : EX_OK;
}

/* ---- help, version, main ----------------------------------------------- */

static void cmd_help_of(const struct cmd *c)
{
	cmd_usage(c, stdout);
	printf("%s.\n\n%s", c->summary, c->details);
}

static int cmd_help(struct args *a)
{
	if (a->npos == 0) {
		usage_table(stdout);
		return EX_OK;
	}
	const struct cmd *c = find_cmd(a->pos[0]);
	if (!c && shval_ext_help(a->pos[0]) == EX_OK)
		return EX_OK;
	if (!c)
		return usage_error(a->cmd, "unknown command '%s'", a->pos[0]);
	cmd_help_of(c);
	return EX_OK;
}

static int cmd_version(struct args *a)
{
	(void)a;
	printf("shval %s\n", shval_version_string());
	return EX_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage_table(stderr);
		return EX_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0)
		name = "help";
	else if (strcmp(name, "--version") == 0)
		name = "version";
	for (size_t i = 0; i < shval_ext_ncmds; i++)
		if (strcmp(shval_ext_cmds[i].name, name) == 0)
			return shval_ext_cmds[i].run(argc - 2, argv + 2);
	const struct cmd *c = find_cmd(name);
	if (!c)
		return usage_error(NULL, "unknown command '%s'", argv[1]);
	struct args a;
	int rc = parse_args(c, argc - 2, argv + 2, &a);
	if (rc == 0) {
		if (has(&a, O_HELP)) {
			cmd_help_of(c);
			rc = EX_OK;
		} else {
			rc = c->run(&a);
		}
	}
	free(a.pos);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "shval: %s: error writing output: %s\n",
			c->name, strerror(errno));
		if (rc == EX_OK)
			rc = EX_RUNTIME;
	}
	return rc;
}
