/*
 * tests/helper_open.c — an unrelated program (exec'd, not forked) that
 * attaches a segment the way another application would, for the
 * multi-process tests (tests/proc_util.h).
 *
 *   helper_open name NAME     open NAME by name
 *   helper_open fd N          shval_seg_open_fd(N) (an inherited fd)
 *   helper_open recv SOCK     receive an fd over Unix socket SOCK
 *                             (SCM_RIGHTS), then shval_seg_open_fd
 *
 * Then: checks the values the test left ("counter" q atomic, "greeting"
 * 16s holding "hello\0world\0", "pt" x:d y:d = 1.5, -2), adds 1 to counter,
 * creates "from_helper" (i, 42), and exits 0; on any failure prints why and
 * exits 1.
 */
#include <shval.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(call)                                                            \
	do {                                                                   \
		int r_ = (call);                                               \
		if (r_ != 0) {                                                 \
			fprintf(stderr, "helper_open: %s: %s (%s)\n", #call,   \
				shval_strerror(r_), shval_errmsg(seg));        \
			exit(1);                                               \
		}                                                              \
	} while (0)
#define EXPECT(cond)                                                           \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "helper_open: failed: %s\n", #cond);   \
			exit(1);                                               \
		}                                                              \
	} while (0)

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { &byte, 1 };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof u.buf;
	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof fd);
	return fd;
}

int main(int argc, char **argv)
{
	shval_seg *seg = NULL;
	if (argc != 3) {
		fprintf(stderr, "usage: helper_open name|fd|recv ARG\n");
		return 2;
	}
	if (strcmp(argv[1], "name") == 0) {
		CHECK(shval_seg_open(argv[2], 0, NULL, &seg));
	} else {
		int fd = atoi(argv[2]);
		if (strcmp(argv[1], "recv") == 0) {
			int s = fd;
			fd = recv_fd(s);
			EXPECT(fd >= 0);
			close(s);
		}
		CHECK(shval_seg_open_fd(fd, 0, &seg));
		/* the fd was duplicated: ours can go */
		close(fd);
	}
	EXPECT(seg != NULL);
	shval *counter, *greeting, *pt, *mine;
	CHECK(shval_find(seg, "counter", "q", &counter));
	CHECK(shval_find(seg, "greeting", "16s", &greeting));
	CHECK(shval_find(seg, "pt", "x:d y:d", &pt));
	char buf[32];
	size_t len;
	CHECK(shval_get_str(greeting, buf, sizeof buf, &len));
	EXPECT(len == 12 && memcmp(buf, "hello\0world\0", 12) == 0);
	double xy[2];
	CHECK(shval_read(pt, xy, sizeof xy));
	EXPECT(xy[0] == 1.5 && xy[1] == -2);
	CHECK(shval_add_i64(counter, 1, NULL));
	CHECK(shval_create(seg, "from_helper", "i", 0, NULL, 0, &mine));
	CHECK(shval_set_i64(mine, 42));
	struct shval_seg_info si;
	CHECK(shval_seg_info(seg, &si));
	/* a Redis segment has no attach counts (0) */
	bool remote = strncmp(argv[2], "redis", 5) == 0;
	EXPECT((remote ? si.nalive == 0 : si.nalive >= 1) && si.nvalues >= 4);
	shval_close(mine);
	shval_close(counter);
	shval_close(greeting);
	shval_close(pt);
	shval_seg_close(seg);
	return 0;
}
