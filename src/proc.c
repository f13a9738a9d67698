/*
 * src/proc.c — what /proc tells about other processes: is a process (or
 * the process of a thread) still alive, the same one (start time), and
 * does it map a segment file.  Every answer errs towards "alive": a process
 * wrongly taken for dead would have its locks or its attach slot taken
 * over while it still uses them.  No locks.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"

/* Start time of a process (field 22 of /proc/PID/stat), 0 if unknown. */
uint64_t shval__proc_start_time(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p)
		return 0;
	/* after ") " come fields 3.. ; starttime is field 22 */
	int field = 2;
	for (p++; *p && field < 21; p++)
		if (*p == ' ')
			field++;
	return strtoull(p, NULL, 10);
}

/* Has the process exited (a zombie its parent has not reaped yet)? */
static bool proc_zombie(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* state is the field after ") " */
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

/* Is the process that claimed a slot still the same living process? */
bool shval__proc_alive(pid_t pid, uint64_t start_time)
{
	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno == ESRCH)
		return false;
	if (proc_zombie(pid))
		return false; /* killed, not yet reaped: gone for our purposes */
	if (start_time != 0) {
		uint64_t now = shval__proc_start_time(pid);
		if (now != 0 && now != start_time)
			return false; /* the pid was reused */
	}
	return true;
}

/* The thread group (process) of thread tid: > 0, 0 when it cannot be
 * told (then the caller assumes alive), -1 when there is no such thread
 * or it is a zombie. */
pid_t shval__tid_process(pid_t tid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? -1 : 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return n < 0 && errno == ESRCH ? -1 : 0;
	buf[n] = 0;
	const char *st = strstr(buf, "\nState:\t");
	if (st && (st[8] == 'Z' || st[8] == 'X'))
		return -1;
	const char *tg = strstr(buf, "\nTgid:\t");
	return tg ? (pid_t)atoi(tg + 7) : 0;
}

/* Does process pid map the segment file (device and inode)?  true when it
 * cannot be told. */
bool shval__proc_maps(pid_t pid, dev_t dev, ino_t ino)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return errno != ENOENT && errno != ESRCH;
	char line[SHVAL__PATH_MAX + 256]; /* a maps line: fields and a path */
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		unsigned maj, min;
		unsigned long long inode;
		/* start-end perms offset MAJ:MIN inode path */
		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &maj, &min,
			   &inode) == 3 &&
		    inode == (unsigned long long)ino && maj == major(dev) &&
		    min == minor(dev))
			found = true;
	}
	fclose(f);
	return found;
}
