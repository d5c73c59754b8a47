// SPDX-License-Identifier: Apache-2.0
/* common.c - options, run state and pinned maps of one instance (common.h). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/file.h"
#include "common.h"

void nm_target_resolve(struct nm_target *t)
{
	const char *dirs[2] = { t->run_dir, t->pin_base };
	int found = 0;

	if (t->instance)
		return;
	t->buf[0] = '\0';
	for (int i = 0; i < 2; i++) {
		struct dirent *de;
		DIR *d = opendir(dirs[i]);

		if (!d)
			continue;
		while ((de = readdir(d))) {
			size_t len = strlen(de->d_name);

			if (!nm_instance_valid(de->d_name) || len >= sizeof(t->buf) ||
			    !strcmp(de->d_name, t->buf))
				continue;
			if (found++)
				break;
			memcpy(t->buf, de->d_name, len + 1);
		}
		closedir(d);
	}
	t->instance = found == 1 ? t->buf : NM_INSTANCE_DEFAULT;
}

int nm_target_parse(const struct nm_cli *cli, int argc, char **argv,
		    const char *usage, struct nm_target *t,
		    const struct option *extra, const char *extra_short,
		    int (*on_opt)(int c, const char *arg, void *ctx), void *ctx,
		    int *first_arg)
{
	static const struct option base[] = {
		{ "instance", required_argument, NULL, 'i' },
		{ "run-dir", required_argument, NULL, 'R' },
		{ "pin-dir", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
	};
	struct option opts[16];
	char shorts[32];
	size_t n = 0;
	int c, ret;

	for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
		opts[n++] = base[i];
	for (; extra && extra->name && n < sizeof(opts) / sizeof(opts[0]) - 1; extra++)
		opts[n++] = *extra;
	memset(&opts[n], 0, sizeof(opts[n]));
	snprintf(shorts, sizeof(shorts), ":i:h%s", extra_short ? extra_short : "");
	t->instance = NULL;
	if (!t->run_dir)
		t->run_dir = NM_RUN_DIR;
	if (!t->pin_base)
		t->pin_base = NM_PIN_BASE;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, shorts, opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			t->instance = optarg;
			break;
		case 'R':
			t->run_dir = optarg;
			break;
		case 'P':
			t->pin_base = optarg;
			break;
		case 'h':
			fputs(usage, stdout);
			return -1;
		case '?':
		case ':':
			return nm_cli_getopt_error(cli, usage, c, argv);
		default:
			ret = on_opt ? on_opt(c, optarg, ctx) : -EINVAL;
			if (ret)
				return nm_cli_usage_error(cli, usage, "%s: bad value \"%s\" for %s",
							  argv[0], optarg ? optarg : "",
							  argv[optind - 1]);
		}
	}
	if (t->instance && !nm_instance_valid(t->instance))
		return nm_cli_usage_error(cli, usage,
					  "%s: bad instance name \"%s\" (up to %d of A-Z a-z 0-9 . _ -)",
					  argv[0], t->instance, NM_INSTANCE_MAX);
	if (first_arg)
		*first_arg = optind;
	else if (optind != argc)
		return nm_cli_usage_error(cli, usage, "%s: unexpected argument \"%s\"",
					  argv[0], argv[optind]);
	nm_target_resolve(t);
	return 0;
}

json_t *nm_state_load(const char *run_dir, const char *instance, const char *file,
		      char *err, size_t errlen)
{
	char path[PATH_MAX], *buf = NULL;
	const char *why = NULL;
	json_error_t jerr;
	json_t *doc;
	size_t len;
	int ret;

	if (errlen)
		err[0] = '\0';
	if (nm_run_path(run_dir, instance, file, path, sizeof(path)))
		return NULL;
	ret = nm_file_read(path, NM_CLI_STATE_FILE_MAX, &buf, &len, &why);
	if (ret) {
		if (ret != -ENOENT)
			snprintf(err, errlen, "%s: %s", path, why ? why : strerror(-ret));
		return NULL;
	}
	doc = json_loadb(buf, len, 0, &jerr);
	free(buf);
	if (!doc || !json_is_object(doc)) {
		snprintf(err, errlen, "%s: not a JSON object (%s)", path,
			 doc ? "other type" : jerr.text);
		json_decref(doc);
		return NULL;
	}
	return doc;
}

const char *nm_process_state(pid_t pid, char *comm, size_t len)
{
	char path[64];
	FILE *f;

	comm[0] = '\0';
	if (pid <= 0 || (kill(pid, 0) && errno != EPERM))
		return "stopped";
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(comm, (int)len, f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	if (comm[0] && strncmp(comm, "nodemeshd", 9) != 0)
		return "stale";
	return "running";
}

long long nm_process_uptime(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	double up = 0;
	long hz = sysconf(_SC_CLK_TCK);
	FILE *f;
	size_t n;

	if (pid <= 0 || hz <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields count from the last ')'. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u "
			 "%*d %*d %*d %*d %*d %*d %llu", &start) != 1)
		return -1;
	f = fopen("/proc/uptime", "re");
	if (!f)
		return -1;
	if (fscanf(f, "%lf", &up) != 1)
		up = -1;
	fclose(f);
	if (up < 0)
		return -1;
	return (long long)(up - (double)start / (double)hz);
}

json_t *nm_json_find_id(json_t *arr, const char *key, json_int_t id)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e)
		if (json_integer_value(json_object_get(e, key)) == id &&
		    json_is_integer(json_object_get(e, key)))
			return e;
	return NULL;
}

static bool ends_with(const char *s, const char *suffix, size_t *prefix_len)
{
	size_t n = strlen(s), m = strlen(suffix);

	if (n < m || strcmp(s + n - m, suffix))
		return false;
	*prefix_len = n - m;
	return true;
}

/* The name for one ID field, or NULL. */
static json_t *name_of(const char *key, json_int_t id, json_t *agent)
{
	size_t pl;
	json_t *e;

	if (ends_with(key, "workload_id", &pl)) {
		e = nm_json_find_id(json_object_get(agent, "workloads"), "workload_id", id);
		if (e)
			return json_sprintf("%s/%s",
					    json_string_value(json_object_get(e, "namespace")),
					    json_string_value(json_object_get(e, "name")));
	} else if (ends_with(key, "identity_id", &pl)) {
		e = nm_json_find_id(json_object_get(agent, "identity_table"), "identity_id", id);
		if (e)
			return json_incref(json_object_get(e, "spiffe_id"));
	} else if (!strcmp(key, "service_id")) {
		e = nm_json_find_id(json_object_get(agent, "services"), "service_id", id);
		if (e)
			return json_sprintf("%s/%s",
					    json_string_value(json_object_get(e, "namespace")),
					    json_string_value(json_object_get(e, "name")));
	} else if (!strcmp(key, "node_id")) {
		e = nm_json_find_id(json_object_get(agent, "nodes"), "node_id", id);
		if (e)
			return json_incref(json_object_get(e, "name"));
	}
	return NULL;
}

void nm_json_add_names(json_t *rec, json_t *agent)
{
	const char *key;
	json_t *v, *add;
	void *tmp;

	if (!agent || !json_is_object(rec))
		return;
	add = json_object();
	json_object_foreach_safe(rec, tmp, key, v) {
		size_t kl = strlen(key);
		json_t *name;

		if (json_is_object(v)) {
			nm_json_add_names(v, agent);
			continue;
		}
		if (!json_is_integer(v) || kl < 3 || strcmp(key + kl - 3, "_id") ||
		    !json_integer_value(v))
			continue;
		name = name_of(key, json_integer_value(v), agent);
		if (name) {
			char nk[128];

			snprintf(nk, sizeof(nk), "%.*s", (int)(kl - 3), key);
			json_object_set_new(add, nk, name);
		}
	}
	json_object_update(rec, add);
	json_decref(add);
}

int nm_pinned_map(const struct nm_target *t, const char *name, char *path,
		  size_t pathlen)
{
	int fd, ret;

	ret = nm_pin_path(t->pin_base, t->instance, name, path, pathlen);
	if (ret)
		return ret;
	fd = bpf_obj_get(path);
	return fd < 0 ? -errno : fd;
}

long nm_map_count(int fd, unsigned int type, unsigned int key_size)
{
	unsigned char key[512], next[512];
	void *prev = NULL;
	long n = 0;

	if (type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
	    type == BPF_MAP_TYPE_RINGBUF || type == BPF_MAP_TYPE_SK_STORAGE ||
	    type == BPF_MAP_TYPE_PERF_EVENT_ARRAY || key_size > sizeof(key))
		return -1;
	while (!bpf_map_get_next_key(fd, prev, next)) {
		memcpy(key, next, key_size);
		prev = key;
		if (++n > 10000000)
			break;
	}
	return n;
}
