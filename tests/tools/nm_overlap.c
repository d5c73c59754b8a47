// SPDX-License-Identifier: Apache-2.0
/*
 * nm_overlap - a client whose retransmission repeats bytes the echo server
 * on the other side (through the agent) already has:
 *
 *   nm_overlap --to IP:PORT [--bytes N] [--back B] [--more M]
 *              [--timeout-ms T]
 *
 * Sends N bytes and reads their echo, then rebuilds its socket with
 * TCP_REPAIR (tests/lib/tcp_repair.h) so that its next segment carries the
 * last B of those bytes again and M new ones, with the peer's packets
 * dropped until that segment has gone out twice (initial RTO, 1 s, then
 * 2 s). Then it reads until T ms pass without a byte and prints one JSON
 * line:
 *   {"echo":true,"after":"echoed","match":true}   the M new bytes came back
 *                                                 once each, in order
 *   {"echo":true,"after":"reset"}                 the connection was reset
 *   {"echo":true,"after":"timeout","got":K}       neither, T ms without a byte
 * or {"echo":false,"error":"..."}. Exit 0 when it could run the scenario
 * (whatever came after), 1 otherwise, 2 for usage. Needs CAP_NET_ADMIN.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/addr.h"
#include "../lib/pattern.h"
#include "../lib/tcp_repair.h"

static int fail(const char *what, int e)
{
	printf("{\"echo\":false,\"error\":\"%s: %s\"}\n", what, strerror(e));
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "bytes", required_argument, NULL, 'n' },
		{ "back", required_argument, NULL, 'b' },
		{ "more", required_argument, NULL, 'm' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ 0 },
	};
	struct sockaddr_storage to = { 0 };
	size_t n = 100000, back = 300, more = 200, got = 0;
	bool have_to = false;
	int timeout = 8000, opt, fd, err;
	uint8_t rebuilt[1024];

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			have_to = !nm_sockaddr_parse(optarg, &to);
			break;
		case 'n':
			n = strtoul(optarg, NULL, 0);
			break;
		case 'b':
			back = strtoul(optarg, NULL, 0);
			break;
		case 'm':
			more = strtoul(optarg, NULL, 0);
			break;
		case 'T':
			timeout = atoi(optarg);
			break;
		default:
			return 2;
		}
	}
	/* back + more go in one segment of the rebuilt socket, whose MSS is
	 * at least 536 less 12 bytes of timestamps. */
	if (!have_to || optind != argc || !back || !more || back > n ||
	    back + more > 512) {
		fprintf(stderr, "usage: nm_overlap --to IP:PORT [--bytes N] [--back B] [--more M] [--timeout-ms T]\n"
				"  (0 < B <= N, M > 0, B + M <= 512)\n");
		return 2;
	}
	fd = socket(to.ss_family, SOCK_STREAM, 0);
	if (fd < 0)
		return fail("socket", errno);
	if (connect(fd, (struct sockaddr *)&to, to.ss_family == AF_INET ?
		    sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)))
		return fail("connect", errno);
	err = nm_pattern_send(fd, n, 0, 0);
	if (!err)
		err = nm_pattern_recv(fd, n, 0, 0, timeout, &got);
	if (err)
		return fail("first echo", -err);
	/* The echo is back, so the server has every byte; a moment more
	 * for the last acknowledgement, so nothing is left unacknowledged. */
	usleep(100 * 1000);
	for (size_t i = 0; i < back + more; i++)
		rebuilt[i] = nm_pattern_byte(n - back + i, 0);
	err = nm_tcp_resend_overlapping(&fd, back, rebuilt, back + more);
	if (err)
		return fail("TCP_REPAIR rebuild", -err);
	/* Two transmissions of the overlapping segment (1 s RTO, then 2 s)
	 * before the peer's packets count again. */
	usleep(3500 * 1000);
	err = nm_tcp_drop_input(fd, false);
	if (err)
		return fail("detach filter", -err);
	err = nm_pattern_recv(fd, more, 0, n, timeout, &got);
	if (!err)
		printf("{\"echo\":true,\"after\":\"echoed\",\"match\":true}\n");
	else if (err == -ECONNRESET)
		printf("{\"echo\":true,\"after\":\"reset\"}\n");
	else if (err == -ETIMEDOUT)
		printf("{\"echo\":true,\"after\":\"timeout\",\"got\":%zu}\n", got);
	else if (err == -EBADMSG)
		printf("{\"echo\":true,\"after\":\"echoed\",\"match\":false}\n");
	else
		printf("{\"echo\":true,\"after\":\"%s\"}\n", strerror(-err));
	close(fd);
	return 0;
}
