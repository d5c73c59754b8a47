/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pattern.h - a byte stream whose every byte is known from its offset
 * (tests/bpf/test_relay, tests/tools/nm_overlap): a relay that drops,
 * repeats or reorders a byte is caught at that byte, not by a checksum at
 * the end. The seed tells two streams apart (up and down, one case from
 * the next). Functions return 0 or -errno; the callers decide what a
 * failure means (an assertion in a test, a JSON verdict in a tool).
 */
#ifndef NM_TESTS_PATTERN_H
#define NM_TESTS_PATTERN_H

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define NM_PATTERN_CHUNK 16384

static inline uint8_t nm_pattern_byte(uint64_t off, unsigned int seed)
{
	return (uint8_t)(((off + seed) * 0x9e3779b97f4a7c15ull) >> 56);
}

/* Writes the n bytes of the stream from offset from, blocking. */
static inline int nm_pattern_send(int fd, size_t n, unsigned int seed, uint64_t from)
{
	uint8_t buf[NM_PATTERN_CHUNK];

	for (size_t done = 0; done < n;) {
		size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
		ssize_t w;

		for (size_t i = 0; i < k; i++)
			buf[i] = nm_pattern_byte(from + done + i, seed);
		w = send(fd, buf, k, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EPIPE;
		done += (size_t)w;
	}
	return 0;
}

/*
 * Reads n bytes of the stream from offset from, giving up after idle_ms
 * without a byte. *got is how many good bytes came: all n (0), fewer when
 * the wait ran out (-ETIMEDOUT), the peer closed (-EPIPE) or reset
 * (-ECONNRESET), or the offset from + *got of the first wrong byte
 * (-EBADMSG).
 */
static inline int nm_pattern_recv(int fd, size_t n, unsigned int seed, uint64_t from,
				  int idle_ms, size_t *got)
{
	uint8_t buf[NM_PATTERN_CHUNK];

	*got = 0;
	while (*got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		size_t want = n - *got < sizeof(buf) ? n - *got : sizeof(buf);
		ssize_t r;
		int ready;

		ready = poll(&p, 1, idle_ms);
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0)
			return -errno;
		if (ready == 0)
			return -ETIMEDOUT;
		r = recv(fd, buf, want, MSG_DONTWAIT);
		if (r < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EPIPE;
		for (ssize_t i = 0; i < r; i++) {
			if (buf[i] != nm_pattern_byte(from + *got, seed))
				return -EBADMSG;
			(*got)++;
		}
	}
	return 0;
}

#endif /* NM_TESTS_PATTERN_H */
