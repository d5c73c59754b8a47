// SPDX-License-Identifier: Apache-2.0
/*
 * vmprobe - the kernel-matrix probe run inside each VM (and on the host).
 *
 * Prints the feature table of agent/probe.c as marker lines the runner
 * parses from the serial console, then loads every BPF object given on the
 * command line (programs verified and loaded, maps created, nothing pinned or
 * attached; the programs the agent loads on this kernel) and reports how
 * many programs each kernel accepted.
 *
 *   vmprobe [-k LABEL] [-v] [OBJ.bpf.o ...]
 *   vmprobe -i      the feature table (name, since, fallback) as markdown,
 *                   no probing: docs/kernels.md is generated from it
 *
 * Marker lines (one per line, space-separated key=value):
 *   VMFEATURE kernel=K name=N value=0|1
 *   VMREQUIRED kernel=K result=PASS|FAIL [missing="..."]
 *   VMPROGS kernel=K object=O loaded=N total=M [not_for_this_kernel=S] [error=E]
 * Exit status: 0 when every required feature is present and every object
 * loaded, 1 otherwise.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "datapath/probe.h"

/* libbpf's verifier logs go to stderr only when asked (-v). */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, fmt, ap) : 0;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');

	return s ? s + 1 : p;
}

/* Whether the agent loads program prog of object on this kernel: every
 * one, except in nm_relay.bpf.o (probe.h, nm_probe_relay_loads). */
static bool agent_loads(const char *object, const char *prog)
{
	return strcmp(object, "nm_relay.bpf.o") || nm_probe_relay_loads(prog);
}

/* Opens and loads one object without pinning: 0 or -errno. */
static int load_object(const char *label, const char *path)
{
	struct bpf_program *prog;
	struct bpf_object *obj;
	struct bpf_map *map;
	int total = 0, loaded = 0, skipped = 0, err;

	obj = bpf_object__open_file(path, NULL);
	if (!obj) {
		err = -errno;
		printf("VMPROGS kernel=%s object=%s loaded=0 total=0 error=open:%d\n",
		       label, base_name(path), err);
		return err;
	}
	/* LIBBPF_PIN_BY_NAME maps would pin under /sys/fs/bpf: not here. */
	bpf_object__for_each_map(map, obj)
		bpf_map__set_pin_path(map, NULL);
	bpf_object__for_each_program(prog, obj) {
		bool on = agent_loads(base_name(path), bpf_program__name(prog));

		bpf_program__set_autoload(prog, on);
		on ? total++ : skipped++;
	}
	err = bpf_object__load(obj);
	if (!err)
		bpf_object__for_each_program(prog, obj)
			if (bpf_program__fd(prog) >= 0)
				loaded++;
	printf("VMPROGS kernel=%s object=%s loaded=%d total=%d", label,
	       base_name(path), loaded, total);
	if (skipped)
		printf(" not_for_this_kernel=%d", skipped);
	if (err)
		printf(" error=load:%d", err);
	printf("\n");
	bpf_object__close(obj);
	return err ? err : (loaded == total ? 0 : -EINVAL);
}

static void print_info_markdown(void)
{
	const struct nm_feature_info *info;
	size_t n;

	info = nm_probe_info(&n);
	printf("| feature | since | required | used for | without it |\n");
	printf("|---|---|---|---|---|\n");
	for (size_t i = 0; i < n; i++)
		printf("| `%s` | %s | %s | %s | %s |\n", info[i].name, info[i].min_kernel,
		       info[i].required ? "yes" : "no", info[i].use,
		       info[i].required ? "the agent refuses to start and names the feature" :
					  info[i].fallback);
}

int main(int argc, char **argv)
{
	const struct nm_feature_info *info;
	const char *label = NULL, *missing;
	struct nm_features f;
	int opt, rc = 0, perr;
	size_t n;

	libbpf_set_print(quiet_print);
	/* "+": options first, then the object paths. */
	while ((opt = getopt(argc, argv, "+k:vi")) != -1) {
		switch (opt) {
		case 'i': print_info_markdown(); return 0;
		case 'k': label = optarg; break;
		case 'v': libbpf_set_print(NULL); break;
		default:
			fprintf(stderr, "usage: vmprobe [-i] [-k LABEL] [-v] [OBJ.bpf.o ...]\n");
			return 2;
		}
	}

	perr = nm_probe_features(&f);
	if (!label)
		label = f.kernel_release;
	info = nm_probe_info(&n);
	for (size_t i = 0; i < n; i++)
		printf("VMFEATURE kernel=%s name=%s value=%d\n", label, info[i].name,
		       nm_probe_get(&f, info[i].name));
	printf("VMFEATURE kernel=%s name=attach_tested value=%d\n", label, f.attach_tested);
	missing = nm_probe_required_missing(&f);
	if (missing || perr) {
		printf("VMREQUIRED kernel=%s result=FAIL missing=\"%s\"\n", label,
		       missing ? missing : strerror(-perr));
		rc = 1;
	} else {
		printf("VMREQUIRED kernel=%s result=PASS\n", label);
	}
	for (int i = optind; i < argc; i++)
		if (load_object(label, argv[i]))
			rc = 1;
	fflush(stdout);
	return rc;
}
