// SPDX-License-Identifier: Apache-2.0
/*
 * check_cli.c - the pure pieces of the CLI's output: aligned tables
 * (lib/table.c), the decoding of nm_abi.h records (lib/abidecode.c) and
 * the forms of a /flows answer (lib/jsonlines.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nm_check.h"
#include "nm_abi.h"
#include "lib/abidecode.h"
#include "lib/addr.h"
#include "lib/jsonlines.h"
#include "lib/table.h"

/* What t prints, as a string to free. */
static char *printed(struct nm_table *t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(nm_table_print(t, f), 0);
	fclose(f);
	return buf;
}

START_TEST(table_aligns_columns)
{
	static const char *const heads[] = { "NAME", "NAMESPACE", "ID" };
	struct nm_table *t;
	char *out;

	ck_assert_int_eq(nm_table_new(&t, 3, heads), 0);
	ck_assert_int_eq(nm_table_row(t, (const char *const[]){ "client", "default", "1" }), 0);
	ck_assert_int_eq(nm_table_row(t, (const char *const[]){ "a-much-longer-name", "x", "12345" }), 0);
	ck_assert_uint_eq(nm_table_rows(t), 2);
	out = printed(t);
	ck_assert_str_eq(out,
			 "NAME                 NAMESPACE   ID\n"
			 "client               default     1\n"
			 "a-much-longer-name   x           12345\n");
	free(out);
	nm_table_free(t);
}
END_TEST

START_TEST(table_empty_cells_print_dash)
{
	static const char *const heads[] = { "A", "B" };
	struct nm_table *t;
	char *out;

	ck_assert_int_eq(nm_table_new(&t, 2, heads), 0);
	ck_assert_int_eq(nm_table_row(t, (const char *const[]){ NULL, "" }), 0);
	out = printed(t);
	/* No trailing blanks on the last column. */
	ck_assert_str_eq(out, "A   B\n-   -\n");
	free(out);
	nm_table_free(t);
}
END_TEST

START_TEST(table_indent_and_limits)
{
	static const char *const heads[] = { "X" };
	struct nm_table *t;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	ck_assert_int_eq(nm_table_new(&t, 0, heads), -EINVAL);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(nm_table_new(&t, 33, heads), -EINVAL);
	ck_assert_int_eq(nm_table_new(&t, 1, heads), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(nm_table_row(t, (const char *const[]){ "v" }), 0);
	f = open_memstream(&buf, &len);
	ck_assert_int_eq(nm_table_print_indent(t, f, 4), 0);
	fclose(f);
	ck_assert_int_eq(strncmp(buf, "    X\n    v\n", 12), 0);
	ck_assert_uint_eq(len, 101 * 6);
	free(buf);
	nm_table_free(t);
	nm_table_free(NULL);
}
END_TEST

static char *dumps(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

	json_decref(j);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(decode_workload)
{
	struct nm_workload w = { .workload_id = 7, .identity_id = 3, .namespace_id = 2,
				 .flags = NM_WL_MESHED | NM_WL_STRICT };
	__u64 cg = 4242;
	bool v6;
	char *s;

	ck_assert_int_eq(nm_addr_parse("198.18.1.11", &w.addr, &v6), 0);
	ck_assert(nm_abi_map_known("nm_workloads", 8, sizeof(w)));
	ck_assert(!nm_abi_map_known("nm_workloads", 8, sizeof(w) + 4));
	s = dumps(nm_abi_key_json("nm_workloads", &cg, sizeof(cg)));
	ck_assert_str_eq(s, "4242");
	free(s);
	s = dumps(nm_abi_value_json("nm_workloads", &w, sizeof(w), 1, false));
	ck_assert_str_eq(s, "{\"address\":\"198.18.1.11\",\"flags\":\"MESHED|STRICT\","
			    "\"identity_id\":3,\"namespace_id\":2,\"workload_id\":7}");
	free(s);
}
END_TEST

START_TEST(decode_service_key_and_backend_slot)
{
	struct nm_svc_key k = { .port = htons(80), .proto = 6 };
	struct nm_backend_key bk = { .service_id = 5, .slot = NM_BACKEND_SLOT(443, 1, 3) };
	struct nm_service sv = { .service_id = 5, .backend_count = 2, .lb_algo = NM_LB_MAGLEV };
	bool v6;
	char *s;

	ck_assert_int_eq(nm_addr_parse("fd00::10", &k.vip, &v6), 0);
	s = dumps(nm_abi_key_json("nm_services", &k, sizeof(k)));
	ck_assert_str_eq(s, "{\"port\":80,\"proto\":6,\"vip\":\"fd00::10\",\"vip_port\":\"[fd00::10]:80\"}");
	free(s);
	s = dumps(nm_abi_value_json("nm_services", &sv, sizeof(sv), 1, false));
	ck_assert_str_eq(s, "{\"backend_count\":2,\"flags\":0,\"lb\":\"maglev\",\"service_id\":5}");
	free(s);
	s = dumps(nm_abi_key_json("nm_backends", &bk, sizeof(bk)));
	ck_assert_str_eq(s, "{\"service_id\":5,\"slot\":29065219,"
			    "\"slot_fields\":{\"k\":3,\"port\":443,\"v6\":true}}");
	free(s);
}
END_TEST

START_TEST(decode_percpu_sums_counters)
{
	struct nm_wl_stats v[3] = {
		{ .connects = 1, .bytes = 10 }, { .connects = 2, .denies = 1 }, { .errors = 4 },
	};
	__u32 rr[4] = { 9, 0, 8, 0 }; /* two CPUs, values padded to 8 bytes */
	__u32 id = 9;
	char *s;

	s = dumps(nm_abi_key_json("nm_wl_stats", &id, sizeof(id)));
	ck_assert_str_eq(s, "{\"workload_id\":9}");
	free(s);
	s = dumps(nm_abi_value_json("nm_wl_stats", v, sizeof(v[0]), 3, true));
	ck_assert_str_eq(s, "{\"bytes\":10,\"connects\":3,\"denies\":1,\"errors\":4,"
			    "\"kernel_flows\":0,\"passthrough\":0,\"redirects\":0}");
	free(s);
	{
		__u64 errs[2] = { 3, 4 };
		__u32 mid = NM_MAP_SERVICES;

		s = dumps(nm_abi_key_json("nm_map_errors", &mid, sizeof(mid)));
		ck_assert_str_eq(s, "{\"map\":\"nm_services\",\"map_id\":1}");
		free(s);
		s = dumps(nm_abi_value_json("nm_map_errors", errs, 8, 2, true));
		ck_assert_str_eq(s, "7");
		free(s);
		ck_assert_str_eq(nm_abi_map_name(NM_MAP_MAP_ERRORS), "nm_map_errors");
		ck_assert_ptr_null(nm_abi_map_name(NM_MAP__COUNT));
	}
	s = dumps(nm_abi_value_json("nm_lb_rr", rr, 4, 2, true));
	ck_assert_str_eq(s, "{\"per_cpu\":[9,8]}");
	free(s);
}
END_TEST

START_TEST(decode_strict_records)
{
	struct nm_conn_key k = { .sport = htons(40000), .dport = htons(8080) };
	struct nm_strict_stats st[2] = { { .drops = 2, .mesh_admits = 1 }, { .drops = 3 } };
	bool v6;
	char *s;

	ck_assert_int_eq(nm_addr_parse("198.18.0.1", &k.saddr, &v6), 0);
	ck_assert_int_eq(nm_addr_parse("198.18.1.12", &k.daddr, &v6), 0);
	s = dumps(nm_abi_key_json("nm_mesh_conns", &k, sizeof(k)));
	ck_assert_str_eq(s, "{\"dst\":\"198.18.1.12:8080\",\"src\":\"198.18.0.1:40000\"}");
	free(s);
	s = dumps(nm_abi_value_json("nm_strict_drops", st, sizeof(st[0]), 2, true));
	ck_assert_str_eq(s, "{\"drops\":5,\"mesh_admits\":1,\"prober_admits\":0,\"unparsed\":0}");
	free(s);
}
END_TEST

START_TEST(decode_unknown_is_hex)
{
	unsigned char b[3] = { 0x00, 0xab, 0x7f };
	char *s;

	ck_assert(!nm_abi_map_known("nm_something_new", 3, 3));
	s = dumps(nm_abi_key_json("nm_something_new", b, sizeof(b)));
	ck_assert_str_eq(s, "\"00ab7f\"");
	free(s);
	/* A known map whose sizes do not match this ABI: hex too. */
	s = dumps(nm_abi_value_json("nm_workloads", b, sizeof(b), 1, false));
	ck_assert_str_eq(s, "\"00ab7f\"");
	free(s);
}
END_TEST

START_TEST(flag_and_enum_names)
{
	char buf[64];

	nm_abi_wl_flags(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "-");
	nm_abi_wl_flags(NM_WL_MESHED | 0x10, buf, sizeof(buf));
	ck_assert_str_eq(buf, "MESHED|0x10");
	nm_abi_orig_flags(NM_ORIG_SERVICE | NM_ORIG_LOCAL | NM_ORIG_LB_COUNT | NM_ORIG_KERNEL,
			  buf, sizeof(buf));
	ck_assert_str_eq(buf, "SERVICE|LOCAL|LB_COUNT|KERNEL");
	nm_abi_ep_flags(NM_EP_EJECTED, buf, sizeof(buf));
	ck_assert_str_eq(buf, "EJECTED");
	nm_abi_ep_flags(NM_EP_LOCAL | NM_EP_STRICT, buf, sizeof(buf));
	ck_assert_str_eq(buf, "LOCAL|STRICT");
	nm_abi_orig_flags(NM_ORIG_KERNEL | NM_ORIG_DST_STRICT, buf, sizeof(buf));
	ck_assert_str_eq(buf, "KERNEL|DST_STRICT");
	/* Truncation keeps a terminated string. */
	nm_abi_orig_flags(0x1f, buf, 8);
	ck_assert_uint_lt(strlen(buf), 8);
	ck_assert_str_eq(nm_abi_lb_algo_name(NM_LB_LEAST_REQUEST), "least_request");
	ck_assert_str_eq(nm_abi_lb_algo_name(99), "unknown");
	ck_assert_str_eq(nm_abi_locality_name(NM_LB_LOC_STRICT), "strict");
	nm_abi_hostport("10.0.0.1", 8080, buf, sizeof(buf));
	ck_assert_str_eq(buf, "10.0.0.1:8080");
	nm_abi_hostport("fd00::1", 80, buf, sizeof(buf));
	ck_assert_str_eq(buf, "[fd00::1]:80");
}
END_TEST

/* The list parsed from text, as compact JSON (or "NULL"). */
static char *list_of(const char *text)
{
	json_t *l = nm_json_list_parse(text, strlen(text), "flows");

	return l ? dumps(l) : strdup("NULL");
}

START_TEST(json_list_forms)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "[{\"a\":1},{\"a\":2}]", "[{\"a\":1},{\"a\":2}]" },
		{ "{\"flows\":[{\"a\":1}]}\n", "[{\"a\":1}]" },
		{ "{\"a\":1}\n{\"a\":2}\r\n\n", "[{\"a\":1},{\"a\":2}]" },
		{ "{\"a\":1}", "[{\"a\":1}]" },
		{ "", "[]" },
		{ "  \n", "[]" },
		{ "[1,2]", "NULL" },              /* not objects */
		{ "{\"flows\":[1]}", "NULL" },
		{ "{\"flows\":3}", "NULL" },
		{ "{\"a\":1}\nnot json\n", "NULL" },
		{ "{\"a\":1}\n[{\"b\":2}]", "NULL" }, /* a line that is no object */
		{ "[{\"a\":1}] trailing", "NULL" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *got = list_of(cases[i].in);

		ck_assert_msg(!strcmp(got, cases[i].want), "case %zu: %s -> %s, want %s", i,
			      cases[i].in, got, cases[i].want);
		free(got);
	}
}
END_TEST

static Suite *cli_suite(void)
{
	Suite *s = suite_create("cli");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, table_aligns_columns);
	tcase_add_test(tc, table_empty_cells_print_dash);
	tcase_add_test(tc, table_indent_and_limits);
	tcase_add_test(tc, decode_workload);
	tcase_add_test(tc, decode_service_key_and_backend_slot);
	tcase_add_test(tc, decode_percpu_sums_counters);
	tcase_add_test(tc, decode_strict_records);
	tcase_add_test(tc, decode_unknown_is_hex);
	tcase_add_test(tc, flag_and_enum_names);
	tcase_add_test(tc, json_list_forms);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(cli_suite)
