// SPDX-License-Identifier: Apache-2.0
/*
 * cgroup.c - finding the cgroup v2 mount and turning cgroup directories into
 * the ids bpf_get_current_cgroup_id() reports (datapath.h).
 *
 * The mount is read from /proc/self/mountinfo rather than assumed: hybrid
 * hosts mount v2 at /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "lib/mountinfo.h"
#include "datapath/datapath.h"

int nm_cgroup2_mount(char *buf, size_t len)
{
	return nm_cgroup2_mount_point(buf, len);
}

int nm_cgroup_resolve(const char *path, char *buf, size_t len)
{
	char mnt[NM_PATH_MAX];
	int n, ret;

	if (!path || !*path)
		return -EINVAL;
	if (path[0] == '/') {
		n = snprintf(buf, len, "%s", path);
	} else {
		ret = nm_cgroup2_mount(mnt, sizeof(mnt));
		if (ret)
			return ret;
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		if (strcmp(path, ".") == 0)
			n = snprintf(buf, len, "%s", mnt);
		else
			n = snprintf(buf, len, "%s/%s", mnt, path);
	}
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

int nm_cgroup_id(const char *abs_path, uint64_t *id)
{
	/* The kernel's cgroup file handle is the 64-bit cgroup id (kernfs
	 * node id), the same value bpf_get_current_cgroup_id() returns; this is
	 * how the kernel selftests' get_cgroup_id() reads it. */
	struct {
		struct file_handle fh;
		unsigned char raw[sizeof(uint64_t)];
	} h;
	struct statfs sfs;
	int mount_id;

	if (statfs(abs_path, &sfs))
		return -errno;
	if (sfs.f_type != CGROUP2_SUPER_MAGIC)
		return -EMEDIUMTYPE;
	memset(&h, 0, sizeof(h));
	h.fh.handle_bytes = sizeof(uint64_t);
	if (name_to_handle_at(AT_FDCWD, abs_path, &h.fh, &mount_id, 0))
		return -errno;
	if (h.fh.handle_bytes != sizeof(uint64_t))
		return -EOVERFLOW;
	memcpy(id, h.fh.f_handle, sizeof(*id));
	return 0;
}

/*
 * The cgroup v2 id of the calling process ("0::/path" in /proc/self/cgroup),
 * so the state can refuse to mesh the agent's own cgroup. 0 or -errno.
 */
int nm_cgroup_self_id(uint64_t *id)
{
	char line[NM_PATH_MAX], path[NM_PATH_MAX];
	FILE *f = fopen("/proc/self/cgroup", "re");
	const char *rel;
	int ret = -ENOENT;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "0::", 3))
			continue;
		line[strcspn(line, "\n")] = '\0';
		/* The path is relative to the v2 mount, with a leading '/'. */
		rel = line + 3 + strspn(line + 3, "/");
		ret = nm_cgroup_resolve(*rel ? rel : ".", path, sizeof(path));
		if (!ret)
			ret = nm_cgroup_id(path, id);
		break;
	}
	fclose(f);
	return ret;
}
