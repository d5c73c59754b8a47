// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/k8s/kubeconfig.c agent/policy/yaml.c lib/file.c lib/log.c lib/errbuf.c
/*
 * fuzz_kubeconfig.c - libFuzzer target for the kubeconfig reader
 * (k8s/kubeconfig.c): any file gives 0 with a server URL and terminated
 * paths, or an error; never a crash, leak or over-read.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8s/internal.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void remove_file(void)
{
	if (path[0])
		unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nm_k8s_conf cf;
	FILE *f;

	if (!path[0]) {
		int fd;

		snprintf(path, sizeof(path), "/tmp/nm-fuzz-kubeconfig-XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(remove_file);
		nm_log_set_level(NM_LOG_WARN);
	}
	f = fopen(path, "we");
	if (!f)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	if (nm_k8s_conf_load(&cf, path, NULL) == 0) {
		if (strnlen(cf.server, sizeof(cf.server)) == sizeof(cf.server) ||
		    strnlen(cf.ca_path, sizeof(cf.ca_path)) == sizeof(cf.ca_path))
			abort();
		nm_k8s_conf_free(&cf);
	}
	return 0;
}
