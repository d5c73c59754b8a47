// SPDX-License-Identifier: Apache-2.0
/*
 * pins.c - pin and run-state paths, and removing a pin directory (pins.h).
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>

#include "lib/pins.h"

bool nm_instance_valid(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > NM_INSTANCE_MAX || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		      ch == '.'))
			return false;
	}
	return true;
}

static int join(const char *base, const char *instance, const char *file,
		char *buf, size_t len)
{
	int n;

	if (!instance)
		instance = NM_INSTANCE_DEFAULT;
	if (!nm_instance_valid(instance))
		return -EINVAL;
	if (file && (!file[0] || strchr(file, '/')))
		return -EINVAL;
	if (file)
		n = snprintf(buf, len, "%s/%s/%s", base, instance, file);
	else
		n = snprintf(buf, len, "%s/%s", base, instance);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int nm_pin_path(const char *base, const char *instance, const char *file,
		char *buf, size_t len)
{
	return join(base ? base : NM_PIN_BASE, instance, file, buf, len);
}

int nm_run_path(const char *base, const char *instance, const char *file,
		char *buf, size_t len)
{
	return join(base ? base : NM_RUN_DIR, instance, file, buf, len);
}

/*
 * Dropping the last reference to a link detaches it too, but bpffs drops a
 * pin's reference only after an RCU grace period and a workqueue pass: the
 * hook could still redirect for a moment after the pin is gone.
 * BPF_LINK_DETACH (5.9) makes it immediate.
 */
static void detach_link(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return;
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	bpf_link_detach(fd);
	close(fd);
}

int nm_pins_remove(const char *base, const char *instance)
{
	char dir[PATH_MAX];
	struct dirent *de;
	int ret, pass;
	DIR *d;

	ret = nm_pin_path(base, instance, NULL, dir, sizeof(dir));
	if (ret)
		return ret;
	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	/* Links first, so the programs leave the hooks before maps go. */
	for (pass = 0; pass < 2; pass++) {
		rewinddir(d);
		while ((de = readdir(d))) {
			bool is_link = strncmp(de->d_name, NM_PIN_LINK_PREFIX,
					       strlen(NM_PIN_LINK_PREFIX)) == 0;

			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0 ||
			    is_link != (pass == 0))
				continue;
			if (is_link)
				detach_link(dir, de->d_name);
			if (unlinkat(dirfd(d), de->d_name, 0) && errno != ENOENT &&
			    !ret)
				ret = -errno;
		}
	}
	closedir(d);
	if (rmdir(dir) && errno != ENOENT && !ret)
		ret = -errno;
	return ret;
}
