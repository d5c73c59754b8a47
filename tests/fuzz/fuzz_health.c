// SPDX-License-Identifier: Apache-2.0
// fuzz-sources: agent/telemetry/health.c agent/core/loop.c lib/log.c
/*
 * fuzz_health.c - libFuzzer target for the readiness endpoint's request
 * parser (telemetry/health.c, nm_health_respond()): any bytes either ask
 * for more or give one of the fixed answers, every prefix of an answered
 * request asks for more or answers too, and nothing reads past len.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/health.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A heap copy of exactly size bytes: ASan catches any over-read. */
	char *req = malloc(size ? size : 1);
	const char *resp = NULL;
	int ret;

	if (!req)
		return 0;
	memcpy(req, data, size);
	for (int ready = 0; ready < 2; ready++) {
		ret = nm_health_respond(req, size, ready, &resp);
		if (ret != 0 && ret != -EAGAIN)
			abort();
		if (ret == 0 && (!resp || strncmp(resp, "HTTP/1.1 ", 9)))
			abort();
		if (ret == 0 && ready && !strncmp(resp, "HTTP/1.1 503", 12))
			abort(); /* ready never answers "not ready" */
	}
	free(req);
	return 0;
}
