/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mountinfo.h - the one /proc/<pid>/mountinfo parser of agent and CLI.
 *
 * A line (proc(5)):
 *   36 35 98:0 /root /mnt/a\040b rw,noatime master:1 - ext3 /dev/root rw
 *   id parent maj:min root mount-point options [optional fields...] -
 *   fstype source super-options
 * The optional fields vary in number and end at a lone "-". The kernel
 * escapes space, tab, newline and backslash in paths as \ooo (\040 ...);
 * parsed paths come back unescaped. Mount points are found from the file,
 * never assumed: hybrid hosts mount cgroup v2 at /sys/fs/cgroup/unified next
 * to v1 hierarchies (fstype "cgroup"), pure v2 hosts at /sys/fs/cgroup.
 */
#ifndef NM_LIB_MOUNTINFO_H
#define NM_LIB_MOUNTINFO_H

#include <stddef.h>
#include <stdio.h>

#define NM_MOUNTINFO_SELF "/proc/self/mountinfo"

struct nm_mountinfo {
	unsigned int mount_id;
	unsigned int parent_id;
	unsigned int major, minor;
	/* All point into the parsed line. */
	const char *root;        /* unescaped */
	const char *mount_point; /* unescaped */
	const char *options;
	const char *fstype;      /* "cgroup2", "bpf", ... */
	const char *source;      /* unescaped */
	const char *super_options;
};

/*
 * Parses one line in place (it is split and unescaped; a trailing newline is
 * ignored). 0, or -EINVAL for a line that is not in mountinfo's shape.
 */
int nm_mountinfo_parse_line(char *line, struct nm_mountinfo *out);

/*
 * The mount point of the first mount of file system type fstype (exact:
 * "cgroup" does not match "cgroup2"), read from f, or from path (NULL =
 * NM_MOUNTINFO_SELF). 0, -ENOENT when there is none, -ENAMETOOLONG when it
 * does not fit buf, -errno when the file cannot be read. Malformed lines are
 * skipped.
 */
int nm_mountinfo_find_fp(FILE *f, const char *fstype, char *buf, size_t len);
int nm_mountinfo_find(const char *path, const char *fstype, char *buf,
		      size_t len);

/* cgroup v2's mount point: nm_mountinfo_find(NULL, "cgroup2", ...). */
int nm_cgroup2_mount_point(char *buf, size_t len);

#endif
