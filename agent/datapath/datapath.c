// SPDX-License-Identifier: Apache-2.0
/*
 * datapath.c - loads nm_connect, nm_sockops and nm_ingress, shares their pinned maps,
 * attaches them to the cgroup root through pinned bpf_links and writes the
 * map model (datapath.h).
 *
 * Restart without a gap: the links are pinned, so they keep redirecting while
 * no agent runs (connects then fail fast with ECONNREFUSED). A new agent finds
 * the pinned links and swaps its freshly loaded programs into them with
 * BPF_LINK_UPDATE instead of attaching anew.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>
#include <linux/tcp.h> /* tcp_info with the byte counters glibc's lacks */

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "datapath/datapath.h"
#include "lib/errbuf.h"
#include "lib/log.h"
#include "lib/pins.h"
#include "lb/lb.h"
#include "policy/compile.h"
#include "nm_connect.skel.h"
#include "nm_sockops.skel.h"
#include "nm_ingress.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"
#define INSTANCE_MAX 64

enum nm_link_idx {
	NM_LINK_CONNECT4,
	NM_LINK_CONNECT6,
	NM_LINK_SOCKOPS,
	NM_LINK_INGRESS, /* strict inbound (nm_ingress.bpf.c) */
	NM_LINK_COUNT,
};

static const char *const link_names[NM_LINK_COUNT] = {
	[NM_LINK_CONNECT4] = "link_connect4",
	[NM_LINK_CONNECT6] = "link_connect6",
	[NM_LINK_SOCKOPS] = "link_sockops",
	[NM_LINK_INGRESS] = "link_ingress",
};

struct nm_datapath {
	char pin_dir[128]; /* NM_PIN_BASE "/" instance */
	struct nm_connect_bpf *connect;
	struct nm_sockops_bpf *sockops;
	struct nm_ingress_bpf *ingress;
	struct bpf_link *links[NM_LINK_COUNT];
	/* map fds, owned by the connect skeleton */
	int fd_workloads, fd_services, fd_backends, fd_endpoints;
	int fd_orig_by_cookie, fd_orig_by_tuple, fd_agent_state;
	int fd_policy;
	int fd_lb_sets, fd_maglev, fd_lb_active;
	/* strict inbound, owned by the ingress skeleton */
	int fd_mesh_conns, fd_probers;
	/* telemetry */
	int fd_wl_stats, fd_sock_stats, fd_events;
	enum nm_events_transport events;
	bool sock_stats;
	uint64_t agent_errors[NM_MAP__COUNT]; /* failed writes from here */
};

/* --- helpers ------------------------------------------------------------- */

/* Instance names become a directory name: keep them to a safe alphabet. */
static int check_instance(const char *instance)
{
	size_t n = strlen(instance);

	if (n == 0 || n > INSTANCE_MAX || strcmp(instance, ".") == 0 ||
	    strcmp(instance, "..") == 0)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char ch = instance[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
		      ch == '.'))
			return -EINVAL;
	}
	return 0;
}

static int pin_dir_of(const char *instance, char *buf, size_t len)
{
	int n;

	if (check_instance(instance))
		return -EINVAL;
	n = snprintf(buf, len, "%s/%s", NM_PIN_BASE, instance);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Pinning needs bpffs at /sys/fs/bpf; hosts without systemd may lack it. */
static int ensure_bpffs(char *err, size_t errlen)
{
	struct statfs sfs;

	if (statfs(BPFFS_ROOT, &sfs) == 0 && sfs.f_type == BPF_FS_MAGIC)
		return 0;
	if (mkdir(BPFFS_ROOT, 0700) && errno != EEXIST) {
		int ret = -errno;

		nm_set_err(err, errlen, "%s: %s", BPFFS_ROOT, strerror(errno));
		return ret;
	}
	if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700")) {
		int ret = -errno;

		nm_set_err(err, errlen, "mount bpffs at %s: %s", BPFFS_ROOT,
			   strerror(errno));
		return ret;
	}
	pr_info("msg=\"mounted bpffs\" path=%s", BPFFS_ROOT);
	return 0;
}

static int mkdir_one(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return 0;
	nm_set_err(err, errlen, "pin directory %s: %s", path, strerror(errno));
	return -errno;
}

/*
 * Refuses pins left by an agent with another map ABI: reusing them would
 * mean reading and writing records of another layout.
 */
static int check_pinned_abi(const char *pin_dir, char *err, size_t errlen)
{
	struct bpf_map_info info = {};
	__u32 info_len = sizeof(info);
	struct nm_agent_state st;
	char path[PATH_MAX];
	__u32 key = 0;
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/nm_agent_state", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len)) {
		ret = -errno;
		nm_set_err(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (info.value_size != sizeof(st) || info.key_size != sizeof(key)) {
		ret = -EPROTO;
		nm_set_err(err, errlen,
			   "%s: pinned map has another layout (value size %u, expected %zu); remove %s",
			   path, info.value_size, sizeof(st), pin_dir);
		goto out;
	}
	if (bpf_map_lookup_elem(fd, &key, &st) == 0 && st.abi_version != 0 &&
	    st.abi_version != NM_ABI_VERSION) {
		ret = -EPROTO;
		nm_set_err(err, errlen,
			   "%s: pinned maps have ABI version %u, this agent uses %u; remove %s",
			   path, st.abi_version, NM_ABI_VERSION, pin_dir);
	}
out:
	close(fd);
	return ret;
}

/*
 * libbpf reports why a load failed (verifier log, pin mismatch) through its
 * print callback; route it into our log instead of bare stderr lines.
 */
static int libbpf_log(enum libbpf_print_level level, const char *fmt,
		      va_list ap)
{
	enum nm_log_level lvl = level == LIBBPF_WARN ? NM_LOG_WARN : NM_LOG_DEBUG;
	char text[8192], *line, *save = NULL;

	if (lvl > nm_log_get_level())
		return 0;
	vsnprintf(text, sizeof(text), fmt, ap);
	/* A verifier log arrives as one multi-line message: one log line
	 * each keeps our output line-structured. */
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		nm_log(lvl, "msg=\"libbpf\" detail=\"%s\"", line);
	return 0;
}

/* The pinned link fits when it is a cgroup link on this root and hook. */
static bool link_matches(struct bpf_link *link, uint64_t cgroup_id,
			 enum bpf_attach_type type)
{
	struct bpf_link_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len))
		return false;
	return info.type == BPF_LINK_TYPE_CGROUP &&
	       info.cgroup.cgroup_id == cgroup_id &&
	       info.cgroup.attach_type == type;
}

/*
 * Puts prog behind the pinned link `name`: updates the existing link in
 * place when it still fits, otherwise attaches a new link and only then
 * replaces the pin, so the hook is never empty in between.
 */
static int attach_or_update(struct nm_datapath *dp, enum nm_link_idx idx,
			    struct bpf_program *prog, int cgroup_fd,
			    uint64_t cgroup_id, bool *created, char *err,
			    size_t errlen)
{
	enum bpf_attach_type type = bpf_program__expected_attach_type(prog);
	struct bpf_link *old = NULL, *link;
	char path[PATH_MAX];
	int ret;

	*created = false;
	snprintf(path, sizeof(path), "%s/%s", dp->pin_dir, link_names[idx]);
	if (access(path, F_OK) == 0) {
		old = bpf_link__open(path);
		if (!old) {
			ret = -errno;
			nm_set_err(err, errlen, "open pinned link %s: %s", path,
				   strerror(errno));
			return ret;
		}
		if (!link_matches(old, cgroup_id, type)) {
			pr_info("msg=\"datapath link replaced\" link=%s reason=\"other cgroup or hook\"",
				path);
		} else if ((ret = bpf_link__update_program(old, prog)) != 0) {
			/* e.g. ENOLINK: its cgroup is gone. */
			pr_info("msg=\"datapath link replaced\" link=%s reason=\"%s\"",
				path, strerror(-ret));
		} else {
			dp->links[idx] = old;
			pr_info("msg=\"datapath link reused\" link=%s", path);
			return 0;
		}
	}

	link = bpf_program__attach_cgroup(prog, cgroup_fd);
	if (!link) {
		ret = -errno;
		nm_set_err(err, errlen, "attach %s: %s", bpf_program__name(prog),
			   strerror(errno));
		goto out;
	}
	if (old)
		bpf_link__unpin(old);
	ret = bpf_link__pin(link, path);
	if (ret) {
		nm_set_err(err, errlen, "pin %s: %s", path, strerror(-ret));
		bpf_link__destroy(link);
		goto out;
	}
	dp->links[idx] = link;
	*created = true;
	/* The new link is in place: take the replaced one off its hook now
	 * rather than when bpffs gets round to dropping it. */
	if (old)
		bpf_link_detach(bpf_link__fd(old));
out:
	bpf_link__destroy(old);
	return ret;
}

static int open_cgroup_root(const char *root, int *fd_out, uint64_t *id,
			    char *err, size_t errlen)
{
	char mnt[PATH_MAX];
	struct stat st_root, st_mnt;
	int fd, ret;

	if (!root || root[0] != '/') {
		nm_set_err(err, errlen, "cgroup root %s: not an absolute path",
			   root ? root : "(none)");
		return -EINVAL;
	}
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		nm_set_err(err, errlen, "cgroup root %s: %s", root, strerror(errno));
		return ret;
	}
	ret = nm_cgroup_id(root, id);
	if (ret) {
		nm_set_err(err, errlen, "cgroup root %s: %s", root,
			   ret == -EMEDIUMTYPE ? "not a cgroup v2 directory" :
						 strerror(-ret));
		goto fail;
	}
	/* Attaching at the top of the hierarchy would steer every process on
	 * the host; the agent only ever owns a subtree. */
	if (nm_cgroup2_mount(mnt, sizeof(mnt)) == 0 && stat(mnt, &st_mnt) == 0 &&
	    fstat(fd, &st_root) == 0 && st_mnt.st_dev == st_root.st_dev &&
	    st_mnt.st_ino == st_root.st_ino) {
		ret = -EPERM;
		nm_set_err(err, errlen,
			   "cgroup root %s: refusing the cgroup v2 mount root; use a subtree",
			   root);
		goto fail;
	}
	*fd_out = fd;
	return 0;
fail:
	close(fd);
	return ret;
}

/* --- telemetry set-up ---------------------------------------------------- */

static enum nm_events_transport pick_transport(enum nm_events_transport want)
{
	if (want == NM_EVENTS_RINGBUF || want == NM_EVENTS_PERFBUF)
		return want;
	return libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) == 1 ?
		       NM_EVENTS_RINGBUF : NM_EVENTS_PERFBUF;
}

/*
 * nm_events is declared a ring buffer; without one it becomes a perf event
 * array (one slot per CPU) before load, and the programs' nm_cfg_perfbuf
 * switch sends records with bpf_perf_event_output() instead.
 */
static int setup_events_map(struct bpf_map *m, enum nm_events_transport t)
{
	int ncpu, ret;

	if (t == NM_EVENTS_RINGBUF)
		return 0;
	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	ret = bpf_map__set_type(m, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	if (!ret)
		ret = bpf_map__set_key_size(m, sizeof(__u32));
	if (!ret)
		ret = bpf_map__set_value_size(m, sizeof(__u32));
	if (!ret)
		ret = bpf_map__set_max_entries(m, ncpu);
	return ret;
}

/*
 * A pinned nm_events of the other transport (a test forcing the fallback,
 * a kernel upgrade) cannot be reused: it only carries records to whoever
 * reads it, so it is dropped and made anew.
 */
static void drop_mismatched_events_pin(const char *pin_dir,
				       enum nm_events_transport t)
{
	__u32 want = t == NM_EVENTS_RINGBUF ? BPF_MAP_TYPE_RINGBUF :
					      BPF_MAP_TYPE_PERF_EVENT_ARRAY;
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/nm_events", pin_dir);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type != want) {
		pr_info("msg=\"events map replaced\" pin=%s old_type=%u new_type=%u",
			path, info.type, want);
		unlink(path);
	}
	close(fd);
}

const char *nm_events_transport_name(enum nm_events_transport t)
{
	switch (t) {
	case NM_EVENTS_RINGBUF:
		return "ringbuf";
	case NM_EVENTS_PERFBUF:
		return "perfbuf";
	default:
		return "auto";
	}
}

/* --- open / close -------------------------------------------------------- */

int nm_datapath_open(const struct nm_datapath_opts *opts,
		     struct nm_datapath **out, char *err, size_t errlen)
{
	const char *instance = opts && opts->instance ? opts->instance : "default";
	struct bpf_program *progs[NM_LINK_COUNT];
	bool created[NM_LINK_COUNT] = { false };
	LIBBPF_OPTS(bpf_object_open_opts, oo);
	libbpf_print_fn_t old_print;
	struct nm_datapath *dp;
	uint64_t cgroup_id;
	int cgroup_fd = -1;
	int ret;

	*out = NULL;
	nm_set_err(err, errlen, "%s", "");
	dp = calloc(1, sizeof(*dp));
	if (!dp) {
		nm_set_err(err, errlen, "out of memory");
		return -ENOMEM;
	}
	old_print = libbpf_set_print(libbpf_log);

	ret = pin_dir_of(instance, dp->pin_dir, sizeof(dp->pin_dir));
	if (ret) {
		nm_set_err(err, errlen,
			   "instance \"%s\": use 1-%d letters, digits, '-', '_', '.'",
			   instance, INSTANCE_MAX);
		goto fail;
	}
	ret = open_cgroup_root(opts ? opts->cgroup_root : NULL, &cgroup_fd,
			       &cgroup_id, err, errlen);
	if (ret)
		goto fail;
	ret = ensure_bpffs(err, errlen);
	if (ret)
		goto fail;
	ret = mkdir_one(NM_PIN_BASE, err, errlen);
	if (!ret)
		ret = mkdir_one(dp->pin_dir, err, errlen);
	if (!ret)
		ret = check_pinned_abi(dp->pin_dir, err, errlen);
	if (ret)
		goto fail;

	dp->events = pick_transport(opts ? opts->events : NM_EVENTS_AUTO);
	dp->sock_stats = opts && opts->sock_stats;
	drop_mismatched_events_pin(dp->pin_dir, dp->events);

	oo.pin_root_path = dp->pin_dir;
	dp->connect = nm_connect_bpf__open_opts(&oo);
	if (!dp->connect) {
		ret = -errno;
		nm_set_err(err, errlen, "open nm_connect: %s", strerror(errno));
		goto fail;
	}
	dp->connect->rodata->nm_cfg_sock_stats = dp->sock_stats;
	dp->connect->rodata->nm_cfg_perfbuf = dp->events == NM_EVENTS_PERFBUF;
	ret = setup_events_map(dp->connect->maps.nm_events, dp->events);
	if (ret) {
		nm_set_err(err, errlen, "nm_events as %s: %s",
			   nm_events_transport_name(dp->events), strerror(-ret));
		goto fail;
	}
	/* The first load creates and pins the maps, the second reuses them. */
	ret = nm_connect_bpf__load(dp->connect);
	if (ret) {
		/* EINVAL here is mostly libbpf refusing a pinned map whose
		 * definition differs from ours (see its log line). */
		nm_set_err(err, errlen, "load nm_connect (pins in %s): %s%s",
			   dp->pin_dir, strerror(-ret),
			   ret == -EINVAL ? " (pinned maps of another layout? remove the pin directory)" : "");
		goto fail;
	}
	dp->sockops = nm_sockops_bpf__open_opts(&oo);
	if (!dp->sockops) {
		ret = -errno;
		nm_set_err(err, errlen, "open nm_sockops: %s", strerror(errno));
		goto fail;
	}
	dp->sockops->rodata->nm_cfg_sock_stats = dp->sock_stats;
	dp->sockops->rodata->nm_cfg_perfbuf = dp->events == NM_EVENTS_PERFBUF;
	ret = setup_events_map(dp->sockops->maps.nm_events, dp->events);
	if (ret) {
		nm_set_err(err, errlen, "nm_events as %s: %s",
			   nm_events_transport_name(dp->events), strerror(-ret));
		goto fail;
	}
	ret = nm_sockops_bpf__load(dp->sockops);
	if (ret) {
		nm_set_err(err, errlen, "load nm_sockops (pins in %s): %s",
			   dp->pin_dir, strerror(-ret));
		goto fail;
	}

	dp->ingress = nm_ingress_bpf__open_opts(&oo);
	if (!dp->ingress) {
		ret = -errno;
		nm_set_err(err, errlen, "open nm_ingress: %s", strerror(errno));
		goto fail;
	}
	/* It declares every shared map, nm_events among them. */
	ret = setup_events_map(dp->ingress->maps.nm_events, dp->events);
	if (ret) {
		nm_set_err(err, errlen, "nm_events as %s: %s",
			   nm_events_transport_name(dp->events), strerror(-ret));
		goto fail;
	}
	ret = nm_ingress_bpf__load(dp->ingress);
	if (ret) {
		nm_set_err(err, errlen, "load nm_ingress (pins in %s): %s",
			   dp->pin_dir, strerror(-ret));
		goto fail;
	}

	progs[NM_LINK_CONNECT4] = dp->connect->progs.nm_connect4;
	progs[NM_LINK_CONNECT6] = dp->connect->progs.nm_connect6;
	progs[NM_LINK_SOCKOPS] = dp->sockops->progs.nm_sockops;
	progs[NM_LINK_INGRESS] = dp->ingress->progs.nm_ingress;
	for (int i = 0; i < NM_LINK_COUNT; i++) {
		ret = attach_or_update(dp, i, progs[i], cgroup_fd, cgroup_id,
				       &created[i], err, errlen);
		if (ret)
			goto fail;
	}

	dp->fd_workloads = bpf_map__fd(dp->connect->maps.nm_workloads);
	dp->fd_services = bpf_map__fd(dp->connect->maps.nm_services);
	dp->fd_backends = bpf_map__fd(dp->connect->maps.nm_backends);
	dp->fd_endpoints = bpf_map__fd(dp->connect->maps.nm_endpoints);
	dp->fd_orig_by_cookie = bpf_map__fd(dp->connect->maps.nm_orig_cookie);
	dp->fd_orig_by_tuple = bpf_map__fd(dp->connect->maps.nm_orig_tuple);
	dp->fd_agent_state = bpf_map__fd(dp->connect->maps.nm_agent_state);
	dp->fd_policy = bpf_map__fd(dp->connect->maps.nm_policy);
	dp->fd_lb_sets = bpf_map__fd(dp->connect->maps.nm_lb_sets);
	dp->fd_maglev = bpf_map__fd(dp->connect->maps.nm_maglev);
	dp->fd_lb_active = bpf_map__fd(dp->connect->maps.nm_lb_active);
	dp->fd_mesh_conns = bpf_map__fd(dp->ingress->maps.nm_mesh_conns);
	dp->fd_probers = bpf_map__fd(dp->ingress->maps.nm_probers);
	dp->fd_wl_stats = bpf_map__fd(dp->connect->maps.nm_wl_stats);
	dp->fd_sock_stats = bpf_map__fd(dp->connect->maps.nm_sock_stats);
	dp->fd_events = bpf_map__fd(dp->connect->maps.nm_events);

	close(cgroup_fd);
	libbpf_set_print(old_print);
	pr_info("msg=\"datapath ready\" instance=%s pins=%s cgroup_root=%s events=%s sock_stats=%s",
		instance, dp->pin_dir, opts->cgroup_root,
		nm_events_transport_name(dp->events),
		dp->sock_stats ? "on" : "off");
	*out = dp;
	return 0;

fail:
	/* Links this call created would redirect with no agent to take over
	 * its records; links it updated keep the previous behaviour. */
	for (int i = 0; i < NM_LINK_COUNT; i++) {
		if (created[i] && dp->links[i])
			bpf_link__unpin(dp->links[i]);
	}
	if (cgroup_fd >= 0)
		close(cgroup_fd);
	nm_datapath_close(dp);
	libbpf_set_print(old_print);
	return ret;
}

void nm_datapath_close(struct nm_datapath *dp)
{
	if (!dp)
		return;
	/* bpf_link__destroy() closes our fd only: the pins keep the links. */
	for (int i = 0; i < NM_LINK_COUNT; i++)
		bpf_link__destroy(dp->links[i]);
	nm_ingress_bpf__destroy(dp->ingress);
	nm_sockops_bpf__destroy(dp->sockops);
	nm_connect_bpf__destroy(dp->connect);
	free(dp);
}

int nm_datapath_remove_pins(const char *instance)
{
	return nm_pins_remove(NULL, instance);
}

/* --- map contents -------------------------------------------------------- */

struct sync_map {
	const char *name;
	uint64_t *errors;    /* the map's agent_errors slot */
	int fd;
	const void *entries; /* array of model entries */
	unsigned int n;
	size_t stride;
	size_t key_size;     /* key at offset 0 of each entry */
	size_t val_off;
};

struct key_cmp_ctx {
	size_t key_size;
};

static int cmp_keys(const void *a, const void *b, void *arg)
{
	const struct key_cmp_ctx *ctx = arg;

	return memcmp(a, b, ctx->key_size);
}

static int sync_upsert(const struct sync_map *s)
{
	for (unsigned int i = 0; i < s->n; i++) {
		const char *e = (const char *)s->entries + i * s->stride;

		if (bpf_map_update_elem(s->fd, e, e + s->val_off, BPF_ANY)) {
			int ret = -errno;

			(*s->errors)++;
			pr_warn("msg=\"map update failed\" map=%s entry=%u err=\"%s\"",
				s->name, i, strerror(errno));
			return ret;
		}
	}
	return 0;
}

/* Deletes every key of the map that the model does not have. */
static int sync_prune(const struct sync_map *s)
{
	struct key_cmp_ctx ctx = { s->key_size };
	char *keys = NULL, *stale = NULL, *cur, *next;
	unsigned int n_stale = 0, cap_stale = 0;
	int ret = -ENOMEM;
	bool first = true;

	cur = calloc(2, s->key_size);
	keys = malloc((s->n ? s->n : 1) * s->key_size);
	if (!cur || !keys)
		goto out;
	next = cur + s->key_size;
	for (unsigned int i = 0; i < s->n; i++)
		memcpy(keys + i * s->key_size,
		       (const char *)s->entries + i * s->stride, s->key_size);
	qsort_r(keys, s->n, s->key_size, cmp_keys, &ctx);

	/* Collect first, delete after: deleting while walking a hash map can
	 * restart the walk. */
	while (bpf_map_get_next_key(s->fd, first ? NULL : cur, next) == 0) {
		unsigned int lo = 0, hi = s->n;
		bool found = false;

		first = false;
		while (lo < hi) {
			unsigned int mid = lo + (hi - lo) / 2;
			int r = memcmp(next, keys + mid * s->key_size, s->key_size);

			if (r == 0) {
				found = true;
				break;
			}
			if (r < 0)
				hi = mid;
			else
				lo = mid + 1;
		}
		if (!found) {
			if (n_stale == cap_stale) {
				unsigned int ncap = cap_stale ? cap_stale * 2 : 64;
				char *p = realloc(stale, (size_t)ncap * s->key_size);

				if (!p)
					goto out;
				stale = p;
				cap_stale = ncap;
			}
			memcpy(stale + n_stale * s->key_size, next, s->key_size);
			n_stale++;
		}
		memcpy(cur, next, s->key_size);
	}
	if (errno != ENOENT) {
		ret = -errno;
		pr_warn("msg=\"map walk failed\" map=%s err=\"%s\"", s->name,
			strerror(errno));
		goto out;
	}
	ret = 0;
	for (unsigned int i = 0; i < n_stale; i++) {
		if (bpf_map_delete_elem(s->fd, stale + i * s->key_size) &&
		    errno != ENOENT) {
			ret = -errno;
			pr_warn("msg=\"map delete failed\" map=%s err=\"%s\"",
				s->name, strerror(errno));
			break;
		}
	}
out:
	free(cur);
	free(keys);
	free(stale);
	return ret;
}

/* --- load balancing state kept across syncs ------------------------------ */

struct ejected {
	uint32_t service_id;
	struct nm_addr addr;
	__be16 port;
};

/* The endpoints outlier detection ejected (NM_EP_EJECTED in nm_backends). */
static int collect_ejected(struct nm_datapath *dp, struct ejected **out,
			   unsigned int *n_out)
{
	struct nm_backend_key key, next;
	const struct nm_backend_key *prev = NULL;
	struct ejected *e = NULL;
	unsigned int n = 0, cap = 0;
	struct nm_backend val;

	*out = NULL;
	*n_out = 0;
	while (!bpf_map_get_next_key(dp->fd_backends, prev, &next)) {
		key = next;
		prev = &key;
		if (bpf_map_lookup_elem(dp->fd_backends, &key, &val) ||
		    !(val.flags & NM_EP_EJECTED))
			continue;
		if (n == cap) {
			unsigned int ncap = cap ? cap * 2 : 8;
			void *p = realloc(e, ncap * sizeof(*e));

			if (!p) {
				free(e);
				return -ENOMEM;
			}
			e = p;
			cap = ncap;
		}
		e[n].service_id = key.service_id;
		e[n].addr = val.addr;
		e[n].port = val.port;
		n++;
	}
	*out = e;
	*n_out = n;
	return 0;
}

/*
 * The Maglev tables to write: the model's, except where the table in force
 * has another size that still fits the endpoint count (nm_lb_maglev_size()
 * keeps it): then the table is rebuilt at that size, so removing an endpoint
 * does not change the modulus and remap every client. Fills *sets (a copy
 * of the model's with the sizes used) and *mg.
 */
static int plan_maglev(struct nm_datapath *dp, const struct nm_model *m,
		       struct nm_model_lb_set **sets_out,
		       struct nm_model_maglev **mg_out, unsigned int *n_mg_out)
{
	struct nm_model_lb_set *sets = NULL;
	struct nm_model_maglev *mg = NULL;
	uint64_t *keys = NULL;
	uint32_t *table = NULL;
	unsigned int n_mg = 0, cap = 0;
	int ret = -ENOMEM;

	sets = malloc((m->n_lb_sets ? m->n_lb_sets : 1) * sizeof(*sets));
	if (!sets)
		goto fail;
	if (m->n_lb_sets)
		memcpy(sets, m->lb_sets, m->n_lb_sets * sizeof(*sets));
	for (unsigned int i = 0; i < m->n_lb_sets; i++) {
		struct nm_model_lb_set *ls = &sets[i];
		struct nm_lb_set cur;
		bool have_cur;

		if (ls->lb_algo != NM_LB_MAGLEV)
			continue;
		have_cur = bpf_map_lookup_elem(dp->fd_lb_sets, &ls->key, &cur) == 0;
		for (unsigned int si = 0; si < ls->val.n_subsets; si++) {
			struct nm_lb_subset *ss = &ls->val.subsets[si];
			uint32_t prev = have_cur && si < cur.n_subsets ?
						cur.subsets[si].maglev_size : 0;
			unsigned int off, n = nm_lb_primary_range(ss, ls->val.locality, &off);
			uint32_t want = nm_lb_maglev_size(n, prev);
			bool rebuild = want != ss->maglev_size;

			if (!n)
				continue;
			if (rebuild) {
				free(keys);
				free(table);
				keys = calloc(n, sizeof(*keys));
				table = calloc(want, sizeof(*table));
				if (!keys || !table)
					goto fail;
				for (unsigned int j = 0; j < n; j++) {
					const struct nm_model_backend *mb =
						&m->backends[ls->be_first + ss->start + off + j];

					keys[j] = nm_lb_endpoint_key(&mb->val.addr, mb->val.port);
				}
				ret = nm_lb_maglev_fill(keys, n, want, table);
				if (ret)
					goto fail;
				ret = -ENOMEM;
			}
			if (n_mg + want > cap) {
				unsigned int ncap = cap ? cap : 1024;
				void *p;

				while (ncap < n_mg + want)
					ncap *= 2;
				p = realloc(mg, ncap * sizeof(*mg));
				if (!p)
					goto fail;
				mg = p;
				cap = ncap;
			}
			for (uint32_t idx = 0; idx < want; idx++) {
				struct nm_model_maglev *e = &mg[n_mg++];

				if (!rebuild) {
					*e = m->maglev[ls->mg_first[si] + idx];
					continue;
				}
				memset(e, 0, sizeof(*e));
				e->key.service_id = ls->key.service_id;
				e->key.set = ls->key.slot | si;
				e->key.idx = idx;
				e->val = table[idx];
			}
			ss->maglev_size = want;
		}
	}
	*sets_out = sets;
	*mg_out = mg;
	*n_mg_out = n_mg;
	free(keys);
	free(table);
	return 0;
fail:
	free(sets);
	free(mg);
	free(keys);
	free(table);
	return ret;
}

int nm_datapath_sync(struct nm_datapath *dp, const struct nm_model *m)
{
	struct nm_model_backend *backends = NULL;
	struct nm_model_lb_set *sets = NULL;
	struct nm_model_maglev *mg = NULL;
	struct ejected *ej = NULL;
	unsigned int n_ej = 0, n_mg = 0;
	int ret;

	/* Ejections stay across syncs: outlier detection lifts them. */
	ret = collect_ejected(dp, &ej, &n_ej);
	if (ret)
		return ret;
	backends = malloc((m->n_backends ? m->n_backends : 1) * sizeof(*backends));
	if (!backends) {
		ret = -ENOMEM;
		goto out;
	}
	if (m->n_backends)
		memcpy(backends, m->backends, m->n_backends * sizeof(*backends));
	for (unsigned int i = 0; i < m->n_backends && n_ej; i++) {
		for (unsigned int k = 0; k < n_ej; k++) {
			if (backends[i].key.service_id == ej[k].service_id &&
			    backends[i].val.port == ej[k].port &&
			    !memcmp(&backends[i].val.addr, &ej[k].addr, sizeof(ej[k].addr)))
				backends[i].val.flags |= NM_EP_EJECTED;
		}
	}
	ret = plan_maglev(dp, m, &sets, &mg, &n_mg);
	if (ret)
		goto out;

	/*
	 * Order keeps every intermediate state consistent for connect4/6:
	 * backends exist before a service announces them, services and
	 * endpoints before workloads use them; stale services go before the
	 * backends they point at. Policy records go first, so a workload is
	 * never reachable before its DENY records are in; stale ones go last
	 * (a moment of an old DENY only refuses early what the destination
	 * agent decides anyway; workload ids are never reused). Maglev tables
	 * go in before the layout that sizes them; a layout read in the middle
	 * of a rewrite picks from old and new slots alike, each a valid
	 * backend. Established connections are never touched.
	 */
	{
		const struct sync_map maps[] = {
			{ "nm_policy", &dp->agent_errors[NM_MAP_POLICY], dp->fd_policy, m->policies, m->n_policies,
			  sizeof(*m->policies), sizeof(m->policies->key),
			  offsetof(struct nm_policy_rec, val) },
			{ "nm_backends", &dp->agent_errors[NM_MAP_BACKENDS], dp->fd_backends, backends, m->n_backends,
			  sizeof(*backends), sizeof(backends->key),
			  offsetof(struct nm_model_backend, val) },
			{ "nm_endpoints", &dp->agent_errors[NM_MAP_ENDPOINTS], dp->fd_endpoints, m->endpoints, m->n_endpoints,
			  sizeof(*m->endpoints), sizeof(m->endpoints->key),
			  offsetof(struct nm_model_endpoint, val) },
			{ "nm_maglev", &dp->agent_errors[NM_MAP_MAGLEV], dp->fd_maglev, mg, n_mg, sizeof(*mg),
			  sizeof(mg->key), offsetof(struct nm_model_maglev, val) },
			{ "nm_lb_sets", &dp->agent_errors[NM_MAP_LB_SETS], dp->fd_lb_sets, sets, m->n_lb_sets,
			  sizeof(*sets), sizeof(sets->key),
			  offsetof(struct nm_model_lb_set, val) },
			{ "nm_services", &dp->agent_errors[NM_MAP_SERVICES], dp->fd_services, m->services, m->n_services,
			  sizeof(*m->services), sizeof(m->services->key),
			  offsetof(struct nm_model_service, val) },
			{ "nm_workloads", &dp->agent_errors[NM_MAP_WORKLOADS], dp->fd_workloads, m->workloads, m->n_workloads,
			  sizeof(*m->workloads), sizeof(m->workloads->cgroup_id),
			  offsetof(struct nm_model_workload, val) },
			/* Probers before a workload turns STRICT (its flags are
			 * in nm_workloads), pruned after it is no longer. */
			{ "nm_probers", &dp->agent_errors[NM_MAP_PROBERS], dp->fd_probers, m->probers, m->n_probers,
			  sizeof(*m->probers), sizeof(m->probers->key),
			  offsetof(struct nm_model_prober, val) },
		};
		static const unsigned int prune_order[] = { 6, 5, 4, 3, 1, 2, 0, 7 };

		static const unsigned int upsert_order[] = { 7, 0, 1, 2, 3, 4, 5, 6 };

		for (unsigned int i = 0; i < sizeof(upsert_order) / sizeof(upsert_order[0]); i++) {
			ret = sync_upsert(&maps[upsert_order[i]]);
			if (ret)
				goto out;
		}
		for (unsigned int i = 0; i < sizeof(prune_order) / sizeof(prune_order[0]); i++) {
			ret = sync_prune(&maps[prune_order[i]]);
			if (ret)
				goto out;
		}
	}
out:
	free(backends);
	free(sets);
	free(mg);
	free(ej);
	return ret;
}

int nm_datapath_lb_active(struct nm_datapath *dp, uint32_t workload_id,
			  uint64_t *count)
{
	if (bpf_map_lookup_elem(dp->fd_lb_active, &workload_id, count)) {
		if (errno != ENOENT)
			return -errno;
		*count = 0;
	}
	return 0;
}

int nm_datapath_set_state(struct nm_datapath *dp, const struct nm_agent_state *st)
{
	struct nm_agent_state v = *st;
	__u32 key = 0;

	/* The version is the datapath's, not the caller's to choose. */
	v.abi_version = NM_ABI_VERSION;
	if (bpf_map_update_elem(dp->fd_agent_state, &key, &v, BPF_ANY)) {
		dp->agent_errors[NM_MAP_AGENT_STATE]++;
		return -errno;
	}
	return 0;
}

int nm_datapath_heartbeat(struct nm_datapath *dp)
{
	struct nm_agent_state st;
	struct timespec ts;
	__u32 key = 0;

	if (bpf_map_lookup_elem(dp->fd_agent_state, &key, &st))
		return -errno;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	st.heartbeat_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (bpf_map_update_elem(dp->fd_agent_state, &key, &st, BPF_ANY)) {
		dp->agent_errors[NM_MAP_AGENT_STATE]++;
		return -errno;
	}
	return 0;
}

int nm_datapath_take_orig(struct nm_datapath *dp,
			  const struct sockaddr_storage *peer,
			  struct nm_orig *out)
{
	struct nm_tuple_key key;

	memset(&key, 0, sizeof(key));
	nm_addr_from_sockaddr(peer, &key.addr, &key.port);
	/* Lookup then delete rather than BPF_MAP_LOOKUP_AND_DELETE_ELEM, which
	 * hash maps only support from 5.14; only the agent deletes here. */
	if (bpf_map_lookup_elem(dp->fd_orig_by_tuple, &key, out))
		return -errno;
	if (bpf_map_delete_elem(dp->fd_orig_by_tuple, &key) && errno != ENOENT)
		return -errno;
	return 0;
}

int nm_datapath_get_state(struct nm_datapath *dp, struct nm_agent_state *out)
{
	__u32 key = 0;

	if (bpf_map_lookup_elem(dp->fd_agent_state, &key, out))
		return -errno;
	return 0;
}

/* Deletes every key of a map; returns how many went, or -errno. */
static int map_clear(int fd, size_t key_size)
{
	uint8_t key[64], next[64];
	int n = 0;

	if (key_size > sizeof(key))
		return -EINVAL;
	/* Always restart from the first key: deleting the current key would
	 * make get_next_key start over anyway on older kernels. */
	while (!bpf_map_get_next_key(fd, NULL, next)) {
		memcpy(key, next, key_size);
		if (bpf_map_delete_elem(fd, key) && errno != ENOENT)
			return -errno;
		n++;
	}
	return errno == ENOENT ? n : -errno;
}

int nm_datapath_flush_records(struct nm_datapath *dp, unsigned int *flushed)
{
	int a, b, c;

	a = map_clear(dp->fd_orig_by_cookie, sizeof(__u64));
	if (a < 0)
		return a;
	b = map_clear(dp->fd_orig_by_tuple, sizeof(struct nm_tuple_key));
	if (b < 0)
		return b;
	/* An earlier run's connections died with it: a tuple it left could
	 * admit a stranger who reuses that source address and port. */
	c = map_clear(dp->fd_mesh_conns, sizeof(struct nm_conn_key));
	if (c < 0)
		return c;
	if (flushed)
		*flushed = (unsigned int)(a + b + c);
	return 0;
}

/* --- strict inbound: the agent's own connections to its pods ------------- */

int nm_datapath_mesh_conn_add(struct nm_datapath *dp,
			      const struct nm_conn_key *key, uint32_t workload_id)
{
	struct nm_mesh_conn v = { .workload_id = workload_id };

	if (!dp)
		return 0;
	if (bpf_map_update_elem(dp->fd_mesh_conns, key, &v, BPF_ANY)) {
		dp->agent_errors[NM_MAP_MESH_CONNS]++;
		return -errno;
	}
	return 0;
}

int nm_datapath_mesh_conn_del(struct nm_datapath *dp,
			      const struct nm_conn_key *key)
{
	if (!dp)
		return 0;
	if (bpf_map_delete_elem(dp->fd_mesh_conns, key) && errno != ENOENT)
		return -errno;
	return 0;
}

/* --- resilience: endpoint flags (mesh/outlier.h) ------------------------- */

int nm_datapath_set_backend_flags(struct nm_datapath *dp, uint32_t service_id,
				  const struct nm_addr *addr, __be16 port,
				  uint32_t set, uint32_t clear,
				  unsigned int *updated)
{
	struct nm_backend_key key, next;
	struct nm_backend val;
	const struct nm_backend_key *prev = NULL;
	unsigned int n = 0;
	int ret = 0;

	if (updated)
		*updated = 0;
	if (!dp)
		return 0;
	/* Ejection is rare and a service's slots are not indexed by address:
	 * walk the map. An update of an existing key never moves the walk. */
	while (!bpf_map_get_next_key(dp->fd_backends, prev, &next)) {
		key = next;
		prev = &key;
		if (key.service_id != service_id ||
		    bpf_map_lookup_elem(dp->fd_backends, &key, &val))
			continue;
		if (val.port != port || memcmp(&val.addr, addr, sizeof(*addr)))
			continue;
		val.flags = (val.flags & ~clear) | set;
		if (bpf_map_update_elem(dp->fd_backends, &key, &val, BPF_EXIST)) {
			ret = -errno;
			dp->agent_errors[NM_MAP_BACKENDS]++;
			break;
		}
		n++;
	}
	if (!ret && errno != ENOENT)
		ret = -errno;
	if (updated)
		*updated = n;
	return ret;
}

enum nm_events_transport nm_datapath_events_transport(const struct nm_datapath *dp)
{
	return dp->events;
}

int nm_datapath_events_fd(const struct nm_datapath *dp)
{
	return dp->fd_events;
}

bool nm_datapath_sock_stats_on(const struct nm_datapath *dp)
{
	return dp->sock_stats;
}

int nm_datapath_sock_stats(struct nm_datapath *dp, int fd,
			   struct nm_sock_stats *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);

	/* sk_storage maps take the socket's fd as key from user space. */
	if (bpf_map_lookup_elem(dp->fd_sock_stats, &fd, out) == 0)
		return 0;
	if (errno != ENOENT)
		return -errno;
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		return errno == EOPNOTSUPP || errno == ENOPROTOOPT ? -ENOENT : -errno;
	memset(out, 0, sizeof(*out));
	out->bytes_acked = ti.tcpi_bytes_acked;
	out->bytes_received = ti.tcpi_bytes_received;
	out->segs_in = ti.tcpi_segs_in;
	out->segs_out = ti.tcpi_segs_out;
	out->srtt_us = ti.tcpi_rtt;
	out->total_retrans = ti.tcpi_total_retrans;
	out->flags = NM_FLOW_TCP_INFO;
	return 0;
}

int nm_datapath_wl_stats(struct nm_datapath *dp, uint32_t workload_id,
			 struct nm_wl_stats *out)
{
	int ncpu = libbpf_num_possible_cpus(), ret = 0;
	struct nm_wl_stats *v;

	memset(out, 0, sizeof(*out));
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	v = calloc(ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(dp->fd_wl_stats, &workload_id, v)) {
		ret = errno == ENOENT ? 0 : -errno;
		goto out;
	}
	for (int i = 0; i < ncpu; i++) {
		out->connects += v[i].connects;
		out->redirects += v[i].redirects;
		out->denies += v[i].denies;
		out->passthrough += v[i].passthrough;
		out->bytes += v[i].bytes;
		out->errors += v[i].errors;
		out->kernel_flows += v[i].kernel_flows;
	}
out:
	free(v);
	return ret;
}

int nm_datapath_kernel_flows(struct nm_datapath *dp, uint64_t *out)
{
	int ncpu = libbpf_num_possible_cpus(), ret = 0;
	struct nm_wl_stats *v;
	uint32_t key, next;
	uint32_t *prev = NULL;

	*out = 0;
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	v = calloc(ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	while (bpf_map_get_next_key(dp->fd_wl_stats, prev, &next) == 0) {
		key = next;
		prev = &key;
		/* Deleted meanwhile: skipped. */
		if (bpf_map_lookup_elem(dp->fd_wl_stats, &key, v))
			continue;
		for (int i = 0; i < ncpu; i++)
			*out += v[i].kernel_flows;
	}
	if (errno != ENOENT)
		ret = -errno;
	free(v);
	return ret;
}

int nm_datapath_map_info(struct nm_datapath *dp, struct nm_map_info *out)
{
	int ret = nm_map_info_read(dp->pin_dir, out);

	for (int i = 0; i < NM_MAP__COUNT; i++)
		out[i].agent_errors = dp->agent_errors[i];
	return ret;
}

uint64_t nm_datapath_agent_map_errors(const struct nm_datapath *dp,
				      enum nm_map_id id)
{
	return (unsigned int)id < NM_MAP__COUNT ? dp->agent_errors[id] : 0;
}
