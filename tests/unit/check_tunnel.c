// SPDX-License-Identifier: Apache-2.0
/* check_tunnel.c - NMTP v1 preamble and status codec (agent/tunnel.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "nm_check.h"
#include "mesh/tunnel.h"

static void set_v4(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
}

static void set_v6(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	ck_assert_int_eq(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
}

static void assert_addr_eq(const struct sockaddr_storage *a,
			   const struct sockaddr_storage *b)
{
	ck_assert_int_eq(a->ss_family, b->ss_family);
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		ck_assert_int_eq(x->sin_port, y->sin_port);
		ck_assert_mem_eq(&x->sin_addr, &y->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		ck_assert_int_eq(x->sin6_port, y->sin6_port);
		ck_assert_mem_eq(&x->sin6_addr, &y->sin6_addr, 16);
	}
}

/* A hand-built preamble: header with the right total, then raw TLV bytes. */
static size_t build(uint8_t *buf, const uint8_t *tlvs, size_t n)
{
	memcpy(buf, "NMT1", 4);
	buf[4] = (uint8_t)((n + 6) >> 8);
	buf[5] = (uint8_t)(n + 6);
	memcpy(buf + 6, tlvs, n);
	return n + 6;
}

static const uint8_t dst_v4[] = { 1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90 };

static int decode(const uint8_t *buf, size_t len, struct nm_preamble *p,
		  const char **why)
{
	*why = NULL;
	return nm_preamble_decode(buf, len, p, why);
}

START_TEST(test_roundtrip_v4_all_tlvs)
{
	struct nm_preamble in = { 0 }, out;
	uint8_t buf[NM_NMTP_MAX];
	const char *why;
	int n;

	set_v4(&in.dst, "198.18.1.2", 8080);
	in.has_src = true;
	set_v4(&in.src, "198.18.0.7", 43210);
	in.has_flow = true;
	in.flow_id = 0x0102030405060708ULL;
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	ck_assert_int_eq(n, 6 + 9 + 9 + 10);
	ck_assert_mem_eq(buf, "NMT1", 4);
	ck_assert_int_eq(buf[4] << 8 | buf[5], n);
	/* DST exactly as on the wire: type, len, family, addr, port BE. */
	ck_assert_mem_eq(buf + 6, dst_v4, sizeof(dst_v4));
	/* FLOW is big endian. */
	ck_assert_int_eq(buf[n - 8], 0x01);
	ck_assert_int_eq(buf[n - 1], 0x08);

	ck_assert_int_eq(decode(buf, (size_t)n, &out, &why), n);
	ck_assert_ptr_null(why);
	assert_addr_eq(&out.dst, &in.dst);
	ck_assert(out.has_src);
	assert_addr_eq(&out.src, &in.src);
	ck_assert(out.has_flow);
	ck_assert_uint_eq(out.flow_id, in.flow_id);
}
END_TEST

START_TEST(test_roundtrip_v6_dst_only)
{
	struct nm_preamble in = { 0 }, out;
	uint8_t buf[64];
	const char *why;
	int n;

	set_v6(&in.dst, "2001:2::10", 443);
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	ck_assert_int_eq(n, 6 + 21);
	ck_assert_int_eq(buf[6], NM_TLV_DST);
	ck_assert_int_eq(buf[7], 19);
	ck_assert_int_eq(buf[8], 6);
	ck_assert_int_eq(decode(buf, (size_t)n, &out, &why), n);
	assert_addr_eq(&out.dst, &in.dst);
	ck_assert(!out.has_src);
	ck_assert(!out.has_flow);
}
END_TEST

START_TEST(test_mixed_families)
{
	struct nm_preamble in = { 0 }, out;
	uint8_t buf[64];
	const char *why;
	int n;

	set_v6(&in.dst, "2001:2::10", 443);
	in.has_src = true;
	set_v4(&in.src, "198.18.0.1", 1);
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	ck_assert_int_eq(decode(buf, (size_t)n, &out, &why), n);
	assert_addr_eq(&out.dst, &in.dst);
	assert_addr_eq(&out.src, &in.src);
}
END_TEST

START_TEST(test_encode_errors)
{
	struct nm_preamble in = { 0 };
	uint8_t buf[64];
	struct sockaddr_un *sun = (struct sockaddr_un *)&in.dst;

	set_v4(&in.dst, "198.18.1.2", 80);
	in.has_flow = true;
	/* 6 + 9 + 10 = 25 bytes needed. */
	ck_assert_int_eq(nm_preamble_encode(&in, buf, 24), -ENOSPC);
	ck_assert_int_eq(nm_preamble_encode(&in, buf, 25), 25);
	ck_assert_int_eq(nm_preamble_encode(&in, buf, 0), -ENOSPC);

	sun->sun_family = AF_UNIX;
	ck_assert_int_eq(nm_preamble_encode(&in, buf, sizeof(buf)), -EINVAL);
	set_v4(&in.dst, "198.18.1.2", 80);
	in.has_src = true;
	in.src.ss_family = AF_UNSPEC;
	ck_assert_int_eq(nm_preamble_encode(&in, buf, sizeof(buf)), -EINVAL);
}
END_TEST

/* Every strict prefix of a valid preamble asks for more, never errors. */
START_TEST(test_every_prefix_is_eagain)
{
	struct nm_preamble in = { 0 }, out;
	uint8_t buf[NM_NMTP_MAX];
	const char *why;
	int n;

	set_v6(&in.dst, "2001:2::10", 443);
	in.has_src = true;
	set_v6(&in.src, "2001:2::11", 50000);
	in.has_flow = true;
	in.flow_id = 42;
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	for (int i = 0; i < n; i++)
		ck_assert_msg(decode(buf, (size_t)i, &out, &why) == -EAGAIN,
			      "prefix of %d bytes", i);
	ck_assert_int_eq(decode(buf, (size_t)n, &out, &why), n);
}
END_TEST

START_TEST(test_trailing_bytes_not_consumed)
{
	struct nm_preamble in = { 0 }, out;
	uint8_t buf[128];
	const char *why;
	int n;

	set_v4(&in.dst, "198.18.1.2", 80);
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	/* Application bytes follow the preamble at once (no round trip). */
	memcpy(buf + n, "GET / HTTP/1.1\r\n", 16);
	ck_assert_int_eq(decode(buf, (size_t)n + 16, &out, &why), n);
}
END_TEST

START_TEST(test_bad_magic)
{
	struct nm_preamble out;
	const char *why;
	uint8_t buf[32];
	size_t n = build(buf, dst_v4, sizeof(dst_v4));

	buf[3] = '2'; /* "NMT2" */
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "bad magic");
	/* A partial magic that already differs fails at once... */
	ck_assert_int_eq(decode((const uint8_t *)"G", 1, &out, &why), -EBADMSG);
	ck_assert_int_eq(decode((const uint8_t *)"NMX", 3, &out, &why), -EBADMSG);
	/* ...one that matches so far waits. */
	ck_assert_int_eq(decode((const uint8_t *)"NM", 2, &out, &why), -EAGAIN);
	ck_assert_int_eq(decode((const uint8_t *)"", 0, &out, &why), -EAGAIN);
	/* TLS or HTTP bytes where a preamble should be. */
	ck_assert_int_eq(decode((const uint8_t *)"\x16\x03\x01\x02\x00\x01", 6,
				&out, &why), -EBADMSG);
}
END_TEST

START_TEST(test_bad_total_length)
{
	struct nm_preamble out;
	const char *why;
	uint8_t buf[16] = { 'N', 'M', 'T', '1', 0, 5 };

	ck_assert_int_eq(decode(buf, 6, &out, &why), -EBADMSG);
	ck_assert_ptr_nonnull(why);
	buf[5] = 0;
	ck_assert_int_eq(decode(buf, 6, &out, &why), -EBADMSG);
	/* 513: oversized is rejected from the header alone. */
	buf[4] = 0x02;
	buf[5] = 0x01;
	ck_assert_int_eq(decode(buf, 6, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "length exceeds 512 bytes");
	buf[4] = 0xff;
	buf[5] = 0xff;
	ck_assert_int_eq(decode(buf, 6, &out, &why), -EBADMSG);
	/* Exactly 6: a header with no TLVs has no DST. */
	buf[4] = 0;
	buf[5] = 6;
	ck_assert_int_eq(decode(buf, 6, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "DST TLV is missing");
}
END_TEST

START_TEST(test_max_length_with_padding_tlvs)
{
	uint8_t tlvs[NM_NMTP_MAX], buf[NM_NMTP_MAX + 8];
	struct nm_preamble out;
	const char *why;
	size_t n = 0, total;

	memcpy(tlvs, dst_v4, sizeof(dst_v4));
	n = sizeof(dst_v4);
	/* Fill up to exactly 512 bytes with unknown TLVs of type 200. */
	while (n < NM_NMTP_MAX - 6) {
		size_t room = NM_NMTP_MAX - 6 - n - 2;
		size_t pad = room > 255 ? 200 : room;

		tlvs[n++] = 200;
		tlvs[n++] = (uint8_t)pad;
		memset(tlvs + n, 0xab, pad);
		n += pad;
	}
	total = build(buf, tlvs, n);
	ck_assert_uint_eq(total, NM_NMTP_MAX);
	ck_assert_int_eq(decode(buf, total, &out, &why), NM_NMTP_MAX);
}
END_TEST

START_TEST(test_unknown_tlvs_skipped)
{
	static const uint8_t tlvs[] = {
		9, 3, 'a', 'b', 'c',          /* unknown before DST */
		1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90,
		9, 0,                         /* unknown, repeated, empty */
		255, 1, 0,
		3, 8, 0, 0, 0, 0, 0, 0, 0, 7, /* FLOW */
	};
	struct nm_preamble out;
	const char *why;
	uint8_t buf[64];
	size_t n = build(buf, tlvs, sizeof(tlvs));

	ck_assert_int_eq(decode(buf, n, &out, &why), (int)n);
	ck_assert_int_eq(out.dst.ss_family, AF_INET);
	ck_assert_int_eq(ntohs(((struct sockaddr_in *)&out.dst)->sin_port), 8080);
	ck_assert(out.has_flow);
	ck_assert_uint_eq(out.flow_id, 7);
}
END_TEST

START_TEST(test_truncated_tlv)
{
	struct nm_preamble out;
	const char *why;
	uint8_t buf[64];
	size_t n;

	/* DST claims 7 bytes but the preamble ends after 5 of them. */
	n = build(buf, dst_v4, sizeof(dst_v4) - 2);
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "TLV runs past the end of the preamble");
	/* A lone type byte at the end. */
	static const uint8_t lone[] = { 1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90, 3 };

	n = build(buf, lone, sizeof(lone));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	/* Known to overrun from its header, even before the rest arrives. */
	static const uint8_t big[] = { 9, 200, 0 };

	n = build(buf, big, sizeof(big));
	ck_assert_int_eq(decode(buf, 8, &out, &why), -EBADMSG);
}
END_TEST

START_TEST(test_missing_dst)
{
	static const uint8_t tlvs[] = { 2, 7, 4, 198, 18, 1, 2, 0x1f, 0x90 };
	struct nm_preamble out;
	const char *why;
	uint8_t buf[32];
	size_t n = build(buf, tlvs, sizeof(tlvs));

	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "DST TLV is missing");
}
END_TEST

START_TEST(test_duplicates)
{
	uint8_t tlvs[64], buf[80];
	struct nm_preamble out;
	const char *why;
	size_t n;

	memcpy(tlvs, dst_v4, sizeof(dst_v4));
	memcpy(tlvs + sizeof(dst_v4), dst_v4, sizeof(dst_v4));
	n = build(buf, tlvs, 2 * sizeof(dst_v4));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "duplicate TLV");

	static const uint8_t flows[] = {
		1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90,
		3, 8, 0, 0, 0, 0, 0, 0, 0, 1,
		3, 8, 0, 0, 0, 0, 0, 0, 0, 2,
	};

	n = build(buf, flows, sizeof(flows));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "duplicate TLV");

	static const uint8_t srcs[] = {
		2, 7, 4, 198, 18, 1, 2, 0x1f, 0x90,
		1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90,
		2, 7, 4, 198, 18, 1, 3, 0x1f, 0x90,
	};

	n = build(buf, srcs, sizeof(srcs));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
}
END_TEST

START_TEST(test_bad_family_and_lengths)
{
	struct nm_preamble out;
	const char *why;
	uint8_t buf[64];
	size_t n;
	static const uint8_t fam5[] = { 1, 7, 5, 198, 18, 1, 2, 0x1f, 0x90 };
	static const uint8_t v4_as_6[] = { 1, 7, 6, 198, 18, 1, 2, 0x1f, 0x90 };
	static const uint8_t v4_long[] = { 1, 8, 4, 198, 18, 1, 2, 0x1f, 0x90, 0 };
	static const uint8_t empty_dst[] = { 1, 0 };
	static const uint8_t flow_short[] = {
		1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90, 3, 4, 0, 0, 0, 1,
	};
	static const uint8_t src_bad[] = {
		1, 7, 4, 198, 18, 1, 2, 0x1f, 0x90, 2, 7, 0, 198, 18, 1, 2, 0, 1,
	};

	n = build(buf, fam5, sizeof(fam5));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "address TLV has an unknown family");
	n = build(buf, v4_as_6, sizeof(v4_as_6));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	n = build(buf, v4_long, sizeof(v4_long));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	n = build(buf, empty_dst, sizeof(empty_dst));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	n = build(buf, flow_short, sizeof(flow_short));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
	ck_assert_str_eq(why, "FLOW TLV has the wrong length");
	n = build(buf, src_bad, sizeof(src_bad));
	ck_assert_int_eq(decode(buf, n, &out, &why), -EBADMSG);
}
END_TEST

/* Malformed TLVs are reported before the declared length has arrived. */
START_TEST(test_early_rejection)
{
	static const uint8_t tlvs[] = { 1, 7, 5, 198, 18, 1, 2, 0x1f, 0x90,
					9, 100 };
	uint8_t buf[200] = { 0 };
	struct nm_preamble out;
	const char *why;

	build(buf, tlvs, sizeof(tlvs));
	buf[4] = 0;
	buf[5] = 150; /* much longer than what we hand over */
	ck_assert_int_eq(decode(buf, 6 + 9, &out, &why), -EBADMSG);
	ck_assert_int_eq(decode(buf, 6 + 5, &out, &why), -EAGAIN);
}
END_TEST

START_TEST(test_null_out_and_why)
{
	struct nm_preamble in = { 0 };
	uint8_t buf[64];
	int n;

	set_v4(&in.dst, "198.18.1.2", 80);
	n = nm_preamble_encode(&in, buf, sizeof(buf));
	ck_assert_int_eq(nm_preamble_decode(buf, (size_t)n, NULL, NULL), n);
	buf[0] = 'X';
	ck_assert_int_eq(nm_preamble_decode(buf, (size_t)n, NULL, NULL),
			 -EBADMSG);
}
END_TEST

START_TEST(test_status)
{
	uint8_t buf[8], st = 0xff;

	ck_assert_int_eq(nm_status_encode(NM_NMTP_DENIED, buf, 4), -ENOSPC);
	ck_assert_int_eq(nm_status_encode(NM_NMTP_DENIED, buf, sizeof(buf)),
			 NM_NMTP_STATUS_LEN);
	ck_assert_mem_eq(buf, "NMT1\x01", 5);
	for (size_t i = 0; i < NM_NMTP_STATUS_LEN; i++)
		ck_assert_int_eq(nm_status_decode(buf, i, &st), -EAGAIN);
	ck_assert_int_eq(nm_status_decode(buf, 5, &st), NM_NMTP_STATUS_LEN);
	ck_assert_int_eq(st, NM_NMTP_DENIED);
	/* Relay bytes may follow the status in the same read. */
	buf[5] = 'x';
	ck_assert_int_eq(nm_status_decode(buf, 6, &st), NM_NMTP_STATUS_LEN);
	/* Unknown codes pass through; the caller treats non-zero as refusal. */
	buf[4] = 77;
	ck_assert_int_eq(nm_status_decode(buf, 5, &st), NM_NMTP_STATUS_LEN);
	ck_assert_int_eq(st, 77);
	ck_assert_int_eq(nm_status_decode((const uint8_t *)"NMT2\x00", 5, &st),
			 -EBADMSG);
	ck_assert_int_eq(nm_status_decode((const uint8_t *)"HT", 2, &st),
			 -EBADMSG);

	ck_assert_str_eq(nm_status_str(NM_NMTP_OK), "ok");
	ck_assert_str_eq(nm_status_str(NM_NMTP_DENIED), "denied");
	ck_assert_str_eq(nm_status_str(NM_NMTP_NO_DEST), "no such destination");
	ck_assert_str_eq(nm_status_str(NM_NMTP_DEST_REFUSED), "destination refused");
	ck_assert_str_eq(nm_status_str(NM_NMTP_OVERLOADED), "overloaded");
	ck_assert_str_eq(nm_status_str(200), "unknown");
}
END_TEST

static Suite *tunnel_suite(void)
{
	Suite *s = suite_create("tunnel");
	TCase *tc = tcase_create("nmtp");

	tcase_add_test(tc, test_roundtrip_v4_all_tlvs);
	tcase_add_test(tc, test_roundtrip_v6_dst_only);
	tcase_add_test(tc, test_mixed_families);
	tcase_add_test(tc, test_encode_errors);
	tcase_add_test(tc, test_every_prefix_is_eagain);
	tcase_add_test(tc, test_trailing_bytes_not_consumed);
	tcase_add_test(tc, test_bad_magic);
	tcase_add_test(tc, test_bad_total_length);
	tcase_add_test(tc, test_max_length_with_padding_tlvs);
	tcase_add_test(tc, test_unknown_tlvs_skipped);
	tcase_add_test(tc, test_truncated_tlv);
	tcase_add_test(tc, test_missing_dst);
	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_bad_family_and_lengths);
	tcase_add_test(tc, test_early_rejection);
	tcase_add_test(tc, test_null_out_and_why);
	tcase_add_test(tc, test_status);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(tunnel_suite)
