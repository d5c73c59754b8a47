// SPDX-License-Identifier: Apache-2.0
/*
 * check_lib.c - lib/ pieces the CLI and the agent share: the mountinfo
 * parser (optional fields, escapes, hybrid cgroup v1 + v2 hosts), pin and
 * run-state paths, pin directory removal, and JSON document output.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "nm_check.h"
#include "lib/json.h"
#include "lib/mountinfo.h"
#include "lib/pins.h"

/* A Debian 10-style hybrid host: v1 controllers, v2 at .../unified. */
static const char hybrid[] =
	"21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
	"25 21 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
	"26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd\n"
	"27 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct\n"
	"28 25 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:12 - cgroup2 cgroup2 rw,nsdelegate\n"
	"29 21 0:27 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:13 - bpf bpf rw,mode=700\n";

static const char pure_v2[] =
	"24 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";

static int find_in(const char *text, const char *fstype, char *buf, size_t len)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int ret;

	ck_assert_ptr_nonnull(f);
	ret = nm_mountinfo_find_fp(f, fstype, buf, len);
	fclose(f);
	return ret;
}

START_TEST(test_mountinfo_line)
{
	char line[] = "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n";
	struct nm_mountinfo m;

	ck_assert_int_eq(nm_mountinfo_parse_line(line, &m), 0);
	ck_assert_uint_eq(m.mount_id, 36);
	ck_assert_uint_eq(m.parent_id, 35);
	ck_assert_uint_eq(m.major, 98);
	ck_assert_uint_eq(m.minor, 0);
	ck_assert_str_eq(m.root, "/mnt1");
	ck_assert_str_eq(m.mount_point, "/mnt2");
	ck_assert_str_eq(m.options, "rw,noatime");
	ck_assert_str_eq(m.fstype, "ext3");
	ck_assert_str_eq(m.source, "/dev/root");
	ck_assert_str_eq(m.super_options, "rw,errors=continue");
}
END_TEST

START_TEST(test_mountinfo_no_optional_fields)
{
	char line[] = "1 0 0:1 / / rw - rootfs rootfs rw";
	struct nm_mountinfo m;

	ck_assert_int_eq(nm_mountinfo_parse_line(line, &m), 0);
	ck_assert_str_eq(m.mount_point, "/");
	ck_assert_str_eq(m.fstype, "rootfs");
	ck_assert_str_eq(m.super_options, "rw");
}
END_TEST

START_TEST(test_mountinfo_escapes)
{
	char line[] = "40 21 0:30 /a\\134b /mnt/with\\040space\\011tab rw shared:3 - cgroup2 my\\040src rw\n";
	struct nm_mountinfo m;

	ck_assert_int_eq(nm_mountinfo_parse_line(line, &m), 0);
	ck_assert_str_eq(m.root, "/a\\b");
	ck_assert_str_eq(m.mount_point, "/mnt/with space\ttab");
	ck_assert_str_eq(m.source, "my src");
	/* Not an escape (digit 8, too short): kept as it is. */
	char line2[] = "41 21 0:31 / /x\\08y\\04 rw - tmpfs t rw";
	ck_assert_int_eq(nm_mountinfo_parse_line(line2, &m), 0);
	ck_assert_str_eq(m.mount_point, "/x\\08y\\04");
}
END_TEST

START_TEST(test_mountinfo_malformed)
{
	static const char *const bad[] = {
		"",
		"36 35 98:0 /mnt1 /mnt2",                      /* too short */
		"36 35 98:0 /mnt1 /mnt2 rw master:1 ext3 src rw", /* no separator */
		"36 35 98:0 /mnt1 /mnt2 rw - ext3",            /* fields after it missing */
		"x 35 98:0 / /m rw - ext3 src rw",             /* id not a number */
		"36 35 98 / /m rw - ext3 src rw",              /* no major:minor */
		"36 35 98:z / /m rw - ext3 src rw",
	};
	struct nm_mountinfo m;
	char line[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "%s", bad[i]);
		ck_assert_msg(nm_mountinfo_parse_line(line, &m) == -EINVAL,
			      "accepted \"%s\"", bad[i]);
	}
}
END_TEST

START_TEST(test_mountinfo_hybrid)
{
	char buf[PATH_MAX];

	/* "cgroup" (v1) entries come first and must not match "cgroup2". */
	ck_assert_int_eq(find_in(hybrid, "cgroup2", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/cgroup/unified");
	ck_assert_int_eq(find_in(hybrid, "cgroup", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/cgroup/systemd");
	ck_assert_int_eq(find_in(hybrid, "bpf", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/bpf");
	ck_assert_int_eq(find_in(pure_v2, "cgroup2", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/cgroup");
	ck_assert_int_eq(find_in(pure_v2, "bpf", buf, sizeof(buf)), -ENOENT);
	ck_assert_int_eq(find_in("", "cgroup2", buf, sizeof(buf)), -ENOENT);
	ck_assert_int_eq(find_in(hybrid, "cgroup2", buf, 8), -ENAMETOOLONG);
}
END_TEST

START_TEST(test_mountinfo_find_skips_garbage)
{
	static const char text[] =
		"garbage line\n"
		"50 1 0:40 / /run/a\\040b rw shared:1 - cgroup2 none rw\n";
	char buf[PATH_MAX];

	ck_assert_int_eq(find_in(text, "cgroup2", buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/a b");
	ck_assert_int_eq(nm_mountinfo_find("/nonexistent/mountinfo", "cgroup2", buf,
					   sizeof(buf)), -ENOENT);
}
END_TEST

/* This host's cgroup v2 mount, as the agent and the CLI both find it. */
START_TEST(test_mountinfo_live)
{
	char buf[PATH_MAX];
	struct statfs sfs;

	ck_assert_int_eq(nm_cgroup2_mount_point(buf, sizeof(buf)), 0);
	ck_assert_int_eq(statfs(buf, &sfs), 0);
	ck_assert(sfs.f_type == CGROUP2_SUPER_MAGIC);
}
END_TEST

START_TEST(test_instance_valid)
{
	char longname[NM_INSTANCE_MAX + 2];

	ck_assert(nm_instance_valid("default"));
	ck_assert(nm_instance_valid("nm-run_1.n2"));
	ck_assert(!nm_instance_valid(NULL));
	ck_assert(!nm_instance_valid(""));
	ck_assert(!nm_instance_valid("."));
	ck_assert(!nm_instance_valid(".."));
	ck_assert(!nm_instance_valid("a/b"));
	ck_assert(!nm_instance_valid("a b"));
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert(!nm_instance_valid(longname));
	longname[NM_INSTANCE_MAX] = '\0';
	ck_assert(nm_instance_valid(longname));
}
END_TEST

START_TEST(test_paths)
{
	char buf[256];

	ck_assert_int_eq(nm_pin_path(NULL, NULL, NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/bpf/nodemesh/default");
	ck_assert_int_eq(nm_pin_path(NULL, "n1", NM_PIN_AGENT_STATE, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/sys/fs/bpf/nodemesh/n1/nm_agent_state");
	ck_assert_int_eq(nm_run_path(NULL, "n1", NM_RUN_FEATURES_FILE, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/run/nodemesh/n1/features.json");
	ck_assert_int_eq(nm_run_path("/tmp/r", "n1", NULL, buf, sizeof(buf)), 0);
	ck_assert_str_eq(buf, "/tmp/r/n1");
	ck_assert_int_eq(nm_pin_path(NULL, "../etc", NULL, buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(nm_pin_path(NULL, "n1", "a/b", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(nm_pin_path(NULL, "n1", "", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(nm_pin_path(NULL, "n1", NULL, buf, 10), -ENAMETOOLONG);
}
END_TEST

static void touch(const char *dir, const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
}

START_TEST(test_pins_remove)
{
	char base[] = "/tmp/nm-check-lib-XXXXXX", dir[PATH_MAX];

	ck_assert_ptr_nonnull(mkdtemp(base));
	/* Never there: nothing to do. */
	ck_assert_int_eq(nm_pins_remove(base, "inst"), 0);
	ck_assert_int_eq(nm_pins_remove(base, "../x"), -EINVAL);

	snprintf(dir, sizeof(dir), "%s/inst", base);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	touch(dir, "link_connect4");
	touch(dir, "nm_workloads");
	touch(dir, "other");
	ck_assert_int_eq(nm_pins_remove(base, "inst"), 0);
	ck_assert_int_eq(access(dir, F_OK), -1);
	ck_assert_int_eq(errno, ENOENT);

	/* What cannot go is reported, not hidden. */
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/sub");
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_lt(nm_pins_remove(base, "inst"), 0);
	ck_assert_int_eq(rmdir(dir), 0);
	*strrchr(dir, '/') = '\0';
	ck_assert_int_eq(rmdir(dir), 0);
	ck_assert_int_eq(rmdir(base), 0);
}
END_TEST

static char *print_to_string(json_t *doc, bool pretty, int *ret)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(f);
	*ret = nm_json_print(f, doc, pretty);
	fclose(f);
	return buf;
}

START_TEST(test_json_print)
{
	char *s;
	int ret;

	s = print_to_string(json_pack("{s:s, s:i, s:o}", "b", "x", "a", 1,
				      "n", nm_json_str_or_null(NULL)), false, &ret);
	ck_assert_int_eq(ret, 0);
	/* Compact, in insertion order, one line. */
	ck_assert_str_eq(s, "{\"b\":\"x\",\"a\":1,\"n\":null}\n");
	free(s);
	s = print_to_string(json_pack("{s:[i]}", "k", 7), true, &ret);
	ck_assert_int_eq(ret, 0);
	ck_assert_str_eq(s, "{\n  \"k\": [\n    7\n  ]\n}\n");
	free(s);
	s = print_to_string(NULL, false, &ret);
	ck_assert_int_eq(ret, -ENOMEM);
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

static Suite *lib_suite(void)
{
	Suite *s = suite_create("lib");
	TCase *tc = tcase_create("mountinfo");

	tcase_add_test(tc, test_mountinfo_line);
	tcase_add_test(tc, test_mountinfo_no_optional_fields);
	tcase_add_test(tc, test_mountinfo_escapes);
	tcase_add_test(tc, test_mountinfo_malformed);
	tcase_add_test(tc, test_mountinfo_hybrid);
	tcase_add_test(tc, test_mountinfo_find_skips_garbage);
	tcase_add_test(tc, test_mountinfo_live);
	suite_add_tcase(s, tc);
	tc = tcase_create("pins");
	tcase_add_test(tc, test_instance_valid);
	tcase_add_test(tc, test_paths);
	tcase_add_test(tc, test_pins_remove);
	suite_add_tcase(s, tc);
	tc = tcase_create("json");
	tcase_add_test(tc, test_json_print);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(lib_suite)
