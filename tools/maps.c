// SPDX-License-Identifier: Apache-2.0
/*
 * maps.c - `nodemesh maps`, `nodemesh cleanup` and `nodemesh version`.
 * They work from the pin directory alone, so they work while the agent is
 * down.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "datapath/datapath.h"
#include "nodemesh.h"

struct maps_args {
	const char *instance;
	bool json;
};

static int parse_instance_args(int argc, char **argv, struct maps_args *a,
			       const char *usage)
{
	static const struct option opts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int opt;

	a->instance = "default";
	a->json = false;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "i:jh", opts, NULL)) != -1) {
		switch (opt) {
		case 'i':
			a->instance = optarg;
			break;
		case 'j':
			a->json = true;
			break;
		case 'h':
			printf("%s", usage);
			return 1;
		default:
			fprintf(stderr, "%s", usage);
			return -EINVAL;
		}
	}
	if (optind != argc || strchr(a->instance, '/') || !a->instance[0]) {
		fprintf(stderr, "%s", usage);
		return -EINVAL;
	}
	return 0;
}

/* Counts entries by walking keys: fine for a CLI, never on a data path. */
static long count_entries(int fd, unsigned int key_size)
{
	unsigned char key[64], next[64];
	void *prev = NULL;
	long n = 0;

	if (key_size > sizeof(key))
		return -1;
	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(key, next, key_size);
		prev = key;
		if (++n > 10000000)
			break;
	}
	return n;
}

int nm_cmd_maps(int argc, char **argv)
{
	static const char usage[] =
		"Usage: nodemesh maps [--instance NAME] [--json]\n"
		"Lists the instance's pinned maps with type, entries and capacity.\n";
	struct maps_args a;
	char dir[512];
	struct dirent *de;
	json_t *arr = NULL;
	DIR *d;
	int ret;

	ret = parse_instance_args(argc, argv, &a, usage);
	if (ret)
		return ret > 0 ? 0 : 2;
	snprintf(dir, sizeof(dir), "%s/%s", NM_PIN_BASE, a.instance);
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "nodemesh maps: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (a.json)
		arr = json_array();
	else
		printf("%-18s %-14s %10s %10s\n", "map", "type", "entries", "max");
	while ((de = readdir(d))) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		char path[800];
		long n;
		int fd;

		if (strncmp(de->d_name, "nm_", 3))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
			close(fd);
			continue;
		}
		n = info.type == BPF_MAP_TYPE_ARRAY ||
		    info.type == BPF_MAP_TYPE_RINGBUF ||
		    info.type == BPF_MAP_TYPE_SK_STORAGE ?
			    -1 : count_entries(fd, info.key_size);
		close(fd);
		if (a.json) {
			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I}",
				"name", de->d_name,
				"type", libbpf_bpf_map_type_str(info.type),
				"entries", (json_int_t)n,
				"max_entries", (json_int_t)info.max_entries));
		} else {
			printf("%-18s %-14s %10ld %10u\n", de->d_name,
			       libbpf_bpf_map_type_str(info.type), n,
			       info.max_entries);
		}
	}
	closedir(d);
	if (a.json) {
		json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	}
	return 0;
}

int nm_cmd_cleanup(int argc, char **argv)
{
	static const char usage[] =
		"Usage: nodemesh cleanup [--instance NAME] [--json]\n"
		"Detaches the instance's programs (unpins its links) and removes its\n"
		"pinned maps. Run it after the agent has stopped.\n";
	struct maps_args a;
	int ret;

	ret = parse_instance_args(argc, argv, &a, usage);
	if (ret)
		return ret > 0 ? 0 : 2;
	ret = nm_datapath_remove_pins(a.instance);
	if (a.json)
		printf("{\"instance\":\"%s\",\"removed\":%s,\"error\":\"%s\"}\n",
		       a.instance, ret ? "false" : "true", ret ? strerror(-ret) : "");
	else if (ret)
		fprintf(stderr, "nodemesh cleanup: %s/%s: %s\n", NM_PIN_BASE,
			a.instance, strerror(-ret));
	return ret && ret != -ENOENT ? 1 : 0;
}

int nm_cmd_version(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--json"))
		printf("{\"version\":\"%s\",\"abi\":%d}\n", NM_VERSION, NM_ABI_VERSION);
	else
		printf("nodemesh %s (map ABI %d)\n", NM_VERSION, NM_ABI_VERSION);
	return 0;
}
