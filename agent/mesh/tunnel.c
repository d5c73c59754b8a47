// SPDX-License-Identifier: Apache-2.0
/*
 * tunnel.c - NMTP v1 preamble and status codec (DESIGN §5, tunnel.h).
 *
 * Pure byte handling: no I/O, no allocation, so the relay can call it on
 * whatever it has read so far and the fuzzer can call it on anything.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "mesh/tunnel.h"

/* TLV value sizes: u8 family + address + u16 port. */
#define ADDR_TLV_LEN4 (1 + 4 + 2)
#define ADDR_TLV_LEN6 (1 + 16 + 2)
#define FLOW_TLV_LEN 8

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (uint8_t)v;
		v >>= 8;
	}
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Size of the whole address TLV (type + len + value), or -EINVAL. */
static int addr_tlv_size(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return 2 + ADDR_TLV_LEN4;
	if (ss->ss_family == AF_INET6)
		return 2 + ADDR_TLV_LEN6;
	return -EINVAL;
}

/* Writes an address TLV; the caller checked the room with addr_tlv_size(). */
static size_t put_addr_tlv(uint8_t *p, uint8_t type,
			   const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		p[0] = type;
		p[1] = ADDR_TLV_LEN4;
		p[2] = 4;
		memcpy(p + 3, &sin->sin_addr, 4);
		/* sin_port is already network (big-endian) order. */
		memcpy(p + 7, &sin->sin_port, 2);
		return 2 + ADDR_TLV_LEN4;
	}
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

	p[0] = type;
	p[1] = ADDR_TLV_LEN6;
	p[2] = 6;
	memcpy(p + 3, &sin6->sin6_addr, 16);
	memcpy(p + 19, &sin6->sin6_port, 2);
	return 2 + ADDR_TLV_LEN6;
}

int nm_preamble_encode(const struct nm_preamble *p, uint8_t *buf, size_t len)
{
	int dst_size, src_size = 0;
	size_t total, off;

	dst_size = addr_tlv_size(&p->dst);
	if (dst_size < 0)
		return dst_size;
	if (p->has_src) {
		src_size = addr_tlv_size(&p->src);
		if (src_size < 0)
			return src_size;
	}
	total = NM_NMTP_HDR_LEN + (size_t)dst_size + (size_t)src_size +
		(p->has_flow ? 2 + FLOW_TLV_LEN : 0);
	/* Never above NM_NMTP_MAX with these three TLVs (58 bytes at most),
	 * but keep the invariant explicit for whoever adds the next one. */
	if (total > NM_NMTP_MAX)
		return -EINVAL;
	if (total > len)
		return -ENOSPC;

	memcpy(buf, NM_NMTP_MAGIC, NM_NMTP_MAGIC_LEN);
	put_be16(buf + NM_NMTP_MAGIC_LEN, (uint16_t)total);
	off = NM_NMTP_HDR_LEN;
	off += put_addr_tlv(buf + off, NM_TLV_DST, &p->dst);
	if (p->has_src)
		off += put_addr_tlv(buf + off, NM_TLV_SRC, &p->src);
	if (p->has_flow) {
		buf[off] = NM_TLV_FLOW;
		buf[off + 1] = FLOW_TLV_LEN;
		put_be64(buf + off + 2, p->flow_id);
		off += 2 + FLOW_TLV_LEN;
	}
	return (int)off;
}

/*
 * Checks the magic against however many bytes we have: 0 when they match so
 * far, -EBADMSG otherwise. A peer speaking something else is then rejected on
 * its first byte instead of after we waited for six.
 */
static int check_magic(const uint8_t *buf, size_t len)
{
	size_t n = len < NM_NMTP_MAGIC_LEN ? len : NM_NMTP_MAGIC_LEN;

	return memcmp(buf, NM_NMTP_MAGIC, n) == 0 ? 0 : -EBADMSG;
}

static int decode_addr(const uint8_t *v, uint8_t vlen,
		       struct sockaddr_storage *ss, const char **why)
{
	memset(ss, 0, sizeof(*ss));
	if (vlen < 1) {
		*why = "address TLV is empty";
		return -EBADMSG;
	}
	if (v[0] == 4) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		if (vlen != ADDR_TLV_LEN4) {
			*why = "IPv4 address TLV has the wrong length";
			return -EBADMSG;
		}
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, v + 1, 4);
		memcpy(&sin->sin_port, v + 5, 2);
		return 0;
	}
	if (v[0] == 6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (vlen != ADDR_TLV_LEN6) {
			*why = "IPv6 address TLV has the wrong length";
			return -EBADMSG;
		}
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, v + 1, 16);
		memcpy(&sin6->sin6_port, v + 17, 2);
		return 0;
	}
	*why = "address TLV has an unknown family";
	return -EBADMSG;
}

/*
 * Decodes the TLVs in buf[NM_NMTP_HDR_LEN, avail). TLVs that are complete are
 * validated even before the whole preamble has arrived, so garbage fails
 * fast; a TLV cut off at avail means "need more" unless avail is the end.
 */
static int decode_tlvs(const uint8_t *buf, size_t avail, size_t total,
		       struct nm_preamble *p, const char **why)
{
	unsigned int seen = 0;
	size_t off = NM_NMTP_HDR_LEN;
	int err;

	while (off < avail) {
		uint8_t type, vlen;

		if (avail - off < 2) {
			if (avail < total)
				return -EAGAIN;
			*why = "TLV runs past the end of the preamble";
			return -EBADMSG;
		}
		type = buf[off];
		vlen = buf[off + 1];
		/* Judged against the declared length, so a TLV that can never
		 * fit fails now rather than after we waited for it. */
		if (total - off - 2 < vlen) {
			*why = "TLV runs past the end of the preamble";
			return -EBADMSG;
		}
		if (avail - off - 2 < vlen)
			return -EAGAIN;
		off += 2;
		if (type == NM_TLV_DST || type == NM_TLV_SRC ||
		    type == NM_TLV_FLOW) {
			if (seen & (1u << type)) {
				*why = "duplicate TLV";
				return -EBADMSG;
			}
			seen |= 1u << type;
		}
		switch (type) {
		case NM_TLV_DST:
			err = decode_addr(buf + off, vlen, &p->dst, why);
			if (err)
				return err;
			break;
		case NM_TLV_SRC:
			err = decode_addr(buf + off, vlen, &p->src, why);
			if (err)
				return err;
			p->has_src = true;
			break;
		case NM_TLV_FLOW:
			if (vlen != FLOW_TLV_LEN) {
				*why = "FLOW TLV has the wrong length";
				return -EBADMSG;
			}
			p->flow_id = get_be64(buf + off);
			p->has_flow = true;
			break;
		default:
			/* Unknown types are skipped: newer peers may add some. */
			break;
		}
		off += vlen;
	}
	if (avail < total)
		return -EAGAIN;
	if (!(seen & (1u << NM_TLV_DST))) {
		*why = "DST TLV is missing";
		return -EBADMSG;
	}
	return 0;
}

int nm_preamble_decode(const uint8_t *buf, size_t len, struct nm_preamble *out,
		       const char **why)
{
	struct nm_preamble p;
	const char *dummy;
	size_t total, avail;
	int err;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (check_magic(buf, len)) {
		*why = "bad magic";
		return -EBADMSG;
	}
	if (len < NM_NMTP_HDR_LEN)
		return -EAGAIN;
	total = get_be16(buf + NM_NMTP_MAGIC_LEN);
	if (total < NM_NMTP_HDR_LEN) {
		*why = "length is shorter than the header";
		return -EBADMSG;
	}
	if (total > NM_NMTP_MAX) {
		*why = "length exceeds 512 bytes";
		return -EBADMSG;
	}
	avail = len < total ? len : total;
	memset(&p, 0, sizeof(p));
	err = decode_tlvs(buf, avail, total, &p, why);
	if (err)
		return err;
	if (out)
		*out = p;
	return (int)total;
}

int nm_status_encode(uint8_t status, uint8_t *buf, size_t len)
{
	if (len < NM_NMTP_STATUS_LEN)
		return -ENOSPC;
	memcpy(buf, NM_NMTP_MAGIC, NM_NMTP_MAGIC_LEN);
	buf[NM_NMTP_MAGIC_LEN] = status;
	return NM_NMTP_STATUS_LEN;
}

/*
 * Any status byte is passed through: the caller treats every non-zero value
 * as a refusal, so a newer server's status code still fails safely.
 */
int nm_status_decode(const uint8_t *buf, size_t len, uint8_t *status)
{
	if (check_magic(buf, len))
		return -EBADMSG;
	if (len < NM_NMTP_STATUS_LEN)
		return -EAGAIN;
	if (status)
		*status = buf[NM_NMTP_MAGIC_LEN];
	return NM_NMTP_STATUS_LEN;
}

const char *nm_status_str(uint8_t status)
{
	switch (status) {
	case NM_NMTP_OK:
		return "ok";
	case NM_NMTP_DENIED:
		return "denied";
	case NM_NMTP_NO_DEST:
		return "no such destination";
	case NM_NMTP_DEST_REFUSED:
		return "destination refused";
	case NM_NMTP_OVERLOADED:
		return "overloaded";
	default:
		return "unknown";
	}
}
