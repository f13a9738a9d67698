/*
 * cli/serve.c — `shval serve SEG... --listen HOST:PORT`: the exposition of
 * cli/metrics.c over HTTP (GET or HEAD /metrics; 404 elsewhere, 405 for
 * other methods), served by libmicrohttpd's internal thread.  Each scrape
 * renders afresh from the segments opened once at start (read-only).
 * SIGINT and SIGTERM stop the daemon (in-flight requests end) and exit 0.
 * With port 0 the kernel picks a free port; the first line on stdout is
 * always "listening on http://HOST:PORT/metrics" once the socket accepts.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "ext.h"
#include "shval.h"

int shval_metrics_open(const char *cmd, int n, char **names, shval_seg **segs);

struct served {
	shval_seg **segs;
	int nseg;
	pthread_mutex_t mu;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status,
			     char *body, size_t len, const char *ctype)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(
		len, body, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	enum MHD_Result ok = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ok;
}

static enum MHD_Result text_reply(struct MHD_Connection *c, unsigned status,
				  const char *msg)
{
	char *b = strdup(msg);
	if (!b)
		return MHD_NO;
	return reply(c, status, b, strlen(b), "text/plain; charset=utf-8");
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c,
			      const char *url, const char *method,
			      const char *version, const char *upload,
			      size_t *upload_size, void **state)
{
	struct served *s = cls;
	(void)version;
	(void)upload;
	if (!*state) { /* first call: headers only */
		*state = s;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* a body: ignored */
		return MHD_YES;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return text_reply(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "only GET and HEAD\n");
	if (strcmp(url, "/metrics"))
		return text_reply(c, MHD_HTTP_NOT_FOUND,
				  "not found: the metrics are at /metrics\n");
	char *out = NULL, err[512] = "";
	size_t len = 0;
	pthread_mutex_lock(&s->mu);
	int rc = shval_metrics_render(s->segs, s->nseg, &out, &len, err,
				      sizeof err);
	pthread_mutex_unlock(&s->mu);
	if (rc) {
		char msg[600];
		snprintf(msg, sizeof msg, "shval serve: %s\n", err);
		return text_reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, msg);
	}
	return reply(c, MHD_HTTP_OK, out, len,
		     "text/plain; version=0.0.4; charset=utf-8");
}

/* "HOST:PORT" (IPv4 dotted quad, or "[v6]:PORT") into *ss. */
static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof *ss);
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -1;
	char *end;
	errno = 0;
	long port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 0 || port > 65535)
		return -1;
	char host[64];
	size_t hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || s[hl - 1] != ']' || hl - 2 >= sizeof host)
			return -1;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = 0;
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? 0 : -1;
	}
	if (hl >= sizeof host)
		return -1;
	memcpy(host, s, hl);
	host[hl] = 0;
	struct sockaddr_in *a = (struct sockaddr_in *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

int shval_cmd_serve(int argc, char **argv)
{
	const char *listen = NULL;
	int nseg = 0;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0)
			return shval_ext_help("serve");
		if (strcmp(argv[i], "--listen") == 0) {
			if (i + 1 >= argc)
				return shval_ext_usage(
					"serve", "--listen needs HOST:PORT");
			listen = argv[++i];
		} else if (strncmp(argv[i], "--listen=", 9) == 0) {
			listen = argv[i] + 9;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			return shval_ext_usage("serve", "unknown option '%s'",
					       argv[i]);
		} else {
			argv[nseg++] = argv[i];
		}
	}
	if (nseg == 0)
		return shval_ext_usage("serve", "missing SEG");
	if (!listen)
		listen = "127.0.0.1:9464";
	struct sockaddr_storage ss;
	if (parse_listen(listen, &ss))
		return shval_ext_usage("serve",
				       "bad --listen '%s' (want ADDRESS:PORT, "
				       "e.g. 127.0.0.1:9464 or [::1]:9464)",
				       listen);
	struct served s = { .nseg = nseg };
	pthread_mutex_init(&s.mu, NULL);
	s.segs = calloc((size_t)nseg, sizeof *s.segs);
	if (!s.segs || shval_metrics_open("serve", nseg, argv, s.segs)) {
		free(s.segs);
		return 1;
	}
	/* the daemon's thread inherits this mask: signals come to sigwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, 0, NULL, NULL, handle, &s, MHD_OPTION_SOCK_ADDR,
		(struct sockaddr *)&ss, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)30, MHD_OPTION_END);
	int rc = 0;
	if (!d) {
		fprintf(stderr, "shval: serve: cannot listen on %s: %s\n",
			listen, strerror(errno ? errno : EADDRINUSE));
		rc = 1;
	} else {
		const union MHD_DaemonInfo *pi =
			MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
		char host[64];
		if (ss.ss_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((struct sockaddr_in6 *)&ss)->sin6_addr,
				  host, sizeof host);
		else
			inet_ntop(AF_INET,
				  &((struct sockaddr_in *)&ss)->sin_addr, host,
				  sizeof host);
		printf(ss.ss_family == AF_INET6
			       ? "listening on http://[%s]:%u/metrics\n"
			       : "listening on http://%s:%u/metrics\n",
		       host, pi ? (unsigned)pi->port : 0u);
		fflush(stdout);
		int sig = 0;
		sigwait(&set, &sig);
		MHD_stop_daemon(d);
	}
	for (int i = 0; i < nseg; i++)
		shval_seg_close(s.segs[i]);
	free(s.segs);
	pthread_mutex_destroy(&s.mu);
	return rc;
}
