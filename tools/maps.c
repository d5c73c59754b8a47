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

#include "lib/abidecode.h"
#include "lib/pins.h"
#include "lib/table.h"
#include "common.h"
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

static const char maps_usage[] =
	"Usage: nodemesh maps [--instance NAME] [--pin-dir DIR] [--json]\n"
	"       nodemesh maps dump NAME [--instance NAME] [--run-dir DIR] [--pin-dir DIR] [--json]\n"
	"Lists the instance's pinned maps (DIR/INSTANCE/nm_*, DIR default " NM_PIN_BASE ")\n"
	"with type, entries and capacity, or dumps one (NAME: nm_workloads or\n"
	"workloads) decoded by the nm_abi.h records, IDs named from the agent's\n"
	"run state while it has one. Reads the pins only: works while the agent\n"
	"is down.\n";

static bool percpu_type(unsigned int t)
{
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY ||
	       t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static int maps_dump(const struct nm_cli *cli, const struct nm_target *t,
		     const char *arg)
{
	char name[128], path[PATH_MAX], err[PATH_MAX + 256];
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	unsigned char *key = NULL, *next = NULL, *val = NULL;
	json_t *agent, *recs, *doc;
	const char *type;
	size_t vlen;
	int fd, ncpus = 1, ret = NM_EXIT_FAIL;
	bool percpu, listable, first = true;

	snprintf(name, sizeof(name), "%s%s",
		 strncmp(arg, NM_PIN_MAP_PREFIX, strlen(NM_PIN_MAP_PREFIX)) ?
			 NM_PIN_MAP_PREFIX : "", arg);
	fd = nm_pinned_map(t, name, path, sizeof(path));
	if (fd < 0)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps dump: %s: %s%s", path,
				   strerror(-fd), fd == -ENOENT ?
				   " (see `nodemesh maps` for the pinned maps)" : "");
	if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
		close(fd);
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps dump: %s: not a map (%s)", path,
				   strerror(errno));
	}
	percpu = percpu_type(info.type);
	if (percpu) {
		ncpus = libbpf_num_possible_cpus();
		if (ncpus <= 0)
			ncpus = 1;
	}
	vlen = percpu ? (size_t)((info.value_size + 7) & ~7u) * ncpus : info.value_size;
	key = calloc(1, info.key_size + 1);
	next = calloc(1, info.key_size + 1);
	val = calloc(1, vlen + 1);
	if (!key || !next || !val) {
		ret = nm_cli_fail(cli, NM_EXIT_FAIL, "maps dump: out of memory");
		goto out_free;
	}
	agent = nm_state_load(t->run_dir, t->instance, NM_RUN_AGENT_FILE, err, sizeof(err));
	type = libbpf_bpf_map_type_str(info.type);
	recs = json_array();
	doc = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:b, s:s}",
			"instance", t->instance, "map", name, "type", type ? type : "unknown",
			"key_size", (json_int_t)info.key_size,
			"value_size", (json_int_t)info.value_size,
			"max_entries", (json_int_t)info.max_entries,
			"decoded", nm_abi_map_known(name, info.key_size, info.value_size),
			"names", agent ? "runstate" : "none");
	if (!agent)
		json_object_set_new(doc, "note", json_string(
			"no run state (agent.json): the agent is not running; IDs are not named"));
	listable = info.type != BPF_MAP_TYPE_RINGBUF && info.type != BPF_MAP_TYPE_SK_STORAGE &&
		   info.type != BPF_MAP_TYPE_PERF_EVENT_ARRAY &&
		   info.type != BPF_MAP_TYPE_USER_RINGBUF;
	while (listable && !bpf_map_get_next_key(fd, first ? NULL : key, next)) {
		json_t *k, *v;

		first = false;
		memcpy(key, next, info.key_size);
		if (bpf_map_lookup_elem(fd, key, val))
			continue; /* deleted meanwhile */
		k = nm_abi_key_json(name, key, info.key_size);
		v = nm_abi_value_json(name, val, info.value_size, (unsigned int)ncpus, percpu);
		nm_json_add_names(k, agent);
		nm_json_add_names(v, agent);
		json_array_append_new(recs, json_pack("{s:o, s:o}", "key", k, "value", v));
		if (json_array_size(recs) > 10000000)
			break;
	}
	if (!listable)
		json_object_set_new(doc, "error", json_sprintf(
			"a %s map has no keys to walk: its entries cannot be listed",
			type ? type : "?"));
	else if (first && errno != ENOENT)
		json_object_set_new(doc, "error", json_sprintf(
			"cannot list the entries of a %s map: %s", type ? type : "?",
			strerror(errno)));
	json_object_set_new(doc, "entries", listable ?
			    json_integer((json_int_t)json_array_size(recs)) : json_null());
	json_object_set_new(doc, "records", recs);
	json_decref(agent);
	if (cli->json) {
		ret = nm_cli_print_json(cli, doc);
	} else {
		size_t i;
		json_t *r;

		if (json_object_get(doc, "note"))
			printf("# %s\n", json_string_value(json_object_get(doc, "note")));
		if (listable)
			printf("map %s: %s, %zu of %u entries, key %u bytes, value %u bytes%s\n",
			       name, type ? type : "unknown", json_array_size(recs),
			       info.max_entries, info.key_size, info.value_size,
			       json_is_true(json_object_get(doc, "decoded")) ? "" :
			       " (not an nm_abi.h record of this ABI: hex)");
		else
			printf("map %s: %s, max %u\n", name, type ? type : "unknown",
			       info.max_entries);
		if (json_object_get(doc, "error"))
			printf("# %s\n", json_string_value(json_object_get(doc, "error")));
		json_array_foreach(recs, i, r) {
			char *ks = json_dumps(json_object_get(r, "key"), JSON_COMPACT | JSON_ENCODE_ANY);
			char *vs = json_dumps(json_object_get(r, "value"), JSON_COMPACT | JSON_ENCODE_ANY);

			printf("key %s value %s\n", ks ? ks : "?", vs ? vs : "?");
			free(ks);
			free(vs);
		}
		json_decref(doc);
		ret = NM_EXIT_OK;
	}
out_free:
	free(key);
	free(next);
	free(val);
	close(fd);
	return ret;
}

static int maps_list(const struct nm_cli *cli, const struct nm_target *a)
{
	char dir[PATH_MAX];
	char **names = NULL;
	json_t *arr = NULL;
	struct nm_table *tab = NULL;
	static const char *const heads[] = { "MAP", "TYPE", "ENTRIES", "MAX" };
	int ret = NM_EXIT_OK, n;

	ret = nm_pin_path(a->pin_base, a->instance, NULL, dir, sizeof(dir));
	if (ret)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s/%s: %s", a->pin_base,
				   a->instance, strerror(-ret));
	n = list_pins(dir, NM_PIN_MAP_PREFIX, &names);
	if (n == -ENOENT)
		return nm_cli_fail(cli, NM_EXIT_FAIL,
				   "maps: %s: no such directory (instance \"%s\" has no pins: never started, or cleaned up)",
				   dir, a->instance);
	if (n < 0)
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps: %s: %s", dir, strerror(-n));
	if (cli->json)
		arr = json_array();
	else if (nm_table_new(&tab, 4, heads))
		return nm_cli_fail(cli, NM_EXIT_FAIL, "maps: out of memory");
	for (int i = 0; i < n; i++) {
		struct bpf_map_info info = { 0 };
		__u32 len = sizeof(info);
		const char *type;
		char path[PATH_MAX + 256], ent[24], max[24];
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
		entries = nm_map_count(fd, info.type, info.key_size);
		close(fd);
		type = libbpf_bpf_map_type_str(info.type);
		if (!type)
			type = "unknown";
		if (cli->json) {
			json_array_append_new(arr, json_pack(
				"{s:s, s:I, s:s, s:I, s:I, s:o, s:I}",
				"name", names[i], "id", (json_int_t)info.id,
				"type", type,
				"key_size", (json_int_t)info.key_size,
				"value_size", (json_int_t)info.value_size,
				"entries", entries < 0 ? json_null() : json_integer(entries),
				"max_entries", (json_int_t)info.max_entries));
			continue;
		}
		snprintf(ent, sizeof(ent), entries < 0 ? "-" : "%ld", entries);
		snprintf(max, sizeof(max), "%u", info.max_entries);
		if (nm_table_row(tab, (const char *const[]){ names[i], type, ent, max })) {
			ret = nm_cli_fail(cli, NM_EXIT_FAIL, "maps: out of memory");
			goto out;
		}
	}
	if (cli->json) {
		ret = nm_cli_print_json(cli, arr);
		arr = NULL;
	} else if (nm_table_print(tab, stdout)) {
		ret = NM_EXIT_FAIL;
	}
out:
	nm_table_free(tab);
	json_decref(arr);
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

int nm_cmd_maps(const struct nm_cli *cli, int argc, char **argv)
{
	struct nm_target t = { 0 };
	int ret, first;

	ret = nm_target_parse(cli, argc, argv, maps_usage, &t, NULL, NULL, NULL, NULL,
			      &first);
	if (ret)
		return ret < 0 ? NM_EXIT_OK : ret;
	if (first == argc || (!strcmp(argv[first], "list") && first + 1 == argc))
		return maps_list(cli, &t);
	if (!strcmp(argv[first], "dump")) {
		if (first + 1 == argc)
			return nm_cli_usage_error(cli, maps_usage,
						  "maps dump: which map? (NAME missing)");
		if (first + 2 != argc)
			return nm_cli_usage_error(cli, maps_usage,
						  "maps dump: unexpected argument \"%s\"",
						  argv[first + 2]);
		return maps_dump(cli, &t, argv[first + 1]);
	}
	return nm_cli_usage_error(cli, maps_usage, "maps: unknown subcommand \"%s\"",
				  argv[first]);
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
