/*
 * tests/redis_util.h — a private redis-server for one test case: started
 * on 127.0.0.1 on a free port and on a unix socket, in a directory of the
 * build tree (SHVAL_TEST_REDIS_DIR), stopped and removed at the end.  Never
 * another host.  redis-server missing is a failure, not a skip: `make test`
 * installs it (Debian's redis-server), and CI must run these tests.
 */
#ifndef SHVAL_TEST_REDIS_UTIL_H
#define SHVAL_TEST_REDIS_UTIL_H

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <hiredis/hiredis.h>

#ifndef SHVAL_TEST_REDIS_DIR
#error "SHVAL_TEST_REDIS_DIR must be defined by tests/CMakeLists.txt"
#endif

struct tredis {
	pid_t pid;
	int port;
	char dir[512];
	char sock[600];
	char url[700];  /* redis://127.0.0.1:PORT/PREFIX?lease_ms=... */
	char uurl[900]; /* redis+unix://SOCK?prefix=PREFIX&... */
	bool persist;   /* appendonly, kept across tredis_restart */
};

static int tredis_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ASSERT(fd >= 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
	socklen_t l = sizeof a;
	ASSERT(getsockname(fd, (struct sockaddr *)&a, &l) == 0);
	close(fd);
	return ntohs(a.sin_port);
}

static bool tredis_ping(struct tredis *t)
{
	struct timeval tv = { 0, 200000 };
	redisContext *c = redisConnectUnixWithTimeout(t->sock, tv);
	bool ok = false;
	if (c && !c->err) {
		redisReply *r = redisCommand(c, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
	}
	if (c)
		redisFree(c);
	return ok;
}

static void tredis_spawn(struct tredis *t)
{
	char port[16];
	snprintf(port, sizeof port, "%d", t->port);
	char log[600];
	snprintf(log, sizeof log, "%s/log", t->dir);
	pid_t pid = fork();
	ASSERT(pid >= 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		execlp("redis-server", "redis-server", "--port", port, "--bind",
		       "127.0.0.1", "--unixsocket", t->sock, "--unixsocketperm",
		       "700", "--dir", t->dir, "--logfile", log, "--save", "",
		       "--appendonly", t->persist ? "yes" : "no",
		       "--appendfsync", "always", "--daemonize", "no",
		       (char *)NULL);
		fprintf(stderr,
			"FAIL: cannot run redis-server (%s): install Debian's "
			"redis-server (make deps does)\n",
			strerror(errno));
		_exit(127);
	}
	t->pid = pid;
	for (int i = 0; i < 500; i++) { /* 10 s */
		if (tredis_ping(t))
			return;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			FAIL("redis-server exited at start (status 0x%x); see "
			     "%s",
			     st, log);
		usleep(20000);
	}
	FAIL("redis-server did not answer within 10 s; see %s", log);
}

static void tredis_rmdir(const char *dir);

/* Directories left by earlier runs whose test failed (a FAIL aborts before
 * tredis_stop; the harness kills the server with the case's process
 * group): removed when their process is gone. */
static void tredis_clean_stale(void)
{
	DIR *d = opendir(SHVAL_TEST_REDIS_DIR);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		int pid;
		if (sscanf(e->d_name, "r.%d.", &pid) != 1 || pid <= 0)
			continue;
		if (kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		char p[1024];
		snprintf(p, sizeof p, "%s/%s", SHVAL_TEST_REDIS_DIR, e->d_name);
		tredis_rmdir(p);
	}
	closedir(d);
}

/* Start a server; urls get prefix and the options (e.g. "lease_ms=300");
 * persist: appendonly with appendfsync always (kept across restarts). */
static void tredis_start_p(struct tredis *t, const char *prefix,
			   const char *opts, bool persist)
{
	memset(t, 0, sizeof *t);
	t->persist = persist;
	mkdir(SHVAL_TEST_REDIS_DIR, 0700);
	tredis_clean_stale();
	snprintf(t->dir, sizeof t->dir, "%s/r.%d.%ld", SHVAL_TEST_REDIS_DIR,
		 (int)getpid(), (long)time(NULL));
	ASSERT(mkdir(t->dir, 0700) == 0);
	snprintf(t->sock, sizeof t->sock, "%s/sock", t->dir);
	t->port = tredis_free_port();
	const char *o = opts && opts[0] ? opts : "";
	snprintf(t->url, sizeof t->url, "redis://127.0.0.1:%d/%s%s%s", t->port,
		 prefix, o[0] ? "?" : "", o);
	snprintf(t->uurl, sizeof t->uurl, "redis+unix://%s?prefix=%s%s%s",
		 t->sock, prefix, o[0] ? "&" : "", o);
	tredis_spawn(t);
}

static void tredis_kill(struct tredis *t, int sig)
{
	if (t->pid > 0) {
		kill(t->pid, sig);
		waitpid(t->pid, NULL, 0);
		t->pid = 0;
	}
}

static void tredis_start(struct tredis *t, const char *prefix, const char *opts)
{
	tredis_start_p(t, prefix, opts, false);
}

/* Kill the server and start it again on the same port and socket. */
static void tredis_restart(struct tredis *t)
{
	tredis_kill(t, SIGKILL);
	unlink(t->sock);
	tredis_spawn(t);
}

static void tredis_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			char p[1200];
			if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >=
			    (int)sizeof p)
				continue;   /* not ours: our names are short */
			if (unlink(p) != 0) /* appendonlydir */
				tredis_rmdir(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

static void tredis_stop(struct tredis *t)
{
	tredis_kill(t, SIGTERM);
	tredis_rmdir(t->dir);
}

/* A raw command on the server (for tests that look behind the library). */
static redisReply *tredis_vcmd(struct tredis *t, const char *fmt, va_list ap)
{
	redisContext *c = redisConnectUnix(t->sock);
	ASSERT(c && !c->err);
	redisReply *r = redisvCommand(c, fmt, ap);
	ASSERT(r != NULL);
	redisFree(c);
	return r;
}

static redisReply *tredis_cmd(struct tredis *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = tredis_vcmd(t, fmt, ap);
	va_end(ap);
	return r;
}

/* Calls of a command so far (INFO commandstats), e.g. "fcall", "xadd". */
static long long tredis_calls(struct tredis *t, const char *cmd)
{
	redisReply *r = tredis_cmd(t, "INFO commandstats");
	char key[64];
	snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
	const char *p = strstr(r->str, key);
	long long n = p ? atoll(p + strlen(key)) : 0;
	freeReplyObject(r);
	return n;
}

/* A reply's string ("" for nil or any other type). */
static const char *tredis_str(const redisReply *rep)
{
	return rep->type == REDIS_REPLY_STRING ? rep->str : "";
}

/* A raw command's reply as a number: an integer reply, or a string one
 * (HGET of a counter); 0 for nil. */
static long long tredis_int(struct tredis *t, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = tredis_vcmd(t, fmt, ap);
	va_end(ap);
	long long n = r->type == REDIS_REPLY_INTEGER  ? r->integer
		      : r->type == REDIS_REPLY_STRING ? atoll(r->str)
						      : 0;
	freeReplyObject(r);
	return n;
}

#pragma GCC diagnostic pop
#endif
