// SPDX-License-Identifier: Apache-2.0
/*
 * addr.c - the one address type of nodemesh (struct nm_addr, 16 bytes,
 * IPv4-mapped for v4, exactly as the maps store it) and its conversions to
 * text and sockaddrs. Shared by the agent and the CLI.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/addr.h"

static const uint8_t v4_prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int nm_addr_parse(const char *s, struct nm_addr *out, bool *is_v6)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (!s || !out)
		return -EINVAL;
	if (inet_pton(AF_INET, s, &a4) == 1) {
		memset(out->a, 0, 10);
		out->a[10] = 0xff;
		out->a[11] = 0xff;
		memcpy(out->a + 12, &a4, 4);
		if (is_v6)
			*is_v6 = false;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		memcpy(out->a, &a6, 16);
		if (is_v6)
			*is_v6 = true;
		return 0;
	}
	return -EINVAL;
}

bool nm_addr_is_v4(const struct nm_addr *ip)
{
	return ip && memcmp(ip->a, v4_prefix, sizeof(v4_prefix)) == 0;
}

void nm_addr_format(const struct nm_addr *ip, char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];

	if (!buf || len == 0)
		return;
	if (!ip) {
		buf[0] = '\0';
		return;
	}
	if (nm_addr_is_v4(ip))
		inet_ntop(AF_INET, ip->a + 12, tmp, sizeof(tmp));
	else
		inet_ntop(AF_INET6, ip->a, tmp, sizeof(tmp));
	snprintf(buf, len, "%s", tmp);
}

/*
 * Port 0 is accepted here (a caller may want an ephemeral bind); the config
 * refuses it for every field on its own.
 */
int nm_sockaddr_parse(const char *s, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN];
	const char *hs, *port_s;
	unsigned long port = 0;
	size_t hl, i;
	bool v6;

	if (!s || !out)
		return -EINVAL;
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || end[1] != ':')
			return -EINVAL;
		hs = s + 1;
		hl = (size_t)(end - hs);
		port_s = end + 2;
		v6 = true;
	} else {
		const char *colon = strchr(s, ':');

		/* A second ':' means an IPv6 address without brackets. */
		if (!colon || strchr(colon + 1, ':'))
			return -EINVAL;
		hs = s;
		hl = (size_t)(colon - s);
		port_s = colon + 1;
		v6 = false;
	}
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	for (i = 0; port_s[i]; i++) {
		if (port_s[i] < '0' || port_s[i] > '9' || i >= 5)
			return -EINVAL;
		port = port * 10 + (unsigned long)(port_s[i] - '0');
	}
	if (i == 0 || port > 65535)
		return -EINVAL;

	memset(out, 0, sizeof(*out));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
	}
	return 0;
}

void nm_addr_from_sockaddr(const struct sockaddr_storage *ss, struct nm_addr *out,
			   __be16 *port)
{
	memset(out, 0, sizeof(*out));
	if (port)
		*port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		memcpy(out->a, v4_prefix, sizeof(v4_prefix));
		memcpy(out->a + 12, &sin->sin_addr, 4);
		if (port)
			*port = sin->sin_port;
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		memcpy(out->a, &sin6->sin6_addr, 16);
		if (port)
			*port = sin6->sin6_port;
	}
}

void nm_addr_to_sockaddr(const struct nm_addr *a, __be16 port,
			 struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (memcmp(a->a, v4_prefix, sizeof(v4_prefix)) == 0) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, a->a + 12, 4);
		sin->sin_port = port;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, a->a, 16);
		sin6->sin6_port = port;
	}
}

/* "a.b.c.d:port", "[v6]:port", or "-" for other families; returns buf. */
const char *nm_sockaddr_format(const struct sockaddr_storage *ss, char *buf,
			  size_t len)
{
	struct nm_addr addr;
	char host[INET6_ADDRSTRLEN];
	__be16 port;

	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6) {
		snprintf(buf, len, "-");
		return buf;
	}
	nm_addr_from_sockaddr(ss, &addr, &port);
	nm_addr_format(&addr, host, sizeof(host));
	snprintf(buf, len, nm_addr_is_v4(&addr) ?
			   "%s:%u" : "[%s]:%u", host, ntohs(port));
	return buf;
}
