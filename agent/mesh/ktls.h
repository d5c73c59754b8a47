/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ktls.h - the TLS record layer in the kernel for tunnel sockets (issue 14,
 * DESIGN §2 path 4), where the kernel has the `tls` ULP.
 *
 * The handshake stays in OpenSSL. Sending: OpenSSL's own kTLS TX
 * (SSL_OP_ENABLE_KTLS) once the application keys are in place. Receiving:
 * OpenSSL 3.0 has no TLS 1.3 kTLS RX, so this file installs TLS_RX itself
 * from the peer's application traffic secret (keylog callback, HKDF-Expand-
 * Label) and the exact count of records OpenSSL already read under that key
 * (message callback), at a point where OpenSSL holds no unread bytes.
 * After that switch the socket is read and written as a plain socket; the
 * kernel encrypts, decrypts and reports alerts as control records.
 *
 * Fallback at every step is plain OpenSSL, never plaintext: TX is only ever
 * enabled by OpenSSL after the keys are in the kernel, and a connection
 * whose TX did not switch keeps OpenSSL's software records.
 */
#ifndef NM_MESH_KTLS_H
#define NM_MESH_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <openssl/ssl.h>

#include "mesh/fastpath.h"

enum nm_ktls_mode { NM_KTLS_AUTO = 0, NM_KTLS_OFF = 1 };

/*
 * Decides at start whether tunnels try kTLS: mode off, an OpenSSL built
 * without kTLS, or a kernel without the `tls` ULP (probed on a loopback TCP
 * pair, TLS_TX and TLS_RX with a dummy AES-GCM key) leave it off. Fills p:
 * active/mode "tx+rx" or "off" and the reason. Returns p->active.
 */
bool nm_ktls_probe(enum nm_ktls_mode mode, struct nm_path_state *p);

/*
 * Before the handshake, on an SSL attached to its connected socket: puts
 * the tls ULP on the socket, asks OpenSSL for kTLS TX and records what the
 * switch needs. 0, or -errno: the connection then runs plain OpenSSL.
 */
int nm_ktls_prepare(SSL *ssl, int fd);

/*
 * The same bookkeeping for the agent's own record layer (mesh/tlsrec.h),
 * for kernels without kTLS: no ULP, OpenSSL keeps its software records
 * until nm_ktls_switch_agent(). 0 or -ENOMEM.
 */
int nm_ktls_prepare_agent(SSL *ssl);
/* ssl was prepared by nm_ktls_prepare_agent(). */
bool nm_ktls_agent(const SSL *ssl);

/* nm_ktls_prepare() ran on ssl and it has not switched or given up. */
bool nm_ktls_prepared(const SSL *ssl);

/*
 * After OpenSSL returned application data and holds nothing unread
 * (SSL_has_pending() false): installs TLS_RX if OpenSSL's TX went to the
 * kernel. 1 switched (from now on only plain socket I/O, never SSL_read/
 * SSL_write), 0 not yet (ask again after the next read), -1 this
 * connection stays on OpenSSL (TX not offloaded, no secret, a KeyUpdate,
 * TLS_RX refused: the socket is unchanged either way).
 */
int nm_ktls_switch(SSL *ssl, int fd);

/*
 * The switch to the agent's record layer, at the same point as
 * nm_ktls_switch() (and with the same rule that OpenSSL must hold no
 * record it began to write): fills tx (this side's key and the records
 * OpenSSL wrote under it) and rx (the peer's). 1 switched (never
 * SSL_read/SSL_write again), 0 not yet, -1 stays on OpenSSL for good.
 */
struct nm_ktls_params;
int nm_ktls_switch_agent(SSL *ssl, struct nm_ktls_params *tx,
			 struct nm_ktls_params *rx);

/* The peer's record protection as the kernel takes it (and a test can
 * check by decrypting a record by hand). */
struct nm_ktls_params {
	int cipher;       /* TLS_CIPHER_* of linux/tls.h */
	size_t key_len;
	unsigned char key[32];
	unsigned char iv[12];
	unsigned long long seq; /* next record's sequence number */
};

/* 0, -EAGAIN (handshake not done / not prepared), -EKEYREJECTED (the peer
 * sent a KeyUpdate), -ENOKEY, -EOPNOTSUPP (cipher), -errno. */
int nm_ktls_rx_params(SSL *ssl, struct nm_ktls_params *p);
/* This side's: key, IV and the records OpenSSL wrote under it. */
int nm_ktls_tx_params(SSL *ssl, struct nm_ktls_params *p);

/*
 * Reads from a switched socket: > 0 bytes, 0 close_notify (or FIN),
 * -EAGAIN, -ECONNRESET, -EPROTO for any other alert or record type.
 */
ssize_t nm_ktls_recv(int fd, void *buf, size_t len);

/*
 * Closes and sends the record the kernel holds open on a switched socket.
 * A splice into it that stopped short (EAGAIN, or fewer bytes than asked)
 * can leave one: its last page went with MSG_SENDPAGE_NOTLAST / MSG_MORE,
 * so the record waits for more bytes, holds send-buffer memory and is
 * never sent, and the peer waits for bytes that this side holds back. A
 * zero-length sendmsg naming the record type pushes it (the kernel closes
 * an open record before it takes a record type). 0, -EAGAIN (try again on
 * the next event) or -errno.
 */
int nm_ktls_push(int fd);

/*
 * Makes TCP send what it holds unsent on a switched socket. A record that
 * fills up in the middle of a splice goes to TCP with
 * MSG_SENDPAGE_NOTLAST; when the send buffer was full, its last bytes
 * leave later from the TLS layer's own tx work, still with that flag, and
 * TCP is never told to push them. With nothing in flight no ACK comes to
 * send them either: the tail waits for good (seen on 6.1: 49218 bytes
 * below the GSO size goal, the peer's half-close never answered). Setting
 * TCP_NODELAY pushes pending frames. Returns the bytes still in the
 * socket's send queue (sent or not), or -errno.
 */
int nm_ktls_tcp_push(int fd);

#endif
