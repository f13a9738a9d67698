/*
 * cli/ext.c — the table of shval(1)'s commands that live in their own
 * files (cli/ext.h), their usage errors and help.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ext.h"

const struct shval_ext_cmd shval_ext_cmds[] = {
	{ "export", shval_cmd_export, "SEG...",
	  "print the numeric values as Prometheus metrics",
	  "Prints the Prometheus text exposition (format 0.0.4) of the numeric\n"
	  "values of the SEGs once, e.g. for node_exporter's textfile\n"
	  "collector.  Value names map to metrics as described in shval(1),\n"
	  "METRICS: NAME{label=\"v\",...}, type from a \"NAME#type\" string or\n"
	  "the _total suffix, help from \"NAME#help\", per-process \"@PID\"\n"
	  "values combined per \"NAME#mode\".  Values that cannot be exported\n"
	  "are named on \"# shval: skipped\" comment lines.\n" },
	{ "serve", shval_cmd_serve, "SEG... [--listen ADDR:PORT]",
	  "serve the metrics over HTTP at /metrics",
	  "Serves the text of 'shval export SEG...' at http://ADDR:PORT/metrics\n"
	  "(libmicrohttpd), rendered afresh at every request.  Other paths\n"
	  "get 404.  Prints \"listening on http://ADDR:PORT/metrics\" once\n"
	  "ready, and exits 0 on SIGINT or SIGTERM.\n"
	  "  --listen ADDR:PORT  default 127.0.0.1:9464; port 0 picks a free\n"
	  "                      port; IPv6 as [::1]:9464\n" },
	{ "top", shval_cmd_top,
	  "SEG [--filter TEXT] [--sort name|value|rate|age] [--reverse] "
	  "[--interval SECONDS]",
	  "a live terminal view of the values",
	  "Shows the values of SEG, one per row: name, value, change per\n"
	  "second (numeric scalars) and time since the last change (\">\" and\n"
	  "the time top has run for values that did not change since), redrawn\n"
	  "on every change (shval_seg_wait; at most 20 times a second) and at\n"
	  "every rate tick.  Needs a terminal, and write access to SEG (a\n"
	  "watcher announces itself in the segment; nothing else is written).\n"
	  "Keys: q or Ctrl-C quit, Ctrl-Z suspends; n, v, r, a sort by name,\n"
	  "value, rate, age (the same key again reverses); / edits the name\n"
	  "filter (Enter keeps, Esc restores, Ctrl-U clears).\n"
	  "  --filter TEXT       show only names containing TEXT\n"
	  "  --sort KEY          name (A-Z), value, rate (largest first) or age\n"
	  "                      (latest change first); default name\n"
	  "  --reverse           the other direction\n"
	  "  --interval SECONDS  rate tick, 0.05 to 3600; default 1: a rate is\n"
	  "                      the change over the last tick per second\n" },
};

const size_t shval_ext_ncmds = sizeof shval_ext_cmds / sizeof *shval_ext_cmds;

static const struct shval_ext_cmd *find(const char *name)
{
	for (size_t i = 0; i < shval_ext_ncmds; i++)
		if (strcmp(shval_ext_cmds[i].name, name) == 0)
			return &shval_ext_cmds[i];
	return NULL;
}

int shval_ext_usage(const char *name, const char *fmt, ...)
{
	const struct shval_ext_cmd *c = find(name);
	va_list ap;
	fprintf(stderr, "shval %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: shval %s %s\nTry 'shval %s --help'.\n", name,
		c ? c->synopsis : "", name);
	return 2;
}

int shval_ext_help(const char *name)
{
	const struct shval_ext_cmd *c = find(name);
	if (!c)
		return 2;
	printf("usage: shval %s %s\n%s.\n\n%s", c->name, c->synopsis,
	       c->summary, c->details);
	return 0;
}
