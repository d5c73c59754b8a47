// SPDX-License-Identifier: Apache-2.0
/*
 * cgroup.c - a pod's cgroup from its UID (k8s.h), as the kubelet names it.
 *
 *   cgroupfs driver              systemd driver
 *   kubepods/pod<uid>            kubepods.slice/kubepods-pod<u>.slice
 *   kubepods/burstable/pod<uid>  kubepods.slice/kubepods-burstable.slice/
 *                                    kubepods-burstable-pod<u>.slice
 *   kubepods/besteffort/pod<uid> ...-besteffort... likewise
 *
 * (<u>: the uid with '_' for '-', since '-' separates systemd slice
 * levels; Guaranteed pods sit at the top level.) On cgroup v2 the tree is
 * under the v2 mount; on a v1 (hybrid) host the same relative tree appears
 * in the unified hierarchy, which is the one the datapath attaches to, so
 * one resolution relative to the v2 mount serves both. A kubelet
 * --cgroup-root (kind's "/kubelet", or "kubelet.slice") is the parent; the
 * systemd names then carry its prefix (kubelet-kubepods.slice, ...), which
 * is why the names are derived from the root's own name.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "k8s/k8s.h"

static bool is_dir(const char *p)
{
	struct stat st;

	return !stat(p, &st) && S_ISDIR(st.st_mode);
}

static int put(char *out, size_t len, const char *fmt, const char *a,
	       const char *b)
{
	int n = snprintf(out, len, fmt, a, b);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int nm_k8s_cgroup_root(const char *mnt, const char *parent, char *out,
		       size_t len)
{
	static const char *const names[] = { "kubepods.slice", "kubepods" };
	char base[NM_PATH_MAX];
	const char *leaf;
	int ret;

	while (parent && *parent == '/')
		parent++;
	ret = put(base, sizeof(base), parent && *parent ? "%s/%s" : "%s%s",
		  mnt, parent ? parent : "");
	if (ret)
		return ret;
	leaf = strrchr(base, '/');
	leaf = leaf ? leaf + 1 : base;
	/* The parent named is the kubepods root itself. */
	if (parent && *parent && is_dir(base) &&
	    (!strcmp(leaf, "kubepods") ||
	     (strlen(leaf) > 14 &&
	      !strcmp(leaf + strlen(leaf) - 14, "kubepods.slice"))))
		return put(out, len, "%s%s", base, "");
	for (unsigned int i = 0; i < 2; i++) {
		ret = put(out, len, "%s/%s", base, names[i]);
		if (ret)
			return ret;
		if (is_dir(out))
			return 0;
	}
	/* systemd with a --cgroup-root slice: "<prefix>-kubepods.slice". */
	if (parent && *parent && strlen(leaf) > 6 &&
	    !strcmp(leaf + strlen(leaf) - 6, ".slice")) {
		char pfx[NM_NAME_MAX * 2];

		snprintf(pfx, sizeof(pfx), "%.*s", (int)(strlen(leaf) - 6), leaf);
		ret = put(out, len, "%s/%s-kubepods.slice", base, pfx);
		if (!ret && is_dir(out))
			return 0;
	}
	out[0] = '\0';
	return -ENOENT;
}

int nm_k8s_cgroup_pod(const char *root, const char *uid, const char *qos,
		      char *out, size_t len)
{
	/* QoS classes in the kubelet's order of its own lookups. */
	static const char *const classes[] = { "", "burstable", "besteffort" };
	char u[NM_NAME_MAX], slice[NM_NAME_MAX * 2];
	const char *leaf = strrchr(root, '/');
	unsigned int order[3] = { 0, 1, 2 };
	bool systemd;
	size_t l;
	int ret;

	if (!uid[0] || strlen(uid) >= sizeof(u) || strchr(uid, '/') ||
	    strstr(uid, ".."))
		return -EINVAL;
	leaf = leaf ? leaf + 1 : root;
	l = strlen(leaf);
	systemd = l > 6 && !strcmp(leaf + l - 6, ".slice");
	if (systemd)
		snprintf(slice, sizeof(slice), "%.*s", (int)(l - 6), leaf);
	for (l = 0; uid[l]; l++)
		u[l] = uid[l] == '-' ? '_' : uid[l];
	u[l] = '\0';
	if (qos && !strcasecmp(qos, "Burstable")) {
		order[0] = 1;
		order[1] = 0;
	} else if (qos && !strcasecmp(qos, "BestEffort")) {
		order[0] = 2;
		order[2] = 0;
	}
	for (unsigned int i = 0; i < 3; i++) {
		const char *c = classes[order[i]];
		int n;

		if (systemd && !c[0])
			n = snprintf(out, len, "%s/%s-pod%s.slice", root, slice, u);
		else if (systemd)
			n = snprintf(out, len, "%s/%s-%s.slice/%s-%s-pod%s.slice",
				     root, slice, c, slice, c, u);
		else if (!c[0])
			n = snprintf(out, len, "%s/pod%s", root, uid);
		else
			n = snprintf(out, len, "%s/%s/pod%s", root, c, uid);
		if (n < 0 || (size_t)n >= len)
			return -ENAMETOOLONG;
		if (is_dir(out))
			return 0;
	}
	ret = -ENOENT;
	out[0] = '\0';
	return ret;
}
