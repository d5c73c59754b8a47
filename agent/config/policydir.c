// SPDX-License-Identifier: Apache-2.0
/*
 * policydir.c - the policy-directory source (policydir.h): watch policyDir
 * with inotify, and publish the set in force for `nodemesh policy` to read
 * while the agent runs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/policydir.h"
#include "lib/file.h"
#include "lib/pins.h"
#include "lib/spiffe.h" /* NM_PATH_MAX */

int nm_policydir_watch(const char *dir)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd < 0)
		return -errno;
	/* Editors and kubelet's ConfigMap updates write a temporary file and
	 * rename it into place (IN_MOVED_TO); others write in place. */
	if (inotify_add_watch(fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO |
				      IN_MOVED_FROM | IN_CREATE | IN_DELETE |
				      IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

bool nm_policydir_drain(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;

	while (read(fd, buf, sizeof(buf)) > 0)
		any = true;
	return any;
}

bool nm_policydir_is_policy_file(const char *name)
{
	size_t n = strlen(name);

	if (name[0] == '.')
		return false;
	return (n > 5 && !strcmp(name + n - 5, ".yaml")) ||
	       (n > 4 && !strcmp(name + n - 4, ".yml")) ||
	       (n > 5 && !strcmp(name + n - 5, ".json"));
}

/* Removes the regular files of dir (not recursive). */
static void clear_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static int copy_file(const char *from, int to_dir, const char *name)
{
	char *buf = NULL, tmp[NM_PATH_MAX];
	size_t len = 0;
	int fd, ret;

	ret = nm_file_read(from, 0, &buf, &len, NULL);
	if (ret)
		return ret;
	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	fd = openat(to_dir, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (write(fd, buf, len) != (ssize_t)len)
		ret = -EIO;
	close(fd);
	if (!ret && renameat(to_dir, tmp, to_dir, name))
		ret = -errno;
out:
	free(buf);
	return ret;
}

int nm_policydir_publish(const char *instance, const char *dir)
{
	char run[NM_PATH_MAX], path[NM_PATH_MAX];
	struct dirent *de;
	DIR *d = NULL;
	int out, ret = 0;

	ret = nm_run_path(NULL, instance, "policies", run, sizeof(run));
	if (ret)
		return ret;
	if (mkdir(run, 0755) && errno != EEXIST)
		return -errno;
	clear_dir(run);
	if (!dir || !dir[0])
		return 0;
	d = opendir(dir);
	if (!d)
		return -errno;
	out = open(run, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (out < 0) {
		ret = -errno;
		goto out;
	}
	while ((de = readdir(d)) && !ret) {
		if (!nm_policydir_is_policy_file(de->d_name))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir,
				     de->d_name) >= sizeof(path))
			continue;
		ret = copy_file(path, out, de->d_name);
	}
	close(out);
out:
	closedir(d);
	return ret;
}

void nm_policydir_unpublish(const char *instance)
{
	char run[NM_PATH_MAX];

	if (nm_run_path(NULL, instance, "policies", run, sizeof(run)))
		return;
	clear_dir(run);
	rmdir(run);
}
