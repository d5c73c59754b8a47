/* SPDX-License-Identifier: Apache-2.0 */
/*
 * addr.h - struct nm_addr (nm_abi.h) as the single address type of user
 * space: parse, format, compare and convert to and from sockaddrs.
 */
#ifndef NM_LIB_ADDR_H
#define NM_LIB_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "nm_abi.h"

/* "a.b.c.d" or an IPv6 literal -> IPv4-mapped / v6; 0 or -EINVAL. */
int nm_addr_parse(const char *s, struct nm_addr *out, bool *is_v6);
bool nm_addr_is_v4(const struct nm_addr *ip);
void nm_addr_format(const struct nm_addr *ip, char *buf, size_t len);
/* "a.b.c.d:port" or "[v6]:port" -> sockaddr_in/in6; 0 or -EINVAL. */
int nm_sockaddr_parse(const char *s, struct sockaddr_storage *out);
void nm_addr_from_sockaddr(const struct sockaddr_storage *ss, struct nm_addr *out,
			   __be16 *port);
void nm_addr_to_sockaddr(const struct nm_addr *a, __be16 port,
			 struct sockaddr_storage *out);
/* "a.b.c.d:port", "[v6]:port", or "-" for other families; returns buf. */
const char *nm_sockaddr_format(const struct sockaddr_storage *ss, char *buf,
			       size_t len);

#endif
