/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpf_world.h - what the BPF suites (test_datapath, test_policy, test_lb)
 * share: reading pinned maps, sockets on loopback, cgroups they create and
 * remove. Include it after declaring `static char g_pin[]`, the pin
 * directory of the suite's datapath instance.
 */
#ifndef NM_TEST_BPF_WORLD_H
#define NM_TEST_BPF_WORLD_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lib/addr.h"
#include "nm_abi.h"
#include "../unit/nm_check.h"

static inline int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -errno;
}

static inline struct nm_addr addr_of(const char *s)
{
	struct nm_addr a;

	ck_assert_int_eq(nm_addr_parse(s, &a, NULL), 0);
	return a;
}

static inline int pinned_fd(const char *name)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", g_pin, name);
	fd = bpf_obj_get(path);
	ck_assert_msg(fd >= 0, "bpf_obj_get %s: %s", path, strerror(errno));
	return fd;
}

static inline unsigned int count_keys(const char *map)
{
	unsigned char key[64], next[64];
	unsigned int n = 0;
	int fd = pinned_fd(map);
	void *prev = NULL;

	while (bpf_map_get_next_key(fd, prev, next) == 0) {
		memcpy(key, next, sizeof(key));
		prev = key;
		n++;
	}
	close(fd);
	return n;
}

static inline struct nm_wl_stats wl_stats(uint32_t wl_id)
{
	int ncpu = libbpf_num_possible_cpus();
	struct nm_wl_stats sum = { 0 }, *v;
	int fd = pinned_fd("nm_wl_stats");

	ck_assert_int_gt(ncpu, 0);
	v = calloc(ncpu, sizeof(*v));
	ck_assert_ptr_nonnull(v);
	if (bpf_map_lookup_elem(fd, &wl_id, v) == 0) {
		for (int i = 0; i < ncpu; i++) {
			sum.connects += v[i].connects;
			sum.redirects += v[i].redirects;
			sum.denies += v[i].denies;
			sum.passthrough += v[i].passthrough;
			sum.errors += v[i].errors;
			sum.kernel_flows += v[i].kernel_flows;
		}
	}
	free(v);
	close(fd);
	return sum;
}

static inline socklen_t make_sockaddr(int family, const char *ip, uint16_t port,
			       struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		inet_pton(AF_INET, ip, &sin->sin_addr);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	inet_pton(AF_INET6, ip, &sin6->sin6_addr);
	return sizeof(*sin6);
}

static inline int listen_on(int family, const char *ip, uint16_t port, uint16_t *bound)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, fd;

	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	len = make_sockaddr(family, ip, port, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 512)) {
		close(fd);
		return -1;
	}
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static inline void kill_cgroup_procs(const char *dir)
{
	char path[PATH_MAX];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (!f)
		return;
	/* Only this test's clients can be in a cgroup it created. */
	while (fscanf(f, "%d", &pid) == 1)
		if (pid > 1)
			kill(pid, SIGKILL);
	fclose(f);
}

static inline void remove_cgroup(const char *dir)
{
	if (!dir[0])
		return;
	for (int i = 0; i < 50; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		kill_cgroup_procs(dir);
		usleep(20000);
	}
	fprintf(stderr, "%s: could not remove cgroup %s: %s\n",
		program_invocation_short_name, dir,
		strerror(errno));
}

static inline int loopback_up(void)
{
	struct ifreq ifr;
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0)
		return -errno;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0)
		ret = -errno;
	ifr.ifr_flags |= IFF_UP;
	if (!ret && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

#endif
