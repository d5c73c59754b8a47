// SPDX-License-Identifier: Apache-2.0
/* mapinfo.c - fill and failed updates of pinned maps (mapinfo.h). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/mapinfo.h"

static const char *const map_names[NM_MAP__COUNT] = {
#define NM_MAP_NAME_STR(id, name) [id] = #name,
	NM_MAP_IDS(NM_MAP_NAME_STR)
#undef NM_MAP_NAME_STR
};

const char *nm_map_name(enum nm_map_id id)
{
	return (unsigned int)id < NM_MAP__COUNT ? map_names[id] : NULL;
}

int nm_map_id_of(const char *name)
{
	for (int i = 0; i < NM_MAP__COUNT; i++)
		if (strcmp(map_names[i], name) == 0)
			return i;
	return -ENOENT;
}

int64_t nm_map_count_entries(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	unsigned char *key = NULL, *next;
	const void *prev = NULL;
	int64_t n = 0;

	if (bpf_obj_get_info_by_fd(fd, &info, &len))
		return -errno;
	switch (info.type) {
	case BPF_MAP_TYPE_ARRAY:
	case BPF_MAP_TYPE_PERCPU_ARRAY:
		return info.max_entries;
	case BPF_MAP_TYPE_SK_STORAGE:
	case BPF_MAP_TYPE_RINGBUF:
	case BPF_MAP_TYPE_PERF_EVENT_ARRAY:
		return -1;
	default:
		break;
	}
	key = malloc(2 * (size_t)(info.key_size ? info.key_size : 1));
	if (!key)
		return -ENOMEM;
	next = key + info.key_size;
	/* Entries may come and go while we walk (LRU maps, sockops): the
	 * count is a snapshot, good for fill levels, not an exact figure. */
	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, info.key_size);
		prev = key;
		if (++n > (int64_t)info.max_entries)
			break; /* a walk restarted by deletions */
	}
	free(key);
	return n;
}

static int read_errors(const char *pin_dir, uint64_t *sum)
{
	char path[PATH_MAX];
	int ncpu = libbpf_num_possible_cpus(), fd, ret = 0;
	uint64_t *v;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	snprintf(path, sizeof(path), "%s/nm_map_errors", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	v = calloc(ncpu, sizeof(*v));
	if (!v) {
		close(fd);
		return -ENOMEM;
	}
	for (__u32 id = 0; id < NM_MAP__COUNT; id++) {
		if (bpf_map_lookup_elem(fd, &id, v)) {
			ret = -errno;
			break;
		}
		for (int c = 0; c < ncpu; c++)
			sum[id] += v[c];
	}
	free(v);
	close(fd);
	return ret;
}

int nm_map_info_read(const char *pin_dir, struct nm_map_info *out)
{
	uint64_t errs[NM_MAP__COUNT] = { 0 };
	char path[PATH_MAX];
	int ret;

	ret = read_errors(pin_dir, errs);
	for (int i = 0; i < NM_MAP__COUNT; i++) {
		struct nm_map_info *m = &out[i];
		struct bpf_map_info info = {};
		__u32 len = sizeof(info);
		int fd;

		memset(m, 0, sizeof(*m));
		m->name = map_names[i];
		m->kernel_errors = errs[i];
		m->entries = -1;
		snprintf(path, sizeof(path), "%s/%s", pin_dir, map_names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
			m->present = true;
			m->type = info.type;
			m->key_size = info.key_size;
			m->value_size = info.value_size;
			m->max_entries = info.max_entries;
			m->entries = nm_map_count_entries(fd);
		}
		close(fd);
	}
	return ret;
}
