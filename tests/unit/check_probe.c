// SPDX-License-Identifier: Apache-2.0
/*
 * check_probe.c - kernel feature probe (agent/probe.c): the required-feature
 * verdict, fallback choices, the state file `nodemesh status` reads, and a
 * live probe of the running kernel (root only; it creates and removes one
 * temporary cgroup and never attaches anywhere else).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "nm_check.h"
#include "datapath/probe.h"

static void all_present(struct nm_features *f)
{
	memset(f, 0, sizeof(*f));
	f->sock_addr = f->sockops = f->lru_hash = f->socket_cookie = true;
	f->cgroup_link = f->ringbuf = f->sk_storage = f->netns_cookie = true;
	f->sockmap = f->ktls = f->ktls_crypto = f->map_fd_unpriv = true;
	snprintf(f->kernel_release, sizeof(f->kernel_release), "6.1.0-test");
}

START_TEST(test_required_all_present)
{
	struct nm_features f;

	all_present(&f);
	ck_assert_ptr_null(nm_probe_required_missing(&f));
	/* Optional features do not matter for the verdict. */
	f.ringbuf = f.sk_storage = f.netns_cookie = f.sockmap = false;
	f.ktls = f.ktls_crypto = f.map_fd_unpriv = false;
	ck_assert_ptr_null(nm_probe_required_missing(&f));
}
END_TEST

/* Each required feature, when missing, is named with its minimum kernel. */
START_TEST(test_required_each_named)
{
	static const struct {
		size_t off;
		const char *word, *kernel;
	} cases[] = {
		{ offsetof(struct nm_features, sock_addr), "connect4", "4.17" },
		{ offsetof(struct nm_features, sockops), "sockops", "4.13" },
		{ offsetof(struct nm_features, lru_hash), "LRU hash", "4.10" },
		{ offsetof(struct nm_features, socket_cookie), "bpf_get_socket_cookie", "4.19" },
		{ offsetof(struct nm_features, cgroup_link), "bpf_link", "5.7" },
	};
	struct nm_features f;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *msg;

		all_present(&f);
		*(bool *)((char *)&f + cases[i].off) = false;
		msg = nm_probe_required_missing(&f);
		ck_assert_ptr_nonnull(msg);
		ck_assert_msg(strstr(msg, cases[i].word), "'%s' lacks '%s'", msg, cases[i].word);
		ck_assert_msg(strstr(msg, cases[i].kernel), "'%s' lacks '%s'", msg, cases[i].kernel);
	}
}
END_TEST

START_TEST(test_info_rows_match_fields)
{
	const struct nm_feature_info *info;
	struct nm_features f;
	size_t n, required = 0;

	info = nm_probe_info(&n);
	ck_assert_uint_ge(n, 12);
	for (size_t i = 0; i < n; i++) {
		memset(&f, 0, sizeof(f));
		ck_assert_msg(!nm_probe_get(&f, info[i].name), "%s", info[i].name);
		all_present(&f);
		ck_assert_msg(nm_probe_get(&f, info[i].name), "%s not a field", info[i].name);
		ck_assert_ptr_nonnull(info[i].min_kernel);
		ck_assert_ptr_nonnull(info[i].use);
		/* Required rows have no fallback; optional rows must say one. */
		if (info[i].required) {
			required++;
			ck_assert_ptr_null(info[i].fallback);
		} else {
			ck_assert_ptr_nonnull(info[i].fallback);
		}
	}
	ck_assert_uint_eq(required, 5);
	ck_assert(!nm_probe_get(&f, "no_such_feature"));
}
END_TEST

START_TEST(test_choose)
{
	struct nm_features f;
	struct nm_choices c, want = { .flow_events = true, .ktls = true };

	all_present(&f);
	nm_probe_choose(&f, NULL, &c);
	ck_assert(c.flow_events && c.sock_stats && c.ktls && c.sockmap);

	/* Only what is asked for. */
	nm_probe_choose(&f, &want, &c);
	ck_assert(c.flow_events && c.ktls);
	ck_assert(!c.sock_stats && !c.sockmap);

	/* kTLS needs both the ULP and the cipher (5.10 cloud has neither;
	 * a kernel without gcm(aes) has the ULP only). */
	f.ktls_crypto = false;
	nm_probe_choose(&f, NULL, &c);
	ck_assert(!c.ktls);
	ck_assert(!c.events_perfbuf);
	f.ringbuf = f.sk_storage = f.sockmap = false;
	nm_probe_choose(&f, NULL, &c);
	/* Flow events fall back to the perf buffer. */
	ck_assert(c.flow_events && c.events_perfbuf);
	ck_assert(!c.sock_stats && !c.sockmap);
}
END_TEST

START_TEST(test_keep_caps)
{
	struct nm_features f;
	uint64_t m;

	all_present(&f);
	ck_assert_uint_eq(nm_probe_keep_caps(&f), 0);
	f.map_fd_unpriv = false;
	m = nm_probe_keep_caps(&f);
	/* Exactly one of CAP_BPF (39) or CAP_SYS_ADMIN (21). */
	ck_assert(m == 1ull << 39 || m == 1ull << 21);
}
END_TEST

START_TEST(test_state_path)
{
	char buf[256];

	ck_assert_int_eq(nm_probe_state_path(NULL, "n1", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, NM_RUN_DIR "/n1/features.json");
	ck_assert_int_eq(nm_probe_state_path("/tmp/x", NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/tmp/x/default/features.json");
	ck_assert_int_eq(nm_probe_state_path("/tmp/x", "n1", buf, 10), -ENAMETOOLONG);
}
END_TEST

static char tmpdir[64];

static void tmp_setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/nm-check-probe.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

START_TEST(test_save_load_roundtrip)
{
	struct nm_features f, g;
	struct nm_choices c = { .flow_events = true, .sockmap = true,
				.events_perfbuf = true }, d;
	char path[256];
	pid_t pid = 0;

	all_present(&f);
	f.ktls = f.ktls_crypto = false;
	f.attach_tested = true;
	/* The directory does not exist yet: save creates it. */
	ck_assert_int_eq(nm_probe_state_path(tmpdir, "inst-a", path, sizeof(path)), 0);
	ck_assert_int_eq(nm_probe_save(path, &f, &c, 4242), 0);
	ck_assert_int_eq(access(path, R_OK), 0);
	ck_assert_int_eq(nm_probe_load(path, &g, &d, &pid), 0);
	ck_assert_int_eq(pid, 4242);
	ck_assert_str_eq(g.kernel_release, "6.1.0-test");
	ck_assert(g.attach_tested);
	ck_assert(g.cgroup_link && g.ringbuf && g.map_fd_unpriv);
	ck_assert(!g.ktls && !g.ktls_crypto);
	ck_assert(d.flow_events && d.sockmap && !d.ktls && !d.sock_stats);
	ck_assert(d.events_perfbuf);
	/* No temporary file is left beside it. */
	strcat(path, ".tmp");
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(test_load_errors)
{
	struct nm_features f;
	struct nm_choices c;
	char path[256];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/missing.json", tmpdir);
	ck_assert_int_eq(nm_probe_load(path, &f, &c, &pid), -ENOENT);

	snprintf(path, sizeof(path), "%s/broken.json", tmpdir);
	write_file(path, "{ \"pid\": 1, ");
	ck_assert_int_eq(nm_probe_load(path, &f, &c, &pid), -EINVAL);

	/* Well-formed JSON without the choices object. */
	snprintf(path, sizeof(path), "%s/nochoices.json", tmpdir);
	write_file(path, "{ \"pid\": 1, \"kernel_release\": \"x\", \"features\": {} }");
	ck_assert_int_eq(nm_probe_load(path, &f, &c, &pid), -EINVAL);

	/* Unknown feature names (a newer agent) are skipped, known ones read. */
	snprintf(path, sizeof(path), "%s/newer.json", tmpdir);
	write_file(path, "{ \"pid\": 7, \"kernel_release\": \"6.12\", "
			 "\"features\": { \"ringbuf\": true, \"warp_drive\": true }, "
			 "\"choices\": { \"ktls\": true } }");
	ck_assert_int_eq(nm_probe_load(path, &f, &c, &pid), 0);
	ck_assert_int_eq(pid, 7);
	ck_assert(f.ringbuf && !f.sockops);
	ck_assert(c.ktls && !c.flow_events);
}
END_TEST

/* The cgroup v2 mount, as probe.c finds it; "" when there is none. */
static void cgroup2_mount(char *buf, size_t len)
{
	char line[4096], mnt[1024], fstype[64];
	FILE *fp = fopen("/proc/self/mountinfo", "r");

	buf[0] = '\0';
	if (!fp)
		return;
	while (fgets(line, sizeof(line), fp)) {
		const char *sep = strstr(line, " - ");

		if (sep && sscanf(sep + 3, "%63s", fstype) == 1 &&
		    strcmp(fstype, "cgroup2") == 0 &&
		    sscanf(line, "%*s %*s %*s %*s %1023s", mnt) == 1) {
			snprintf(buf, len, "%s", mnt);
			break;
		}
	}
	fclose(fp);
}

static bool ulp_has_tls(void)
{
	char buf[256] = "";
	FILE *fp = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");

	if (!fp)
		return false;
	if (!fgets(buf, sizeof(buf), fp))
		buf[0] = '\0';
	fclose(fp);
	return strstr(buf, "tls") != NULL;
}

START_TEST(test_live_probe)
{
	struct nm_features f;
	struct utsname u;
	char mnt[1024], probe_dir[1200];
	struct stat st;
	int ret;

	if (geteuid() != 0) {
		fprintf(stderr, "check_probe: not root, live probe limited\n");
		ret = nm_probe_features(&f);
		ck_assert(ret == 0 || ret == -EPERM);
		return;
	}
	ck_assert_int_eq(nm_probe_features(&f), 0);
	ck_assert_int_eq(uname(&u), 0);
	ck_assert_str_eq(f.kernel_release, u.release);
	/* Every kernel nodemesh runs on (5.10+) has these. */
	ck_assert(f.lru_hash && f.sock_addr && f.sockops);
	ck_assert_ptr_null(nm_probe_required_missing(&f));
	/* Probing may load tls on demand, never unload it: after the probe
	 * the ULP list agrees with the verdict. */
	ck_assert_int_eq(f.ktls, ulp_has_tls());
	if (f.ktls_crypto)
		ck_assert(f.ktls);
	/* The temporary cgroup is gone again. */
	cgroup2_mount(mnt, sizeof(mnt));
	if (mnt[0]) {
		ck_assert(f.attach_tested);
		snprintf(probe_dir, sizeof(probe_dir), "%s/nm-probe-%ld", mnt, (long)getpid());
		ck_assert_int_eq(stat(probe_dir, &st), -1);
		ck_assert_int_eq(errno, ENOENT);
	}
}
END_TEST

static Suite *probe_suite(void)
{
	Suite *s = suite_create("probe");
	TCase *tc = tcase_create("logic");
	TCase *tf = tcase_create("state file");
	TCase *tl = tcase_create("live");

	tcase_add_test(tc, test_required_all_present);
	tcase_add_test(tc, test_required_each_named);
	tcase_add_test(tc, test_info_rows_match_fields);
	tcase_add_test(tc, test_choose);
	tcase_add_test(tc, test_keep_caps);
	tcase_add_test(tc, test_state_path);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(tf, tmp_setup, tmp_teardown);
	tcase_add_test(tf, test_save_load_roundtrip);
	tcase_add_test(tf, test_load_errors);
	suite_add_tcase(s, tf);

	tcase_set_timeout(tl, 30);
	tcase_add_test(tl, test_live_probe);
	suite_add_tcase(s, tl);
	return s;
}

NM_CHECK_MAIN(probe_suite)
