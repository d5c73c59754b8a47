// SPDX-License-Identifier: Apache-2.0
/*
 * mountinfo.c - /proc/<pid>/mountinfo parsing (mountinfo.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/mountinfo.h"

static bool is_octal(char c)
{
	return c >= '0' && c <= '7';
}

/* \ooo -> the byte; anything else is kept as it is. */
static void unescape_octal(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && is_octal(s[2]) &&
		    is_octal(s[3])) {
			*out++ = (char)(((s[1] - '0') << 6) | ((s[2] - '0') << 3) |
					(s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

static int parse_uint(const char *s, char stop, unsigned int *out,
		      const char **end)
{
	char *e;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &e, 10);
	if (errno || v > 0xffffffffUL || *e != stop)
		return -EINVAL;
	*out = (unsigned int)v;
	if (end)
		*end = e;
	return 0;
}

int nm_mountinfo_parse_line(char *line, struct nm_mountinfo *out)
{
	char *tok[6], *save = NULL, *t;
	const char *dev;
	int n;

	memset(out, 0, sizeof(*out));
	line[strcspn(line, "\n")] = '\0';
	/* Fields are separated by single spaces; escaped paths hold none. */
	for (n = 0; n < 6; n++) {
		tok[n] = strtok_r(n ? NULL : line, " ", &save);
		if (!tok[n])
			return -EINVAL;
	}
	if (parse_uint(tok[0], '\0', &out->mount_id, NULL) ||
	    parse_uint(tok[1], '\0', &out->parent_id, NULL) ||
	    parse_uint(tok[2], ':', &out->major, &dev) ||
	    parse_uint(dev + 1, '\0', &out->minor, NULL))
		return -EINVAL;
	/* Optional fields up to the separator. */
	while ((t = strtok_r(NULL, " ", &save)) && strcmp(t, "-") != 0)
		;
	if (!t)
		return -EINVAL;
	out->fstype = strtok_r(NULL, " ", &save);
	out->source = strtok_r(NULL, " ", &save);
	out->super_options = strtok_r(NULL, " ", &save);
	if (!out->fstype || !out->source || !out->super_options)
		return -EINVAL;
	unescape_octal(tok[3]);
	unescape_octal(tok[4]);
	unescape_octal((char *)out->source);
	out->root = tok[3];
	out->mount_point = tok[4];
	out->options = tok[5];
	return 0;
}

int nm_mountinfo_find_fp(FILE *f, const char *fstype, char *buf, size_t len)
{
	struct nm_mountinfo m;
	char *line = NULL;
	size_t cap = 0;
	int ret = -ENOENT;

	while (getline(&line, &cap, f) > 0) {
		if (nm_mountinfo_parse_line(line, &m) ||
		    strcmp(m.fstype, fstype) != 0)
			continue;
		if (strlen(m.mount_point) >= len) {
			ret = -ENAMETOOLONG;
		} else {
			strcpy(buf, m.mount_point);
			ret = 0;
		}
		break;
	}
	if (ret == -ENOENT && ferror(f))
		ret = -EIO;
	free(line);
	return ret;
}

int nm_mountinfo_find(const char *path, const char *fstype, char *buf,
		      size_t len)
{
	FILE *f;
	int ret;

	f = fopen(path ? path : NM_MOUNTINFO_SELF, "re");
	if (!f)
		return -errno;
	ret = nm_mountinfo_find_fp(f, fstype, buf, len);
	fclose(f);
	return ret;
}

int nm_cgroup2_mount_point(char *buf, size_t len)
{
	return nm_mountinfo_find(NULL, "cgroup2", buf, len);
}
