/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tunnel.h - NMTP v1 codec (DESIGN §5). Pure byte handling, no I/O.
 *
 * Preamble, client -> server, sent right after the TLS handshake:
 *   "NMT1" | u16 total length, big endian, of the whole preamble including
 *   magic and length (<= NM_NMTP_MAX) | TLVs: u8 type, u8 len, value
 *   DST  (1): u8 family (4|6), address (4|16 bytes), u16 port  - required
 *   SRC  (2): same layout as DST                               - optional
 *   FLOW (3): u64 flow id, big endian                          - optional
 * Unknown TLV types are skipped; a TLV that runs past the end, a duplicate
 * known TLV, a bad family or length is malformed.
 * Status, server -> client: "NMT1" | u8 status (enum nm_nmtp_status).
 */
#ifndef NM_TUNNEL_H
#define NM_TUNNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NM_NMTP_MAGIC "NMT1"
#define NM_NMTP_MAGIC_LEN 4
#define NM_NMTP_HDR_LEN 6     /* magic + u16 length */
#define NM_NMTP_MAX 512
#define NM_NMTP_STATUS_LEN 5  /* magic + u8 status */
#define NM_NMTP_ALPN "nmtp/1"

enum nm_nmtp_tlv {
	NM_TLV_DST = 1,
	NM_TLV_SRC = 2,
	NM_TLV_FLOW = 3,
};

enum nm_nmtp_status {
	NM_NMTP_OK = 0,
	NM_NMTP_DENIED = 1,
	NM_NMTP_NO_DEST = 2,
	NM_NMTP_DEST_REFUSED = 3,
	NM_NMTP_OVERLOADED = 4,
};

struct nm_preamble {
	struct sockaddr_storage dst;  /* AF_INET or AF_INET6 */
	bool has_src;
	struct sockaddr_storage src;
	bool has_flow;
	uint64_t flow_id;
};

/* Returns bytes written (<= len) or -ENOSPC / -EINVAL (bad family). */
int nm_preamble_encode(const struct nm_preamble *p, uint8_t *buf, size_t len);
/*
 * Returns bytes consumed (> 0) when a whole preamble was decoded,
 * -EAGAIN when buf holds a valid prefix and more bytes are needed, or
 * -EBADMSG when it is malformed; *why (may be NULL) then says what is wrong.
 */
int nm_preamble_decode(const uint8_t *buf, size_t len, struct nm_preamble *out,
		       const char **why);

/* Writes NM_NMTP_STATUS_LEN bytes; returns that or -ENOSPC. */
int nm_status_encode(uint8_t status, uint8_t *buf, size_t len);
/* Returns NM_NMTP_STATUS_LEN, -EAGAIN (need more) or -EBADMSG. */
int nm_status_decode(const uint8_t *buf, size_t len, uint8_t *status);
const char *nm_status_str(uint8_t status);

#endif
