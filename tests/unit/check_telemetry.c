// SPDX-License-Identifier: Apache-2.0
/*
 * check_telemetry.c - the metrics registry (telemetry/metrics.c): series
 * by label values, the text exposition with its escaping, histograms, the
 * cardinality cap and its overflow series; the flow log
 * (telemetry/flowlog.c): modes, sampling, rotation by size keeping N files;
 * the admin query parsing (telemetry/query.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "nm_check.h"
#include "telemetry/flowlog.h"
#include "telemetry/internal.h"
#include "telemetry/metrics.h"

static char *render(const struct nm_metrics *m)
{
	struct nm_sbuf b = { 0 };
	char *s;

	nm_metrics_render(m, &b);
	s = nm_sbuf_take(&b, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(test_counter_series)
{
	const char *labels[] = { "reporter", "source_workload" };
	struct nm_metric_family *f;
	struct nm_metric_series *a, *b;
	struct nm_metrics m;
	char *out;

	nm_metrics_init(&m);
	f = nm_metrics_add(&m, "istio_tcp_sent_bytes_total", "Bytes sent", NM_METRIC_COUNTER,
			   labels, 2, NULL, 0, 100);
	ck_assert_ptr_nonnull(f);
	a = nm_metric_getv(f, "source", "client");
	b = nm_metric_getv(f, "destination", "client");
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_ne(a, b);
	ck_assert_ptr_eq(nm_metric_getv(f, "source", "client"), a); /* same set */
	nm_metric_add(a, 1000);
	nm_metric_add(a, 234);
	nm_metric_add(b, 5);
	out = render(&m);
	ck_assert_str_eq(out,
			 "# HELP istio_tcp_sent_bytes_total Bytes sent\n"
			 "# TYPE istio_tcp_sent_bytes_total counter\n"
			 "istio_tcp_sent_bytes_total{reporter=\"source\",source_workload=\"client\"} 1234\n"
			 "istio_tcp_sent_bytes_total{reporter=\"destination\",source_workload=\"client\"} 5\n");
	free(out);
	/* Bad names are refused. */
	ck_assert_ptr_null(nm_metrics_add(&m, "9bad", "", NM_METRIC_GAUGE, NULL, 0, NULL, 0, 1));
	ck_assert_ptr_null(nm_metrics_add(&m, "ok", "", NM_METRIC_GAUGE,
					  (const char *[]){ "a:b" }, 1, NULL, 0, 1));
	nm_metrics_free(&m);
}
END_TEST

START_TEST(test_escaping)
{
	const char *labels[] = { "v" };
	struct nm_metric_family *f;
	struct nm_metrics m;
	char *out;

	nm_metrics_init(&m);
	f = nm_metrics_add(&m, "g", "line one\nback\\slash \"quoted\"", NM_METRIC_GAUGE,
			   labels, 1, NULL, 0, 10);
	nm_metric_set(nm_metric_getv(f, "a\"b\\c\nd"), -2.5);
	nm_metric_set(nm_metric_getv(f, ""), 1e300 * 1e300); /* +Inf */
	out = render(&m);
	ck_assert_str_eq(out,
			 "# HELP g line one\\nback\\\\slash \"quoted\"\n"
			 "# TYPE g gauge\n"
			 "g{v=\"a\\\"b\\\\c\\nd\"} -2.5\n"
			 "g{v=\"\"} +Inf\n");
	free(out);
	nm_metrics_free(&m);
}
END_TEST

START_TEST(test_histogram)
{
	const double bounds[] = { 0.25, 1, 2.5 };
	const char *labels[] = { "direction" };
	struct nm_metric_family *f;
	struct nm_metric_series *s;
	struct nm_metrics m;
	struct nm_sbuf b = { 0 };
	char *out;

	nm_metrics_init(&m);
	ck_assert_ptr_null(nm_metrics_add(&m, "h", "", NM_METRIC_HISTOGRAM, labels, 1,
					  (const double[]){ 1, 0.5 }, 2, 4)); /* not ascending */
	f = nm_metrics_add(&m, "lat_seconds", "Latency", NM_METRIC_HISTOGRAM, labels, 1,
			   bounds, 3, 4);
	s = nm_metric_getv(f, "outbound");
	/* Binary fractions: the sum is exact. */
	nm_metric_observe(f, s, 0.125);
	nm_metric_observe(f, s, 0.25); /* le is inclusive */
	nm_metric_observe(f, s, 0.5);
	nm_metric_observe(f, s, 3);
	out = render(&m);
	ck_assert_str_eq(out,
			 "# HELP lat_seconds Latency\n"
			 "# TYPE lat_seconds histogram\n"
			 "lat_seconds_bucket{direction=\"outbound\",le=\"0.25\"} 2\n"
			 "lat_seconds_bucket{direction=\"outbound\",le=\"1\"} 3\n"
			 "lat_seconds_bucket{direction=\"outbound\",le=\"2.5\"} 3\n"
			 "lat_seconds_bucket{direction=\"outbound\",le=\"+Inf\"} 4\n"
			 "lat_seconds_sum{direction=\"outbound\"} 3.875\n"
			 "lat_seconds_count{direction=\"outbound\"} 4\n");
	free(out);
	nm_metrics_render_stats(&m, &b);
	out = nm_sbuf_take(&b, NULL);
	ck_assert_str_eq(out, "lat_seconds_count{direction=\"outbound\"}: 4\n"
			      "lat_seconds_sum{direction=\"outbound\"}: 3.875\n");
	free(out);
	nm_metrics_free(&m);
}
END_TEST

START_TEST(test_cardinality_cap)
{
	const char *labels[] = { "workload" };
	struct nm_metric_family *f;
	struct nm_metric_series *s, *first, *over;
	struct nm_metrics m;
	char name[32], *out;

	nm_metrics_init(&m);
	f = nm_metrics_add(&m, "c_total", "", NM_METRIC_COUNTER, labels, 1, NULL, 0, 100);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "w%d", i);
		s = nm_metric_getv(f, name);
		ck_assert_ptr_ne(s, f->overflow);
		nm_metric_add(s, 1);
	}
	first = nm_metric_getv(f, "w0");
	ck_assert_uint_eq(f->n_series, 100);
	ck_assert_uint_eq(f->dropped, 0);
	/* Past the cap: one overflow series, every label "other", counted. */
	over = nm_metric_getv(f, "w100");
	ck_assert_ptr_nonnull(over);
	ck_assert_ptr_eq(over, f->overflow);
	ck_assert_str_eq(over->values[0], NM_METRIC_OVERFLOW);
	nm_metric_add(over, 1);
	nm_metric_add(nm_metric_getv(f, "w101"), 1);
	ck_assert_ptr_eq(nm_metric_getv(f, "w0"), first); /* old sets stay */
	ck_assert_uint_eq(f->n_series, 100);
	ck_assert_uint_eq(f->dropped, 2);
	out = render(&m);
	ck_assert_ptr_nonnull(strstr(out, "\nc_total{workload=\"other\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(out, "\nc_total{workload=\"w99\"} 1\n"));
	ck_assert_ptr_null(strstr(out, "w100"));
	free(out);
	nm_metrics_free(&m);
}
END_TEST

static char tmpdir[64];

static void mk_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/nm-check-telemetry-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static off_t fsize(const char *p)
{
	struct stat sb;

	return stat(p, &sb) ? -1 : sb.st_size;
}

static unsigned int count_lines(const char *p)
{
	FILE *f = fopen(p, "r");
	unsigned int n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

START_TEST(test_flowlog_rotation)
{
	struct nm_flowlog_cfg cfg = { .mode = NM_FLOWLOG_FULL, .max_bytes = 4096, .keep = 2 };
	struct nm_flowlog_stats st;
	struct nm_flowlog *l;
	char line[100], path[128], p1[140], p2[140], p3[140];
	unsigned int total;

	mk_tmp();
	snprintf(path, sizeof(path), "%s/flows.log", tmpdir);
	snprintf(cfg.file, sizeof(cfg.file), "%s", path);
	snprintf(p1, sizeof(p1), "%s.1", path);
	snprintf(p2, sizeof(p2), "%s.2", path);
	snprintf(p3, sizeof(p3), "%s.3", path);
	ck_assert_int_eq(nm_flowlog_open(&cfg, &l), 0);
	ck_assert_ptr_nonnull(l);
	memset(line, 'x', sizeof(line));
	/* 99 bytes a line with its newline; 200 lines = 19800 bytes: more
	 * than four files' worth, so rotation ran and dropped the oldest. */
	for (int i = 0; i < 200; i++) {
		ck_assert(nm_flowlog_wants(l));
		nm_flowlog_append(l, line, 98);
		if (i % 30 == 29)
			ck_assert_int_eq(nm_flowlog_flush(l), 0);
	}
	ck_assert_int_eq(nm_flowlog_flush(l), 0);
	nm_flowlog_get_stats(l, &st);
	ck_assert_uint_eq(st.records, 200);
	ck_assert_uint_ge(st.rotations, 4);
	ck_assert_uint_eq(st.dropped, 0);
	ck_assert_int_le(fsize(path), 4096);
	ck_assert_int_le(fsize(p1), 4096);
	ck_assert_int_gt(fsize(p1), 4096 - 99); /* filled before rotating */
	ck_assert_int_le(fsize(p2), 4096);
	ck_assert_int_eq(fsize(p3), -1); /* keep 2 */
	total = count_lines(path) + count_lines(p1) + count_lines(p2);
	ck_assert_uint_eq(total % 41, count_lines(path) % 41); /* whole lines per file */
	ck_assert_uint_eq(count_lines(p1), 41);
	nm_flowlog_close(l);
	unlink(path);
	unlink(p1);
	unlink(p2);
	rmdir(tmpdir);
}
END_TEST

START_TEST(test_flowlog_keep_zero_and_modes)
{
	struct nm_flowlog_cfg cfg = { .mode = NM_FLOWLOG_FULL, .max_bytes = 4096, .keep = 0 };
	struct nm_flowlog_stats st;
	struct nm_flowlog *l;
	char line[200], path[128], p1[140];
	int kept = 0;

	mk_tmp();
	snprintf(path, sizeof(path), "%s/f.log", tmpdir);
	snprintf(p1, sizeof(p1), "%s.1", path);
	snprintf(cfg.file, sizeof(cfg.file), "%s", path);
	memset(line, 'y', sizeof(line));
	ck_assert_int_eq(nm_flowlog_open(&cfg, &l), 0);
	for (int i = 0; i < 100; i++)
		nm_flowlog_append(l, line, 199);
	ck_assert_int_eq(nm_flowlog_flush(l), 0);
	ck_assert_int_le(fsize(path), 4096);
	ck_assert_int_eq(fsize(p1), -1); /* truncated, none kept */
	nm_flowlog_close(l);
	unlink(path);

	cfg.mode = NM_FLOWLOG_OFF;
	ck_assert_int_eq(nm_flowlog_open(&cfg, &l), 0);
	ck_assert_ptr_null(l);
	ck_assert(!nm_flowlog_wants(NULL));

	cfg.mode = NM_FLOWLOG_SAMPLED;
	cfg.sample_rate = 0.25;
	cfg.max_bytes = 1 << 20;
	ck_assert_int_eq(nm_flowlog_open(&cfg, &l), 0);
	for (int i = 0; i < 4000; i++)
		kept += nm_flowlog_wants(l);
	nm_flowlog_get_stats(l, &st);
	ck_assert_uint_eq(st.sampled_out, 4000 - (unsigned int)kept);
	/* 1000 expected; 6 sigma is about 165. */
	ck_assert_int_gt(kept, 800);
	ck_assert_int_lt(kept, 1200);
	nm_flowlog_close(l);
	unlink(path);
	rmdir(tmpdir);
}
END_TEST

START_TEST(test_flowlog_unwritable)
{
	struct nm_flowlog_cfg cfg = { .mode = NM_FLOWLOG_FULL, .max_bytes = 4096 };
	struct nm_flowlog *l = (void *)1;

	snprintf(cfg.file, sizeof(cfg.file), "/nonexistent-dir/x/flows.log");
	ck_assert_int_eq(nm_flowlog_open(&cfg, &l), -ENOENT);
	ck_assert_ptr_null(l);
}
END_TEST

START_TEST(test_admin_queries)
{
	struct nm_tel_entry e = { 0 };
	int level = -1;

	ck_assert_int_eq(nm_tel_parse_log_level("debug", &level), 0);
	ck_assert_int_eq(level, NM_LOG_DEBUG);
	ck_assert_int_eq(nm_tel_parse_log_level("WARNING", &level), 0);
	ck_assert_int_eq(level, NM_LOG_WARN);
	ck_assert_int_eq(nm_tel_parse_log_level("access=debug,proxy=info", &level), 0);
	ck_assert_int_eq(level, NM_LOG_INFO);
	ck_assert_int_eq(nm_tel_parse_log_level("loud", &level), -EINVAL);
	ck_assert_int_eq(nm_tel_parse_log_level("", &level), -EINVAL);
	ck_assert_int_eq(nm_tel_parse_log_level("info,", &level), -EINVAL);
	snprintf(e.src, sizeof(e.src), "default/client");
	snprintf(e.dst, sizeof(e.dst), "prod/echo");
	ck_assert(nm_tel_entry_match(&e, NULL));
	ck_assert(nm_tel_entry_match(&e, "client"));
	ck_assert(nm_tel_entry_match(&e, "echo"));
	ck_assert(nm_tel_entry_match(&e, "prod/echo"));
	ck_assert(!nm_tel_entry_match(&e, "default/echo"));
	ck_assert(!nm_tel_entry_match(&e, "cli"));
}
END_TEST

static Suite *telemetry_suite(void)
{
	Suite *s = suite_create("telemetry");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_counter_series);
	tcase_add_test(tc, test_escaping);
	tcase_add_test(tc, test_histogram);
	tcase_add_test(tc, test_cardinality_cap);
	tcase_add_test(tc, test_flowlog_rotation);
	tcase_add_test(tc, test_flowlog_keep_zero_and_modes);
	tcase_add_test(tc, test_flowlog_unwritable);
	tcase_add_test(tc, test_admin_queries);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(telemetry_suite)
