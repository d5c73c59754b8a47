// SPDX-License-Identifier: Apache-2.0
/*
 * sockmap.c - loads bpf/nm_relay.bpf.c, attaches its verdict to
 * nm_relay_src, and updates the relay's maps for mesh/zerocopy.c
 * (sockmap.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "datapath/probe.h"
#include "datapath/sockmap.h"
#include "lib/errbuf.h"
#include "nm_relay.skel.h"

struct nm_sockmap {
	struct nm_relay_bpf *skel;
	struct ring_buffer *rb;
	nm_sockmap_sig_fn fn;
	void *arg;
	int src_fd, dst_fd, dirs_fd, ctl_fd;
};

static int on_sig(void *ctx, void *data, size_t size)
{
	struct nm_sockmap *sm = ctx;
	uint64_t cookie;

	if (size < sizeof(cookie))
		return 0;
	memcpy(&cookie, data, sizeof(cookie));
	sm->fn(cookie, sm->arg);
	return 0;
}

int nm_sockmap_open(struct nm_sockmap **out, const struct nm_sockmap_opts *opts,
		    nm_sockmap_sig_fn fn, void *arg, char *err, size_t errlen)
{
	struct nm_sockmap *sm = calloc(1, sizeof(*sm));
	struct bpf_program *prog, *vprog;
	const char *verdict;
	int ret;

	*out = NULL;
	if (!sm)
		return -ENOMEM;
	sm->fn = fn;
	sm->arg = arg;
	sm->skel = nm_relay_bpf__open();
	if (!sm->skel) {
		ret = -errno;
		nm_set_err(err, errlen, "open nm_relay: %s", strerror(-ret));
		goto fail;
	}
	verdict = opts && opts->verdict ? opts->verdict : nm_probe_relay_verdict();
	if (!verdict) {
		ret = -EOPNOTSUPP;
		nm_set_err(err, errlen, "%s", NM_PROBE_RELAY_TOO_OLD);
		goto fail;
	}
	vprog = bpf_object__find_program_by_name(sm->skel->obj, verdict);
	if (!vprog) {
		ret = -ENOENT;
		nm_set_err(err, errlen, "nm_relay has no program %s", verdict);
		goto fail;
	}
	/* The verdict alone: the pick is the one nm_probe_relay_loads names
	 * (tests/vm/vmprobe loads by it), the others may not load here. */
	bpf_object__for_each_program(prog, sm->skel->obj)
		bpf_program__set_autoload(prog, prog == vprog);
	if (opts && opts->no_trim)
		sm->skel->rodata->nm_relay_trim_calls = 0;
	ret = nm_relay_bpf__load(sm->skel);
	if (ret) {
		/* EPERM for nm_relay_verdict_probe: it needs CAP_PERFMON. */
		nm_set_err(err, errlen, "load nm_relay (%s): %s", verdict, strerror(-ret));
		goto fail;
	}
	sm->src_fd = bpf_map__fd(sm->skel->maps.nm_relay_src);
	sm->dst_fd = bpf_map__fd(sm->skel->maps.nm_relay_dst);
	sm->dirs_fd = bpf_map__fd(sm->skel->maps.nm_relay_dirs);
	sm->ctl_fd = bpf_map__fd(sm->skel->maps.nm_relay_ctl);
	if (bpf_prog_attach(bpf_program__fd(vprog),
			    sm->src_fd, BPF_SK_SKB_STREAM_VERDICT, 0)) {
		ret = -errno;
		nm_set_err(err, errlen, "attach stream verdict: %s", strerror(-ret));
		goto fail;
	}
	sm->rb = ring_buffer__new(bpf_map__fd(sm->skel->maps.nm_relay_sig), on_sig,
				  sm, NULL);
	if (!sm->rb) {
		ret = -errno;
		nm_set_err(err, errlen, "nm_relay_sig ring: %s", strerror(-ret));
		goto fail;
	}
	*out = sm;
	return 0;
fail:
	nm_sockmap_close(sm);
	return ret ? ret : -EINVAL;
}

void nm_sockmap_close(struct nm_sockmap *sm)
{
	if (!sm)
		return;
	ring_buffer__free(sm->rb);
	/* The programs go with the maps: no link outlives the agent. */
	nm_relay_bpf__destroy(sm->skel);
	free(sm);
}

int nm_sockmap_sig_fd(const struct nm_sockmap *sm)
{
	return ring_buffer__epoll_fd(sm->rb);
}

void nm_sockmap_sig_poll(struct nm_sockmap *sm)
{
	ring_buffer__consume(sm->rb);
}

static int sock_add(int map_fd, int fd, uint64_t cookie)
{
	uint64_t v = (uint64_t)fd;

	return bpf_map_update_elem(map_fd, &cookie, &v, BPF_NOEXIST) ? -errno : 0;
}

int nm_sockmap_add_dst(struct nm_sockmap *sm, int fd, uint64_t cookie)
{
	return sock_add(sm->dst_fd, fd, cookie);
}

int nm_sockmap_add_dir(struct nm_sockmap *sm, uint64_t cookie, uint64_t peer,
		       uint64_t high)
{
	struct nm_relay_dir d = { .peer = peer };
	struct nm_relay_ctl c = { .high = high };

	if (bpf_map_update_elem(sm->ctl_fd, &cookie, &c, BPF_NOEXIST))
		return -errno;
	if (bpf_map_update_elem(sm->dirs_fd, &cookie, &d, BPF_NOEXIST)) {
		int ret = -errno;

		bpf_map_delete_elem(sm->ctl_fd, &cookie);
		return ret;
	}
	return 0;
}

int nm_sockmap_start(struct nm_sockmap *sm, int fd, uint64_t cookie)
{
	return sock_add(sm->src_fd, fd, cookie);
}

int nm_sockmap_stop(struct nm_sockmap *sm, uint64_t cookie)
{
	if (bpf_map_delete_elem(sm->src_fd, &cookie) && errno != ENOENT)
		return -errno;
	return 0;
}

int nm_sockmap_get_dir(struct nm_sockmap *sm, uint64_t cookie,
		       struct nm_relay_dir *out)
{
	return bpf_map_lookup_elem(sm->dirs_fd, &cookie, out) ? -errno : 0;
}

int nm_sockmap_set_sent(struct nm_sockmap *sm, uint64_t cookie, uint64_t sent,
			uint64_t high)
{
	struct nm_relay_ctl c = { .sent = sent, .high = high };

	/* The whole record: the program only sets signaled, and one it set
	 * meanwhile has already sent its signal. */
	return bpf_map_update_elem(sm->ctl_fd, &cookie, &c, BPF_EXIST) ? -errno : 0;
}

int nm_sockmap_park(struct nm_sockmap *sm, uint64_t cookie)
{
	/* signaled stays set: a parked source redirects nothing more, so its
	 * sent count is never read again. */
	struct nm_relay_ctl c = { .high = UINT64_MAX, .signaled = 1, .parked = 1 };

	return bpf_map_update_elem(sm->ctl_fd, &cookie, &c, BPF_EXIST) ? -errno : 0;
}

void nm_sockmap_forget(struct nm_sockmap *sm, uint64_t cookie)
{
	bpf_map_delete_elem(sm->src_fd, &cookie);
	bpf_map_delete_elem(sm->dirs_fd, &cookie);
	bpf_map_delete_elem(sm->ctl_fd, &cookie);
	bpf_map_delete_elem(sm->dst_fd, &cookie);
}
