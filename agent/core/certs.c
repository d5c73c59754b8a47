// SPDX-License-Identifier: Apache-2.0
/*
 * certs.c - the event loop's side of the watched certificate directory
 * (mesh/certdir.h): start the watcher on the snapshot's certDir, and when
 * it hands over a new set, point new handshakes at it. Established
 * connections and handshakes in progress keep the set they started with
 * (each SSL holds a reference), so a rotation drops nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/daemon.h"
#include "core/loop.h"
#include "core/runstate.h"
#include "lib/log.h"
#include "mesh/certdir.h"

/* "ns/sa=SERIAL,..." of every identity, '*' after those that changed. */
static void list_serials(const struct nm_tls *old, const struct nm_tls *t,
			 char *buf, size_t len)
{
	unsigned int n = nm_tls_identity_count(t);
	size_t off = 0;

	buf[0] = '\0';
	for (unsigned int i = 0; i < n && off < len; i++) {
		struct nm_tls_cert_info ci, oi;
		bool changed = true;
		int w;

		if (nm_tls_cert_info(t, i, &ci))
			continue;
		for (unsigned int j = 0; old && j < nm_tls_identity_count(old); j++)
			if (!nm_tls_cert_info(old, j, &oi) &&
			    !strcmp(oi.id.ns, ci.id.ns) && !strcmp(oi.id.sa, ci.id.sa))
				changed = strcmp(oi.serial, ci.serial) != 0;
		w = snprintf(buf + off, len - off, "%s%s/%s=%s%s", off ? "," : "",
			     ci.id.ns, ci.id.sa, ci.serial, changed ? "*" : "");
		if (w < 0 || (size_t)w >= len - off) {
			/* Cut at the last whole entry. */
			buf[off] = '\0';
			if (off + 4 < len)
				strcat(buf, ",...");
			break;
		}
		off += (size_t)w;
	}
}

static void on_certs_ready(struct nm_loop *loop, int fd, unsigned int events,
			   void *data)
{
	struct nm_daemon *d = data;
	struct nm_agent *a = &d->agent;
	struct nm_tls *t, *old = a->tls;
	char serials[2048];
	int64_t change_ms = 0;

	t = nm_certdir_take(d->certdir, &change_ms);
	if (!t)
		return;
	nm_tls_set_resumption(t, d->tls_resumption);
	nm_tls_inherit(t, old);
	nm_tls_carry_stats(t, old);
	list_serials(old, t, serials, sizeof(serials));
	pr_info("msg=\"certificates rotated\" dir=%s generation=%u identities=%u anchors=%u anchors_changed=%s refused=%u since_change_ms=%lld serials=\"%s\"",
		a->cluster->cert_dir, nm_tls_generation(t),
		nm_tls_identity_count(t), nm_tls_anchor_count(t),
		nm_tls_same_anchors(t, old) ? "no" : "yes",
		nm_tls_refused_count(t),
		(long long)(nm_loop_now_ms() - change_ms), serials);
	/* Pooled tunnels were made with the old credentials. */
	nm_pool_flush(&a->tpool, "certificates rotated");
	a->tls = t;
	nm_tls_free(old);
	nm_runstate_write(a);
}

void nm_daemon_certs_stop(struct nm_daemon *d)
{
	if (!d->certdir)
		return;
	nm_loop_del(d->agent.loop, nm_certdir_fd(d->certdir));
	nm_certdir_stop(d->certdir);
	d->certdir = NULL;
}

void nm_daemon_certs_watch(struct nm_daemon *d)
{
	struct nm_agent *a = &d->agent;
	const struct nm_cluster *c = a->cluster;
	struct nm_certdir_opts o = {
		.dir = c->cert_dir,
		.trust_domain = c->trust_domain,
		.current = a->tls,
		.expiry_warning = c->mesh.cert_expiry_warning,
	};
	int ret;

	if (nm_certdir_watches(d->certdir, c->cert_dir, c->trust_domain)) {
		nm_certdir_set_expiry_warning(d->certdir, c->mesh.cert_expiry_warning);
		return;
	}
	/* A new folder or trust domain: the set in force was just loaded
	 * from it (reload.c), the old watcher's work is moot. */
	nm_daemon_certs_stop(d);
	ret = nm_certdir_start(&o, &d->certdir);
	if (!ret) {
		ret = nm_loop_add(a->loop, nm_certdir_fd(d->certdir), NM_EV_READ,
				  on_certs_ready, d);
		if (ret) {
			nm_certdir_stop(d->certdir);
			d->certdir = NULL;
		}
	}
	if (ret)
		pr_warn("msg=\"cannot watch the certificate folder; certificates load again only when certDir changes\" dir=%s err=\"%s\"",
			c->cert_dir, strerror(-ret));
}
