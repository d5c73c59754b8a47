// SPDX-License-Identifier: Apache-2.0
/*
 * maps.c - `nodemesh maps` and `nodemesh cleanup`. They work from the pin
 * directory alone (lib/pins.h), so they work while the agent is down.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>

#include "lib/pins.h"
#include "commands.h"

struct instance_args {
	const char *instance;
	const char *pin_base;
};

/* 0, NM_EXIT_USAGE, or -1 when --help was printed. */
static int parse_instance_args(const struct nm_cli *cli, int argc, char **argv,
			       struct instance_args *a, const char *usage)
{
	static const struct option opts[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "pin-dir", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;

	a->instance = NM_INSTANCE_DEFAULT;
	a->pin_base = NM_PIN_BASE;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":i:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			a->instance = optarg;
			break;
		case 'P':
			a->pin_base = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return -1;
		default:
			return nm_cli_getopt_error(cli, usage, c, argv);
		}
	}
	if (optind != argc)
		return nm_cli_usage_error(cli, usage, "%s: unexpected argument \"%s\"",
					  argv[0], argv[optind]);
	if (!nm_instance_valid(a->instance))
		return nm_cli_usage_error(cli, usage,
					  "%s: bad instance name \"%s\" (up to %d of A-Z a-z 0-9 . _ -)",
					  argv[0], a->instance, NM_INSTANCE_MAX);
	return 0;
}

/* Counts entries by walking keys: fine for a CLI, never on a data path. */
static long count_entries(int fd, unsigned int key_size)
{
	unsigned char key[256], next[256];
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

/* Array-like maps have every slot "present": no count is meaningful. */
static bool countable(enum bpf_map_type t)
{
	return t != BPF_MAP_TYPE_ARRAY && t != BPF_MAP_TYPE_PERCPU_ARRAY &&
	       t != BPF_MAP_TYPE_RINGBUF && t != BPF_MAP_TYPE_SK_STORAGE;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The names in dir starting with prefix, sorted (*out, free each and the
 * array). The count or -errno.
 */
static int list_pins(const char *dir, const char *prefix, char ***out)
{
	char **v = NULL, **nv;
	struct dirent *de;
	int n = 0;
	DIR *d;

	*out = NULL;
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv || !(nv[n] = strdup(de->d_name))) {
			v = nv ? nv : v;
			while (n--)
				free(v[n]);
			free(v);
			closedir(d);
			return -ENOMEM;
		}
		v = nv;
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_names);
	*out = v;
	return n;
}

int nm_cmd_maps(const struct nm_cli *cli, int argc, char **argv)
{
	static const char usage[] =
		"Usage: nodemesh maps [--instance NAME] [--pin-dir DIR] [--json]\n"
		"Lists the instance's pinned maps (DIR/NAME/nm_*, DIR default "
		NM_PIN_BASE ")\nwith type, entries and capacity. Only reads.\n";
	struct instance_args a;
	char dir[PATH_MAX];
	char **names = NULL;
	json_t *arr = NULL;
	int ret, n;

	ret = parse_instance_args(cli, argc, argv, &a, usage);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	ret = nm_pin_path(a.pin_base, a.instance, NULL, dir, sizeof(dir));
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s/%s: %s", a.pin_base,
				   a.instance, strerror(-ret));
	n = list_pins(dir, NM_PIN_MAP_PREFIX, &names);
	if (n == -ENOENT)
		return nm_cli_fail(cli, NM_EXIT_FAIL,
				   "maps: %s: no such directory (instance \"%s\" has no pins: never started, or cleaned up)",
				   dir, a.instance);
	if (n < 0)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s: %s", dir, strerror(-n));
	if (cli->json)
		arr = json_array();
	else
		printf("%-18s %-14s %10s %10s\n", "MAP", "TYPE", "ENTRIES", "MAX");
	for (int i = 0; i < n; i++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		const char *type;
		char path[PATH_MAX + 256];
		long entries;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		fd = bpf_obj_get(path);
		if (fd < 0) {
			ret = nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s: %s", path,
					  strerror(errno));
			goto out;
		}
		if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
			ret = nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s: not a map (%s)",
					  path, strerror(errno));
			close(fd);
			goto out;
		}
		entries = countable(info.type) ? count_entries(fd, info.key_size) : -1;
		close(fd);
		type = libbpf_bpf_map_type_str(info.type);
		if (!type)
			type = "unknown";
		if (cli->json)
			json_array_append_new(arr, json_pack(
				"{s:s, s:I, s:s, s:I, s:I, s:o, s:I}",
				"name", names[i], "id", (json_int_t)info.id,
				"type", type,
				"key_size", (json_int_t)info.key_size,
				"value_size", (json_int_t)info.value_size,
				"entries", entries < 0 ? json_null() : json_integer(entries),
				"max_entries", (json_int_t)info.max_entries));
		else if (entries < 0)
			printf("%-18s %-14s %10s %10u\n", names[i], type, "-",
			       info.max_entries);
		else
			printf("%-18s %-14s %10ld %10u\n", names[i], type, entries,
			       info.max_entries);
	}
	if (cli->json) {
		ret = nm_cli_print_json(cli, arr);
		arr = NULL;
	}
out:
	json_decref(arr);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

int nm_cmd_cleanup(const struct nm_cli *cli, int argc, char **argv)
{
	static const char usage[] =
		"Usage: nodemesh cleanup [--instance NAME] [--pin-dir DIR] [--json]\n"
		"Detaches the instance's programs (its pinned links, at once) and removes\n"
		"its pinned maps and pin directory. Run it after the agent has stopped:\n"
		"until an agent starts again, meshed connections are no longer redirected.\n";
	struct instance_args a;
	char dir[PATH_MAX];
	bool existed;
	int ret;

	ret = parse_instance_args(cli, argc, argv, &a, usage);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	ret = nm_pin_path(a.pin_base, a.instance, NULL, dir, sizeof(dir));
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "cleanup: %s/%s: %s", a.pin_base,
				   a.instance, strerror(-ret));
	existed = access(dir, F_OK) == 0;
	ret = nm_pins_remove(a.pin_base, a.instance);
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "cleanup: %s: %s", dir,
				   strerror(-ret));
	if (cli->json)
		return nm_cli_print_json(cli, json_pack("{s:s, s:s, s:b}",
			"instance", a.instance, "dir", dir, "removed", existed));
	printf("%s: %s\n", dir, existed ? "removed" : "nothing to remove");
	return NM_EXIT_OK;
}
