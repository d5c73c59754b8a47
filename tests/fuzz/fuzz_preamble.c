// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_preamble.c - libFuzzer target for the NMTP v1 codec (agent/tunnel.c).
 *
 * Beyond "does not crash" it checks the codec's promises: results are one of
 * the documented values, a malformed input says why, a decoded preamble
 * re-encodes to something that decodes to the same fields, and every strict
 * prefix of a decodable preamble asks for more bytes instead of failing.
 */
// fuzz-sources: agent/mesh/tunnel.c lib/addr.c
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "mesh/tunnel.h"

#define CHECK(c)                      \
	do {                          \
		if (!(c))             \
			abort();      \
	} while (0)

static void check_same_addr(const struct sockaddr_storage *a,
			    const struct sockaddr_storage *b)
{
	CHECK(a->ss_family == b->ss_family);
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		CHECK(x->sin_port == y->sin_port);
		CHECK(memcmp(&x->sin_addr, &y->sin_addr, 4) == 0);
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		CHECK(a->ss_family == AF_INET6);
		CHECK(x->sin6_port == y->sin6_port);
		CHECK(memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nm_preamble p, q;
	uint8_t buf[NM_NMTP_MAX];
	const char *why = NULL;
	uint8_t status;
	int n, m;

	n = nm_preamble_decode(data, size, &p, &why);
	if (n == -EBADMSG) {
		CHECK(why != NULL);
	} else if (n > 0) {
		CHECK((size_t)n <= size && n >= NM_NMTP_HDR_LEN && n <= NM_NMTP_MAX);
		for (int i = 0; i < n; i++)
			CHECK(nm_preamble_decode(data, (size_t)i, NULL, NULL) ==
			      -EAGAIN);
		m = nm_preamble_encode(&p, buf, sizeof(buf));
		CHECK(m > 0 && m <= n);
		CHECK(nm_preamble_decode(buf, (size_t)m, &q, NULL) == m);
		check_same_addr(&p.dst, &q.dst);
		CHECK(p.has_src == q.has_src);
		if (p.has_src)
			check_same_addr(&p.src, &q.src);
		CHECK(p.has_flow == q.has_flow);
		CHECK(!p.has_flow || p.flow_id == q.flow_id);
	} else {
		CHECK(n == -EAGAIN);
		CHECK(size < NM_NMTP_MAX);
	}

	m = nm_status_decode(data, size, &status);
	CHECK(m == NM_NMTP_STATUS_LEN || m == -EAGAIN || m == -EBADMSG);
	if (m == NM_NMTP_STATUS_LEN) {
		CHECK(nm_status_encode(status, buf, sizeof(buf)) == m);
		CHECK(memcmp(buf, data, (size_t)m) == 0);
		CHECK(nm_status_str(status) != NULL);
	}
	return 0;
}
