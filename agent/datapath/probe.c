// SPDX-License-Identifier: Apache-2.0
/*
 * probe.c - kernel feature detection for the agent's start-up (probe.h).
 *
 * Each check asks the running kernel; nothing is inferred from the version
 * string, which is recorded only for reporting.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <jansson.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/tls.h>

#include "lib/log.h"
#include "lib/mountinfo.h"
#include "datapath/probe.h"

#ifndef TCP_ULP
#define TCP_ULP 31
#endif
#ifndef SOL_TLS
#define SOL_TLS 282
#endif

static const struct nm_feature_info feature_info[] = {
	{ "sock_addr", "4.17", true,
	  "cgroup connect4/connect6 redirect pods' connections", NULL },
	{ "sockops", "4.13", true,
	  "sockops records each redirected connection by client tuple", NULL },
	{ "lru_hash", "4.10", true,
	  "LRU hash maps hold original destinations", NULL },
	{ "socket_cookie", "4.19", true,
	  "bpf_get_socket_cookie() keys records in connect4/6", NULL },
	{ "cgroup_link", "5.7", true,
	  "bpf_link attachment survives agent restarts (pinned links)", NULL },
	{ "ringbuf", "5.8", false, "BPF flow events (close, deny) through a ring buffer",
	  "the same events through a per-CPU perf event array (perfbuf)" },
	{ "sk_storage", "5.3", false, "per-socket TCP stats from sockops",
	  "no per-socket srtt/retransmit stats; byte counts come from the agent" },
	{ "netns_cookie", "5.7", false, "telling pod network namespaces apart in BPF",
	  "workloads are keyed by cgroup id only (the default)" },
	{ "sockmap", "4.18", false, "the opt-in sockmap relay (mesh.relay sockmap: sk_skb verdict redirects)",
	  "mesh.relay sockmap runs splice, the default relay" },
	{ "ktls", "4.13", false, "TLS record layer in the kernel (module tls)",
	  "TLS in user space (OpenSSL), the default" },
	{ "ktls_crypto", "5.1", false, "kTLS TLS 1.3 AES-GCM keys accepted",
	  "TLS in user space (OpenSSL), the default" },
	{ "map_fd_unpriv", "5.19", false,
	  "the agent drops CAP_BPF once its maps are open",
	  "the agent keeps CAP_BPF (CAP_SYS_ADMIN before 5.8) for map lookups" },
};

const struct nm_feature_info *nm_probe_info(size_t *n)
{
	*n = sizeof(feature_info) / sizeof(feature_info[0]);
	return feature_info;
}

/* Maps a feature name to its field; NULL for unknown names. */
static bool *feature_field(struct nm_features *f, const char *name)
{
	static const struct {
		const char *name;
		size_t off;
	} fields[] = {
		{ "ringbuf", offsetof(struct nm_features, ringbuf) },
		{ "sk_storage", offsetof(struct nm_features, sk_storage) },
		{ "cgroup_link", offsetof(struct nm_features, cgroup_link) },
		{ "sockops", offsetof(struct nm_features, sockops) },
		{ "netns_cookie", offsetof(struct nm_features, netns_cookie) },
		{ "ktls", offsetof(struct nm_features, ktls) },
		{ "sockmap", offsetof(struct nm_features, sockmap) },
		{ "sock_addr", offsetof(struct nm_features, sock_addr) },
		{ "lru_hash", offsetof(struct nm_features, lru_hash) },
		{ "socket_cookie", offsetof(struct nm_features, socket_cookie) },
		{ "ktls_crypto", offsetof(struct nm_features, ktls_crypto) },
		{ "map_fd_unpriv", offsetof(struct nm_features, map_fd_unpriv) },
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strcmp(fields[i].name, name) == 0)
			return (bool *)((char *)f + fields[i].off);
	return NULL;
}

bool nm_probe_get(const struct nm_features *f, const char *name)
{
	bool *p = feature_field((struct nm_features *)f, name);

	return p ? *p : false;
}

/* The running kernel is older than maj.min (unknown: older). */
static bool kernel_before(unsigned int maj, unsigned int min)
{
	struct utsname u;
	unsigned int a = 0, b = 0;

	if (uname(&u) || sscanf(u.release, "%u.%u", &a, &b) != 2)
		return true;
	return a < maj || (a == maj && b < min);
}

const char *nm_probe_relay_verdict(void)
{
	if (kernel_before(5, 13))
		return NULL;
	return kernel_before(6, 2) ? "nm_relay_verdict_probe" : "nm_relay_verdict";
}

bool nm_probe_relay_loads(const char *prog)
{
	const char *verdict = nm_probe_relay_verdict();

	return verdict && !strcmp(prog, verdict);
}

const char *nm_probe_required_missing(const struct nm_features *f)
{
	if (!f->sock_addr)
		return "kernel lacks cgroup connect4/connect6 programs (needs Linux >= 4.17)";
	if (!f->sockops)
		return "kernel lacks sockops programs on cgroups (needs Linux >= 4.13)";
	if (!f->lru_hash)
		return "kernel lacks LRU hash maps (needs Linux >= 4.10)";
	if (!f->socket_cookie)
		return "kernel lacks bpf_get_socket_cookie() in sock_addr programs (needs Linux >= 4.19)";
	if (!f->cgroup_link)
		return "kernel lacks bpf_link for cgroup programs (needs Linux >= 5.7)";
	return NULL;
}

void nm_probe_choose(const struct nm_features *f, const struct nm_choices *want,
		     struct nm_choices *out)
{
	static const struct nm_choices all = { true, true, true, true, false };

	if (!want)
		want = &all;
	/* A perf event array (4.3) carries them where there is no ring buffer. */
	out->flow_events = want->flow_events;
	out->events_perfbuf = out->flow_events && (!f->ringbuf || want->events_perfbuf);
	out->sock_stats = want->sock_stats && f->sk_storage;
	/* The record layer needs both the ULP and the cipher in the kernel. */
	out->ktls = want->ktls && f->ktls && f->ktls_crypto;
	out->sockmap = want->sockmap && f->sockmap;
}

/* --- probes ------------------------------------------------------------- */

static bool probe_map(enum bpf_map_type t)
{
	return libbpf_probe_bpf_map_type(t, NULL) == 1;
}

static bool probe_prog(enum bpf_prog_type t)
{
	return libbpf_probe_bpf_prog_type(t, NULL) == 1;
}

static bool probe_helper(enum bpf_prog_type t, enum bpf_func_id id)
{
	return libbpf_probe_bpf_helper(t, id, NULL) == 1;
}

/* "r0 = 1; exit": allow everything. */
static int load_trivial(enum bpf_prog_type type, enum bpf_attach_type expected)
{
	const struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 1 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = expected);
	int fd;

	fd = bpf_prog_load(type, "nm_probe", "GPL", insns, 2, &opts);
	return fd < 0 ? -errno : fd;
}

/*
 * bpf_link on a cgroup, and sockops attachment, tried for real on a cgroup
 * created for the purpose (never the root or anyone else's cgroup), removed
 * again before returning. Returns -ENOENT when no cgroup could be made.
 */
static int probe_attach(struct nm_features *f)
{
	char mnt[PATH_MAX], dir[PATH_MAX + 64];
	int cg = -1, addr_prog = -1, ops_prog = -1, link = -1, err;

	err = nm_cgroup2_mount_point(mnt, sizeof(mnt));
	if (err)
		return err;
	snprintf(dir, sizeof(dir), "%s/nm-probe-%ld", mnt, (long)getpid());
	if (mkdir(dir, 0755) && errno != EEXIST)
		return -errno;
	cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg < 0) {
		err = -errno;
		goto cleanup;
	}
	f->attach_tested = true;

	addr_prog = load_trivial(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT);
	if (addr_prog >= 0) {
		f->sock_addr = true;
		link = bpf_link_create(addr_prog, cg, BPF_CGROUP_INET4_CONNECT, NULL);
		f->cgroup_link = link >= 0;
		if (link >= 0)
			close(link);
		link = -1;
	} else {
		f->sock_addr = false;
		pr_debug("msg=\"probe: connect4 load failed\" err=%d", addr_prog);
	}

	ops_prog = load_trivial(BPF_PROG_TYPE_SOCK_OPS, BPF_CGROUP_SOCK_OPS);
	if (ops_prog >= 0) {
		if (f->cgroup_link) {
			link = bpf_link_create(ops_prog, cg, BPF_CGROUP_SOCK_OPS, NULL);
			f->sockops = link >= 0;
		} else if (bpf_prog_attach(ops_prog, cg, BPF_CGROUP_SOCK_OPS, 0) == 0) {
			f->sockops = true;
			bpf_prog_detach2(ops_prog, cg, BPF_CGROUP_SOCK_OPS);
		} else {
			f->sockops = false;
		}
	} else {
		f->sockops = false;
	}
	err = 0;

cleanup:
	if (link >= 0)
		close(link);
	if (ops_prog >= 0)
		close(ops_prog);
	if (addr_prog >= 0)
		close(addr_prog);
	if (cg >= 0)
		close(cg);
	/* Links are gone with their fds; the cgroup is empty and removable. */
	if (rmdir(dir) && errno != ENOENT)
		pr_warn("msg=\"probe: cannot remove temporary cgroup\" path=%s err=%d",
			dir, -errno);
	return err;
}

/*
 * Without a cgroup to try on: BPF_LINK_CREATE with a bad target fd fails
 * with EBADF where the command exists (5.7+), EINVAL where it does not.
 */
static void probe_link_syscall(struct nm_features *f)
{
	int prog, link;

	prog = load_trivial(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, BPF_CGROUP_INET4_CONNECT);
	f->sock_addr = prog >= 0;
	if (prog < 0) {
		f->cgroup_link = false;
		return;
	}
	link = bpf_link_create(prog, -1, BPF_CGROUP_INET4_CONNECT, NULL);
	f->cgroup_link = link < 0 && errno == EBADF;
	if (link >= 0)
		close(link);
	close(prog);
	f->sockops = probe_prog(BPF_PROG_TYPE_SOCK_OPS);
}

static bool ulp_listed(const char *ulp)
{
	char buf[256], *tok, *save = NULL;
	FILE *fp;
	bool found = false;

	fp = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "re");
	if (!fp)
		return false;
	if (fgets(buf, sizeof(buf), fp))
		for (tok = strtok_r(buf, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
			if (strcmp(tok, ulp) == 0)
				found = true;
	fclose(fp);
	return found;
}

/* A connected loopback TCP pair; 0 or -errno. */
static int loopback_pair(int *cli, int *srv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET,
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	int lfd, c = -1, s = -1, err;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &sl))
		goto fail;
	c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)))
		goto fail;
	s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0)
		goto fail;
	close(lfd);
	*cli = c;
	*srv = s;
	return 0;
fail:
	err = -errno;
	if (c >= 0)
		close(c);
	close(lfd);
	return err;
}

/*
 * kTLS: TCP_ULP "tls" on an established socket also makes the kernel load
 * the tls module on demand (request_module("tcp-ulp-tls")), the equivalent of
 * `modprobe tls`. Then a TLS 1.3 AES-128-GCM TX key (all zeros: nothing is
 * sent) checks that the record layer has its cipher.
 */
static void probe_ktls(struct nm_features *f)
{
	struct tls12_crypto_info_aes_gcm_128 ci = {
		.info = { .version = TLS_1_3_VERSION,
			  .cipher_type = TLS_CIPHER_AES_GCM_128 },
	};
	int c = -1, s = -1, err;

	f->ktls = ulp_listed("tls");
	f->ktls_crypto = false;
	err = loopback_pair(&c, &s);
	if (err) {
		pr_debug("msg=\"probe: no loopback for kTLS check\" err=%d", err);
		return;
	}
	if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", 3) == 0) {
		f->ktls = true;
		f->ktls_crypto = setsockopt(c, SOL_TLS, TLS_TX, &ci, sizeof(ci)) == 0;
		if (!f->ktls_crypto)
			pr_debug("msg=\"probe: kTLS TX key refused\" err=%d", -errno);
	}
	close(c);
	close(s);
}

/*
 * A child with an empty effective capability set looks up an element of a
 * map created here: EPERM means the kernel gates every bpf() command on
 * CAP_BPF while unprivileged_bpf_disabled is set (before 5.19).
 */
static bool probe_map_fd_unpriv(void)
{
	int fd, status = 0;
	pid_t pid;

	fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "nm_probe", 4, 4, 1, NULL);
	if (fd < 0)
		return false;
	pid = fork();
	if (pid == 0) {
		struct __user_cap_header_struct hdr = {
			.version = _LINUX_CAPABILITY_VERSION_3 };
		struct __user_cap_data_struct data[2];
		__u32 key = 0, val;

		if (syscall(SYS_capget, &hdr, data))
			_exit(2);
		data[0].effective = data[1].effective = 0;
		if (syscall(SYS_capset, &hdr, data))
			_exit(2);
		_exit(bpf_map_lookup_elem(fd, &key, &val) == 0 ? 0 : 1);
	}
	close(fd);
	if (pid < 0)
		return false;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int cap_last_cap(void)
{
	FILE *fp = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int n = -1;

	if (fp) {
		if (fscanf(fp, "%d", &n) != 1)
			n = -1;
		fclose(fp);
	}
	return n;
}

uint64_t nm_probe_keep_caps(const struct nm_features *f)
{
#ifndef CAP_BPF
#define CAP_BPF 39
#endif
	if (f->map_fd_unpriv)
		return 0;
	return cap_last_cap() >= CAP_BPF ? 1ull << CAP_BPF : 1ull << CAP_SYS_ADMIN;
}

int nm_probe_features(struct nm_features *f)
{
	struct utsname u;
	int err;

	memset(f, 0, sizeof(*f));
	if (uname(&u) == 0)
		snprintf(f->kernel_release, sizeof(f->kernel_release), "%.63s", u.release);

	f->lru_hash = probe_map(BPF_MAP_TYPE_LRU_HASH);
	f->ringbuf = probe_map(BPF_MAP_TYPE_RINGBUF);
	f->sk_storage = probe_map(BPF_MAP_TYPE_SK_STORAGE) &&
			probe_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_sk_storage_get);
	f->sockmap = probe_map(BPF_MAP_TYPE_SOCKMAP) &&
		     probe_map(BPF_MAP_TYPE_SOCKHASH) &&
		     probe_prog(BPF_PROG_TYPE_SK_SKB);
	f->socket_cookie = probe_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
					BPF_FUNC_get_socket_cookie);
	f->netns_cookie = probe_helper(BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
				       BPF_FUNC_get_netns_cookie);

	err = probe_attach(f);
	if (err) {
		pr_debug("msg=\"probe: no temporary cgroup, probing bpf_link by syscall\" err=%d",
			 err);
		probe_link_syscall(f);
	}
	probe_ktls(f);
	f->map_fd_unpriv = probe_map_fd_unpriv();
	/* Without any BPF the helper probes read false too: say why once. */
	if (!f->lru_hash && !f->sock_addr)
		return -EPERM;
	return 0;
}

/* --- state file ----------------------------------------------------------- */

int nm_probe_state_path(const char *run_dir, const char *instance, char *buf,
			size_t len)
{
	int n;

	n = snprintf(buf, len, "%s/%s/features.json", run_dir ? run_dir : NM_RUN_DIR,
		     instance ? instance : "default");
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int mkdir_parents(const char *path)
{
	char tmp[PATH_MAX];
	char *p;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	p = strrchr(tmp, '/');
	if (!p || p == tmp)
		return 0;
	*p = '\0';
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	return 0;
}

int nm_probe_save(const char *path, const struct nm_features *f,
		  const struct nm_choices *c, pid_t pid)
{
	char tmp[PATH_MAX];
	json_t *root = NULL, *feat, *ch;
	size_t n;
	const struct nm_feature_info *info = nm_probe_info(&n);
	int err;

	err = mkdir_parents(path);
	if (err)
		return err;
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;

	feat = json_object();
	for (size_t i = 0; i < n; i++)
		json_object_set_new(feat, info[i].name, json_boolean(nm_probe_get(f, info[i].name)));
	ch = json_pack("{s:b, s:s, s:b, s:b, s:b}", "flow_events", c->flow_events,
		       "events", !c->flow_events ? "off" :
				 c->events_perfbuf ? "perfbuf" : "ringbuf",
		       "sock_stats", c->sock_stats, "ktls", c->ktls,
		       "sockmap", c->sockmap);
	root = json_pack("{s:i, s:s, s:b, s:o, s:o}", "pid", (json_int_t)pid,
			 "kernel_release", f->kernel_release,
			 "attach_tested", f->attach_tested, "features", feat,
			 "choices", ch);
	if (!root) {
		err = -ENOMEM;
		goto cleanup;
	}
	if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_SORT_KEYS)) {
		err = -EIO;
		unlink(tmp);
		goto cleanup;
	}
	if (rename(tmp, path)) {
		err = -errno;
		unlink(tmp);
	}
cleanup:
	json_decref(root);
	return err;
}

int nm_probe_load(const char *path, struct nm_features *f,
		  struct nm_choices *c, pid_t *pid)
{
	json_error_t jerr;
	json_t *root, *feat, *ch, *v;
	const char *key, *rel;
	int err = -EINVAL;

	root = json_load_file(path, 0, &jerr);
	if (!root) {
		if (access(path, F_OK) && errno == ENOENT)
			return -ENOENT;
		pr_warn("msg=\"bad feature state file\" file=%s line=%d error=\"%s\"",
			path, jerr.line, jerr.text);
		return -EINVAL;
	}
	memset(f, 0, sizeof(*f));
	memset(c, 0, sizeof(*c));
	feat = json_object_get(root, "features");
	ch = json_object_get(root, "choices");
	rel = json_string_value(json_object_get(root, "kernel_release"));
	v = json_object_get(root, "pid");
	if (!json_is_object(feat) || !json_is_object(ch) || !rel || !json_is_integer(v)) {
		pr_warn("msg=\"bad feature state file\" file=%s field=%s", path,
			!json_is_object(feat) ? "features" :
			!json_is_object(ch)   ? "choices" :
			!rel                  ? "kernel_release" : "pid");
		goto cleanup;
	}
	*pid = (pid_t)json_integer_value(v);
	snprintf(f->kernel_release, sizeof(f->kernel_release), "%s", rel);
	f->attach_tested = json_is_true(json_object_get(root, "attach_tested"));
	json_object_foreach(feat, key, v) {
		bool *p = feature_field(f, key);

		/* Unknown names come from a newer agent: skip them. */
		if (p)
			*p = json_is_true(v);
	}
	c->flow_events = json_is_true(json_object_get(ch, "flow_events"));
	c->sock_stats = json_is_true(json_object_get(ch, "sock_stats"));
	v = json_object_get(ch, "events");
	c->events_perfbuf = json_is_string(v) && !strcmp(json_string_value(v), "perfbuf");
	c->ktls = json_is_true(json_object_get(ch, "ktls"));
	c->sockmap = json_is_true(json_object_get(ch, "sockmap"));
	err = 0;
cleanup:
	json_decref(root);
	return err;
}
