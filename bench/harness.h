/*
 * bench/harness.h — the measuring loop shared by bench.c and bench_boost.cpp
 * (C11 and C++17).  Not part of the library.
 *
 * A *case* compares two *sides* (shval, and a baseline) in one program.
 * Each side is a function that performs operations until the time
 * bh_stop_at (CLOCK_MONOTONIC ns; checked every 256 operations, so a rep
 * lasts min_sec, 0.3 s by default, whatever the load) or max_ops, and
 * returns the elapsed wall time and the number of operations it did (2p
 * cases count the operations of both processes).  Time-bounded reps, not
 * calibrated counts: on this noisy VM a count calibrated in a quiet moment
 * can turn a rep into a minute.
 *
 *   1. a warm-up run of each side (not recorded);
 *   2. reps: rep 1 of both sides, then rep 2, ... (order ABBA, so a clock
 *      that drifts during a pair favours neither side);
 *   3. per side min/median/max ns/op; the case's ratio is the median of
 *      the per-rep ratios shval/baseline (each rep's two runs are adjacent
 *      in time, so a change of CPU clock between reps cancels), and the
 *      ratio of the two medians is reported beside it.
 */
#ifndef SHVAL_BENCH_HARNESS_H
#define SHVAL_BENCH_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BH_MAXREP 64

typedef struct bh_opts {
	int quick;        /* run every case for a tiny count, no calibration */
	int reps;         /* >= 5 unless quick */
	double min_sec;   /* per rep */
	const char *only; /* run only cases whose name contains this */
	FILE *json;       /* fragment output: one JSON object per line */
} bh_opts;

typedef struct bh_run {
	double ns;    /* elapsed */
	double ops;   /* operations counted */
	int ok;       /* 0: a check failed (wrong total...) */
} bh_run;

typedef bh_run (*bh_fn)(void *ctx, uint64_t max_ops);

typedef struct bh_side {
	const char *label;
	bh_fn fn;
	void *ctx;
	uint64_t iters; /* max_ops: a tiny count with --quick, else unbounded */
	double nsop[BH_MAXREP];
	double sec[BH_MAXREP];
	double ops[BH_MAXREP];
} bh_side;

/* The end of the current run (CLOCK_MONOTONIC ns, as bh_now()). */
static double bh_stop_at;

static inline double bh_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int bh_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static inline double bh_median(const double *v, int n)
{
	double t[BH_MAXREP];
	memcpy(t, v, (size_t)n * sizeof *t);
	qsort(t, (size_t)n, sizeof *t, bh_cmp);
	return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

static inline double bh_min(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static inline double bh_max(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

static inline double bh_loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

/* for (i = 0; i < max && time left; i++), i declared by the caller (it is
 * the number of operations done afterwards); the clock is read every 256. */
#define BH_LOOP(i, max) \
	for ((i) = 0; (i) < (max) && (((i) & 255) || bh_now() < bh_stop_at); (i)++)

static inline int bh_selected(const bh_opts *o, const char *name)
{
	return !o->only || strstr(name, o->only) != NULL;
}

/* One run of a side: until min_sec has passed (or iters ops with --quick). */
static inline bh_run bh_once(const bh_opts *o, bh_side *s, double sec)
{
	bh_stop_at = bh_now() + (o->quick ? 10e9 : sec * 1e9);
	return s->fn(s->ctx, s->iters);
}

static inline void bh_json_str(FILE *f, const char *k, const char *v)
{
	fprintf(f, "\"%s\": \"", k);
	for (const char *p = v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fputc('\\', f);
		fputc(*p, f);
	}
	fputs("\"", f);
}

static inline void bh_json_stats(FILE *f, const char *k, const bh_side *s,
				 int n)
{
	fprintf(f, "\"%s\": {", k);
	bh_json_str(f, "label", s->label);
	fprintf(f, ", \"median\": %.3f, \"min\": %.3f, "
		   "\"max\": %.3f, \"ops_per_rep_min\": %.0f, \"rep_sec_min\": %.3f, "
		   "\"ns_per_op\": [",
		bh_median(s->nsop, n), bh_min(s->nsop, n),
		bh_max(s->nsop, n), bh_min(s->ops, n), bh_min(s->sec, n));
	for (int i = 0; i < n; i++)
		fprintf(f, "%s%.3f", i ? ", " : "", s->nsop[i]);
	fputs("]}", f);
}

/* Run a comparison.  target_max: the case's target as "ratio <= x" (ratio =
 * shval / baseline).  Prints one line, appends a JSON object.  Returns 0 if a
 * check failed. */
static int bh_compare(const bh_opts *o, const char *name, const char *what,
		      bh_side *a, bh_side *b, uint64_t quick_ops,
		      double target_max, const char *note)
{
	if (!bh_selected(o, name))
		return 1;
	double load0 = bh_loadavg();
	a->iters = b->iters = o->quick ? quick_ops : UINT64_MAX;
	if (!o->quick) { /* warm-up, not recorded */
		bh_run wa = bh_once(o, a, o->min_sec / 3);
		bh_run wb = bh_once(o, b, o->min_sec / 3);
		if (!wa.ok || !wb.ok) {
			fprintf(stderr, "%s: check failed during warm-up\n", name);
			return 0;
		}
	}
	int n = o->quick ? 1 : o->reps;
	double ratio[BH_MAXREP];
	for (int i = 0; i < n; i++) {
		bh_side *first = (i % 2) ? b : a, *second = (i % 2) ? a : b;
		bh_side *ss[2] = { first, second };
		for (int k = 0; k < 2; k++) {
			bh_run r = bh_once(o, ss[k], o->min_sec);
			if (!r.ok || r.ops <= 0) {
				fprintf(stderr, "%s (%s): check failed\n", name,
					ss[k]->label);
				return 0;
			}
			ss[k]->nsop[i] = r.ns / r.ops;
			ss[k]->sec[i] = r.ns / 1e9;
			ss[k]->ops[i] = r.ops;
		}
		ratio[i] = a->nsop[i] / b->nsop[i];
	}
	double load1 = bh_loadavg();
	double ma = bh_median(a->nsop, n), mb = bh_median(b->nsop, n);
	double rp = bh_median(ratio, n);
	int met = rp <= target_max;
	printf("%-16s shval %10.1f ns/op  baseline %10.1f ns/op  ratio %6.3f "
	       "(%.3f..%.3f)  target <= %.3g  %s\n",
	       name, ma, mb, rp, bh_min(ratio, n), bh_max(ratio, n), target_max,
	       o->quick ? "(quick)" : met ? "met" : "MISSED");
	fflush(stdout);
	if (o->json) {
		FILE *f = o->json;
		fputs("{", f);
		bh_json_str(f, "case", name);
		fputs(", ", f);
		bh_json_str(f, "what", what);
		fprintf(f, ", \"shval_ns\": %.3f, \"baseline_ns\": %.3f, "
			   "\"ratio\": %.4f, \"ratio_of_medians\": %.4f, "
			   "\"ratio_min\": %.4f, \"ratio_max\": %.4f, "
			   "\"target\": \"ratio <= %.4g\", \"target_max\": %.6g, "
			   "\"met\": %s, \"repetitions\": %d, \"quick\": %s, "
			   "\"loadavg_before\": %.2f, \"loadavg_after\": %.2f, ",
			ma, mb, rp, ma / mb, bh_min(ratio, n), bh_max(ratio, n),
			target_max, target_max, met ? "true" : "false", n,
			o->quick ? "true" : "false", load0, load1);
		bh_json_stats(f, "shval", a, n);
		fputs(", ", f);
		bh_json_stats(f, "baseline", b, n);
		fputs(", ", f);
		bh_json_str(f, "note", note ? note : "");
		fputs("}\n", f);
		fflush(f);
	}
	return 1;
}

/* A row with a single measured number (no baseline). */
static inline void bh_report_value(const bh_opts *o, const char *name,
				   const char *what, double value,
				   const char *unit, double target_max,
				   const char *note)
{
	int has = target_max >= 0, met = has && value <= target_max;
	if (has)
		printf("%-16s %10.1f %s  target <= %g  %s\n", name, value, unit,
		       target_max, o->quick ? "(quick)" : met ? "met" : "MISSED");
	else
		printf("%-16s %10.1f %s  (no target)\n", name, value, unit);
	fflush(stdout);
	if (o->json) {
		FILE *f = o->json;
		fputs("{", f);
		bh_json_str(f, "case", name);
		fputs(", ", f);
		bh_json_str(f, "what", what);
		fprintf(f, ", \"value\": %.3f, \"unit\": \"%s\", ", value, unit);
		if (has)
			fprintf(f, "\"target\": \"<= %g\", \"target_max\": %g, "
				   "\"met\": %s, ",
				target_max, target_max, met ? "true" : "false");
		else
			fputs("\"target\": \"\", \"met\": null, ", f);
		fprintf(f, "\"quick\": %s, ", o->quick ? "true" : "false");
		bh_json_str(f, "note", note ? note : "");
		fputs("}\n", f);
		fflush(f);
	}
}

/* Parse the common command line: --quick, --reps N, --min-sec S,
 * --only NAME, --json FILE.  Returns 0 on a usage error. */
static inline int bh_parse(bh_opts *o, int argc, char **argv)
{
	memset(o, 0, sizeof *o);
	o->reps = 7;
	o->min_sec = 0.3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			o->quick = 1;
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			o->reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--min-sec") && i + 1 < argc)
			o->min_sec = atof(argv[++i]);
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			o->only = argv[++i];
		else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
			o->json = fopen(argv[++i], "a");
			if (!o->json) {
				perror(argv[i]);
				return 0;
			}
		} else {
			fprintf(stderr,
				"usage: %s [--quick] [--reps N (>=5)] [--min-sec S] "
				"[--only CASE] [--json FILE (appended)]\n",
				argv[0]);
			return 0;
		}
	}
	if (o->reps < 1 || o->reps > BH_MAXREP)
		o->reps = 7;
	return 1;
}

#endif
