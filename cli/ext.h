/*
 * cli/ext.h — commands of shval(1) that live in their own files and parse
 * their own arguments (export, serve, top).  cli/shval.c lists them after
 * its own table in the usage text and dispatches to run(argc, argv) with
 * the arguments after the command name.  Exit status as cli/shval.c's:
 * 0 ok, 1 runtime error, 2 usage error.
 */
#ifndef SHVAL_CLI_EXT_H
#define SHVAL_CLI_EXT_H

#include <stddef.h>
#include <stdio.h>

#include "shval.h"

struct shval_ext_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *synopsis; /* after "shval NAME " */
	const char *summary;  /* one line for the usage table */
	const char *details;  /* for "shval NAME --help" */
};

extern const struct shval_ext_cmd shval_ext_cmds[];
extern const size_t shval_ext_ncmds;

int shval_cmd_export(int argc, char **argv);
int shval_cmd_serve(int argc, char **argv);
int shval_cmd_top(int argc, char **argv);

/* The exposition (cli/metrics.c): the Prometheus text format 0.0.4 of the
 * numeric values of nseg open segments, one consistent read per value.
 * *out (malloc'd, *len bytes, NUL-terminated) on success; returns 0 or a
 * library code with a message in err. */
int shval_metrics_render(shval_seg *const *segs, int nseg, char **out,
			 size_t *len, char *err, size_t errcap);

/* Bytes for a terminal, as every shval(1) command shows names and values
 * (cli/shval.c): C0 and C1 controls, DEL and bytes that are not
 * well-formed UTF-8 as C escapes (\n, \t, \xHH), nothing raw. */
void shval_cli_display(FILE *f, const char *s, size_t n);

/* "shval NAME: ..." usage error with the command's synopsis; returns 2. */
int shval_ext_usage(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print the help of the command NAME; returns 0. */
int shval_ext_help(const char *name);

#endif
