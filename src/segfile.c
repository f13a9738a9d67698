/*
 * src/segfile.c — segment names and the files under them: parsing a
 * segment name into its kind and path, the checks that a file: path leads
 * through no directory someone else controls, creating a segment's file
 * unnamed and giving it its name (the race-free creation seg.c describes),
 * backing or checking the holes of a sparse copy, and unlinking by name.
 * Opening, mapping and the segment lock are seg.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "internal.h"

#define SHM_DIR "/dev/shm"

/* ---- names ---- */

int shval__seg_parse_name(const char *name, int *kind, char *path, size_t cap)
{
	if (!name) {
		*kind = SHVAL__SEG_ANON;
		path[0] = 0;
		return 0;
	}
	if (strncmp(name, "file:", 5) == 0) {
		const char *p = name + 5;
		size_t n = strlen(p);
		if (n == 0)
			return shval__failf(
				NULL, SHVAL_EBADNAME,
				"bad segment name \"%s\": empty path "
				"after file:",
				name);
		if (n >= PATH_MAX)
			return shval__failf(
				NULL, SHVAL_EBADNAME,
				"bad segment name \"file:%.32s...\": path "
				"of %zu bytes is too long (the limit is "
				"%d bytes, PATH_MAX - 1)",
				p, n, PATH_MAX - 1);
		if (p[n - 1] == '/')
			return shval__failf(
				NULL, SHVAL_EBADNAME,
				"bad segment name \"%s\": path names a directory",
				name);
		*kind = SHVAL__SEG_FILE;
		memcpy(path, p, n + 1);
		return 0;
	}
	if (name[0] != '/')
		return shval__failf(
			NULL, SHVAL_EBADNAME,
			"bad segment name \"%s\": must start with \"/\" "
			"(shared memory) or \"file:\"",
			name);
	size_t n = strlen(name + 1);
	if (n == 0 || n > 200)
		return shval__failf(
			NULL, SHVAL_EBADNAME,
			"bad segment name \"%s\": 1 to 200 characters "
			"after the \"/\"",
			name);
	if (strcmp(name, "/.") == 0 || strcmp(name, "/..") == 0)
		return shval__failf(NULL, SHVAL_EBADNAME,
				    "bad segment name \"%s\"", name);
	for (const char *p = name + 1; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-'))
			return shval__failf(
				NULL, SHVAL_EBADNAME,
				"bad segment name \"%s\": character "
				"0x%02x at position %d (allowed: "
				"A-Z a-z 0-9 . _ -)",
				name, (unsigned char)c, (int)(p - name));
	}
	*kind = SHVAL__SEG_SHM;
	snprintf(path, cap, "%s%s", SHM_DIR, name);
	return 0;
}

/* ---- paths through directories others control ---- */

/* The directory of path: what comes before its last '/' ("/" for a file
 * in the root, "." for a name without a '/'). */
static void dir_of(const char *path, char dir[SHVAL__PATH_MAX])
{
	snprintf(dir, SHVAL__PATH_MAX, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, SHVAL__PATH_MAX, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
}

/* Is the directory st (at path p) one that only the caller or root
 * controls?  Like OpenSSH's StrictModes: owned by the caller or by root,
 * and not writable by group or others unless sticky (/tmp, /dev/shm: there
 * nobody can rename or remove another's entries).  Stricter than "unless
 * the caller owns it": a group-writable directory of the caller's own
 * still lets the group swap its entries. */
static int dir_safe(const char *name, const char *p, const struct stat *st)
{
	uid_t me = geteuid();
	if (st->st_uid != me && st->st_uid != 0)
		return shval__failf(NULL, SHVAL_EFOREIGN,
				    "segment %s: directory %s on its path "
				    "belongs to uid %u, who could redirect it "
				    "(pass SHVAL_FOREIGN to open it anyway)",
				    name, p, (unsigned)st->st_uid);
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX))
		return shval__failf(
			NULL, SHVAL_EFOREIGN,
			"segment %s: directory %s on its path is "
			"writable by %s (mode %04o) and not sticky: "
			"others could redirect it (pass "
			"SHVAL_FOREIGN to open it anyway)",
			name, p,
			(st->st_mode & S_IWOTH) ? "others" : "its group",
			(unsigned)(st->st_mode & 07777));
	return 0;
}

/* A file: path must not lead through directories that someone else
 * could change under us (O_NOFOLLOW covers only the last component):
 * every symbolic link among the directories as written must belong to
 * the caller or root, and every directory of the resolved path, from "/"
 * down, must pass dir_safe.  Once that holds nobody else can swap a
 * component, so the check and the open that follows do not race. */
int shval__seg_check_dirs(const char *name, const char *path)
{
	char dir[SHVAL__PATH_MAX];
	dir_of(path, dir);
	struct stat st;
	/* the components as written: links */
	for (char *q = dir + 1;; q++) {
		if (*q != '/' && *q != 0)
			continue;
		char c = *q;
		*q = 0;
		if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode) &&
		    st.st_uid != geteuid() && st.st_uid != 0) {
			int r = shval__failf(
				NULL, SHVAL_EFOREIGN,
				"segment %s: %s on its path is a symbolic "
				"link of uid %u (pass SHVAL_FOREIGN to open it "
				"anyway)",
				name, dir, (unsigned)st.st_uid);
			*q = c;
			return r;
		}
		*q = c;
		if (!c)
			break;
	}
	/* the directories as resolved, from the root down */
	char *real = realpath(dir, NULL);
	if (!real)
		return shval__failf(NULL, -errno,
				    "segment %s: directory %s: %s", name, dir,
				    strerror(errno));
	int r = 0;
	for (char *q = real + 1; r == 0; q++) {
		if (*q != '/' && *q != 0)
			continue;
		char c = *q;
		*q = 0;
		const char *p = real[0] ? real : "/";
		if (stat(p, &st) != 0)
			r = shval__failf(NULL, -errno,
					 "segment %s: directory %s: %s", name,
					 p, strerror(errno));
		else
			r = dir_safe(name, p, &st);
		*q = c;
		if (!c)
			break;
	}
	free(real);
	return r;
}

/* Create the file of a named segment: returns an unnamed fd in *fd, and
 * in *tmp a temporary name to remove after linking, if one was needed. */
int shval__seg_create_unnamed(const char *path, unsigned mode, int *fd,
			      char *tmp, size_t tmpcap)
{
	char dir[SHVAL__PATH_MAX];
	dir_of(path, dir);
	tmp[0] = 0;
	*fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
	if (*fd < 0 &&
	    (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		int n = snprintf(tmp, tmpcap, "%s/.shvaltmp.%d.%lx", dir,
				 (int)getpid(), (unsigned long)shval__now_ns());
		if (n < 0 || (size_t)n >= tmpcap)
			return -ENAMETOOLONG;
		*fd = open(tmp,
			   O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW,
			   mode);
	}
	if (*fd < 0)
		return -errno;
	if (fchmod(*fd, mode) !=
	    0) /* exactly the mode asked for, not umask'd */
		return -errno;
	return 0;
}

int shval__seg_give_name(int fd, const char *tmp, const char *path)
{
	int r;
	if (tmp[0]) {
		r = link(tmp, path);
		int e = errno;
		unlink(tmp);
		return r == 0 ? 0 : -e;
	}
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	r = linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
	return r == 0 ? 0 : -errno;
}

const char *shval__file_kind(mode_t m)
{
	return S_ISFIFO(m)   ? "FIFO"
	       : S_ISDIR(m)  ? "directory"
	       : S_ISCHR(m)  ? "character device"
	       : S_ISBLK(m)  ? "block device"
	       : S_ISSOCK(m) ? "socket"
	       : S_ISLNK(m)  ? "symbolic link"
			     : "special file";
}

/* A writable open backs the whole file, as creation and growth do: a
 * segment file copied sparsely (cp, rsync -S, a restore) has holes below
 * its size, and a write there on a full file system would raise SIGBUS
 * instead of failing.  fallocate(2) itself, not posix_fallocate: glibc's
 * emulation, where the file system has no fallocate, writes zero bytes
 * into blocks and could race with a writer of the live segment; there we
 * cannot do better than before and go on.  Blocks already there are left
 * as they are (mode 0 does not change the size or the data). */
int shval__seg_back_whole(shval_seg *seg, const struct stat *st)
{
	if (st->st_size <= 0)
		return 0;
	int r;
	do
		r = fallocate(seg->fd, 0, 0, st->st_size);
	while (r != 0 && errno == EINTR);
	if (r == 0 || errno == EOPNOTSUPP || errno == ENOSYS || errno == ENODEV)
		return 0;
	return shval__failf(NULL, -errno,
			    "segment %s: backing its %lld bytes (holes in a "
			    "sparse copy?): %s",
			    seg->name[0] ? seg->name : "(anonymous)",
			    (long long)st->st_size, strerror(errno));
}

/* A read-only open cannot back the file.  On tmpfs even a read of a hole
 * takes a page of the file system (shared mappings get no zero page), so
 * a sparse copy there is refused when the file system has less room than
 * its holes (best effort: checked once, at open). */
int shval__seg_holes_readable(shval_seg *seg, const struct stat *st)
{
	uint64_t have = (uint64_t)st->st_blocks * 512;
	if (st->st_size <= 0 || have >= (uint64_t)st->st_size)
		return 0;
	struct statfs fs;
	if (fstatfs(seg->fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC)
		return 0;
	uint64_t holes = (uint64_t)st->st_size - have;
	uint64_t room = (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize;
	if (room >= holes)
		return 0;
	return shval__failf(
		NULL, -ENOSPC,
		"segment %s: %llu bytes of it are holes (a sparse "
		"copy?) and its tmpfs has %llu bytes free: reading "
		"them would raise SIGBUS (a writable open with room "
		"backs them)",
		seg->name[0] ? seg->name : "(anonymous)",
		(unsigned long long)holes, (unsigned long long)room);
}

/* Does path name a shval segment (any format version or byte order)?
 * 0, or an error with its message; *st: the file checked. */
static int is_segment(const char *name, const char *path, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
				    O_NOCTTY);
	if (fd < 0)
		return shval__failf(NULL, -errno,
				    "unlink %s: cannot check that it is a "
				    "shval segment: %s (force to remove it "
				    "anyway)",
				    name, strerror(errno));
	uint64_t magic = 0;
	int r = 0;
	if (fstat(fd, st) != 0)
		r = -errno;
	else if (!S_ISREG(st->st_mode))
		r = shval__failf(NULL, SHVAL_ECORRUPT,
				 "unlink %s: it is a %s, not a shval segment "
				 "(force to remove it anyway)",
				 name, shval__file_kind(st->st_mode));
	else if (pread(fd, &magic, sizeof magic, 0) != sizeof magic ||
		 (magic != SHVAL__MAGIC && magic != SHVAL__MAGIC_SWAPPED))
		r = shval__failf(NULL, SHVAL_ECORRUPT,
				 "unlink %s: not a shval segment (%lld bytes, "
				 "magic 0x%016llx; force to remove it anyway)",
				 name, (long long)st->st_size,
				 (unsigned long long)magic);
	close(fd);
	return r;
}

SHVAL_API int shval_seg_unlink_ex(const char *name, unsigned flags)
{
	shval__clear_err(NULL);
	if (flags & ~(SHVAL_UNLINK_FORCE | SHVAL_FOREIGN))
		return shval__failf(
			NULL, -EINVAL,
			"shval_seg_unlink_ex: unknown flag bits "
			"0x%x",
			flags & ~(SHVAL_UNLINK_FORCE | SHVAL_FOREIGN));
	if (shval__r_is_name(name))
		return shval__r_seg_unlink(name);
	int kind = SHVAL__SEG_ANON;
	char path[SHVAL__PATH_MAX];
	int r = shval__seg_parse_name(name, &kind, path, sizeof path);
	if (r)
		return r;
	if (kind == SHVAL__SEG_ANON)
		return shval__failf(
			NULL, SHVAL_EBADNAME,
			"an anonymous segment has no name to unlink");
	if (kind == SHVAL__SEG_FILE && !(flags & SHVAL_FOREIGN) &&
	    (r = shval__seg_check_dirs(name, path)) != 0)
		return r;
	struct stat st, now;
	if (lstat(path, &now) != 0)
		return shval__failf(NULL, -errno, "unlink %s: %s", name,
				    strerror(errno));
	/* A symbolic link is removed as it is (its target is untouched). */
	if (!(flags & SHVAL_UNLINK_FORCE) && !S_ISLNK(now.st_mode)) {
		if ((r = is_segment(name, path, &st)) != 0)
			return r;
		if (lstat(path, &now) != 0 || now.st_dev != st.st_dev ||
		    now.st_ino != st.st_ino)
			return shval__failf(NULL, -EAGAIN,
					    "unlink %s: the name changed while "
					    "it was checked",
					    name);
	}
	if (unlink(path) != 0)
		return shval__failf(NULL, -errno, "unlink %s: %s", name,
				    strerror(errno));
	return 0;
}

SHVAL_API int shval_seg_unlink(const char *name)
{
	return shval_seg_unlink_ex(name, 0);
}
