/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tcp_repair.h - makes a TCP sender retransmit bytes its peer already has
 * (tests/bpf/test_relay, tests/tools/nm_overlap): the overlapping
 * retransmission a sender that merged or re-cut segments sends after a
 * real loss, on demand. Needs CAP_NET_ADMIN (TCP_REPAIR). The MSS, window
 * scales and TCP timestamps (the clock, so PAWS takes the new segments)
 * carry over to the rebuilt socket, as CRIU restores a connection.
 */
#ifndef NM_TESTS_TCP_REPAIR_H
#define NM_TESTS_TCP_REPAIR_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/filter.h>

/* A classic socket filter that drops every packet fd receives (on), or
 * none (off): TCP discards them before it looks at them. 0 or -errno. */
static inline int nm_tcp_drop_input(int fd, bool on)
{
	struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
	struct sock_fprog prog = { .len = 1, .filter = &drop };
	int zero = 0, ret;

	if (on)
		ret = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
	else
		ret = setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof(zero));
	return ret ? -errno : 0;
}

static inline int nm_tcp_queue_seq(int fd, int queue, uint32_t *seq, bool set)
{
	socklen_t len = sizeof(*seq);

	if (setsockopt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)))
		return -errno;
	if (set)
		return setsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, sizeof(*seq)) ? -errno : 0;
	return getsockopt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, seq, &len) ? -errno : 0;
}

/*
 * *fd, an established socket with nothing unacknowledged, is rebuilt with
 * TCP_REPAIR as one whose last `back` bytes were sent but never
 * acknowledged (they were: the peer has them), holding those and the new
 * bytes after them: buf holds all n (n > back). The peer's
 * acknowledgements are dropped (nm_tcp_drop_input on the new socket, so
 * none trims its queue) until the caller lets them in. Its retransmission
 * timer (first after the initial RTO, 1 s) then sends all n bytes in one
 * segment if the MSS allows, starting `back` bytes before what the peer
 * already has. The old socket closes silently (in repair mode). 0 and
 * *fd replaced, or -errno and *fd closed.
 */
static inline int nm_tcp_resend_overlapping(int *fd, size_t back, const void *buf, size_t n)
{
	struct sockaddr_storage self, peer;
	socklen_t slen = sizeof(self), plen = sizeof(peer), len;
	struct tcp_repair_window win;
	struct tcp_info ti;
	uint32_t snd, rcv, ts = 0;
	int one = 1, zero = 0, mss = 0, s = -1, ret, q = TCP_SEND_QUEUE;
	size_t off = 0;

	if (getsockname(*fd, (struct sockaddr *)&self, &slen) ||
	    getpeername(*fd, (struct sockaddr *)&peer, &plen) ||
	    setsockopt(*fd, IPPROTO_TCP, TCP_REPAIR, &one, sizeof(one)))
		goto fail;
	if ((ret = nm_tcp_queue_seq(*fd, TCP_SEND_QUEUE, &snd, false)) ||
	    (ret = nm_tcp_queue_seq(*fd, TCP_RECV_QUEUE, &rcv, false)))
		goto out;
	len = sizeof(win);
	if (getsockopt(*fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, &len))
		goto fail;
	len = sizeof(mss);
	if (getsockopt(*fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len))
		goto fail;
	len = sizeof(ti);
	if (getsockopt(*fd, IPPROTO_TCP, TCP_INFO, &ti, &len))
		goto fail;
	len = sizeof(ts);
	if ((ti.tcpi_options & TCPI_OPT_TIMESTAMPS) &&
	    getsockopt(*fd, IPPROTO_TCP, TCP_TIMESTAMP, &ts, &len))
		goto fail;

	s = socket(self.ss_family, SOCK_STREAM, 0);
	if (s < 0 || setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &one, sizeof(one)))
		goto fail;
	if ((ret = nm_tcp_drop_input(s, true)))
		goto out;
	close(*fd); /* in repair mode: silently, the peer sees nothing */
	*fd = -1;
	if (bind(s, (struct sockaddr *)&self, slen))
		goto fail;
	snd -= (uint32_t)back;
	if ((ret = nm_tcp_queue_seq(s, TCP_SEND_QUEUE, &snd, true)) ||
	    (ret = nm_tcp_queue_seq(s, TCP_RECV_QUEUE, &rcv, true)))
		goto out;
	if (connect(s, (struct sockaddr *)&peer, plen))
		goto fail;
	{
		struct tcp_repair_opt opts[] = {
			{ TCPOPT_MAXSEG, (uint32_t)mss },
			{ TCPOPT_WINDOW, ti.tcpi_snd_wscale | (uint32_t)ti.tcpi_rcv_wscale << 16 },
			{ TCPOPT_TIMESTAMP, 0 },
		};
		size_t n_opts = ti.tcpi_options & TCPI_OPT_TIMESTAMPS ? 3 : 2;

		if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, opts,
			       (socklen_t)(n_opts * sizeof(opts[0]))))
			goto fail;
	}
	if ((ti.tcpi_options & TCPI_OPT_TIMESTAMPS) &&
	    setsockopt(s, IPPROTO_TCP, TCP_TIMESTAMP, &ts, sizeof(ts)))
		goto fail;
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &win, sizeof(win)) ||
	    setsockopt(s, IPPROTO_TCP, TCP_REPAIR_QUEUE, &q, sizeof(q)))
		goto fail;
	/* In repair mode the send queue takes bytes as already sent. */
	while (off < n) {
		ssize_t w = send(s, (const char *)buf + off, n - off, 0);

		if (w <= 0)
			goto fail;
		off += (size_t)w;
	}
	if (setsockopt(s, IPPROTO_TCP, TCP_REPAIR, &zero, sizeof(zero)))
		goto fail;
	*fd = s;
	return 0;
fail:
	ret = -errno;
out:
	if (s >= 0)
		close(s);
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
	return ret ? ret : -EIO;
}

#endif
