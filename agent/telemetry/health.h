/* SPDX-License-Identifier: Apache-2.0 */
/*
 * health.h - the readiness endpoint kubelet probes (:15021/healthz/ready,
 * as ztunnel serves it): 200 once the agent is set up (maps written,
 * listeners open), 503 while it stops. A minimal HTTP/1.1 responder on the
 * event loop: one request per connection, bounded, never blocking; the
 * admin and metrics endpoints come with the telemetry work.
 */
#ifndef NM_TELEMETRY_HEALTH_H
#define NM_TELEMETRY_HEALTH_H

#include <stdbool.h>
#include <sys/socket.h>

#include "core/loop.h"

struct nm_health;

/* Listens on addr; 0 or -errno. */
int nm_health_open(struct nm_loop *loop, const struct sockaddr_storage *addr,
		   struct nm_health **out);
void nm_health_set_ready(struct nm_health *h, bool ready);
void nm_health_close(struct nm_health *h);

/*
 * Pure: the response to one request (what arrived so far in req[len]):
 * 0 with *resp set once the request line is complete, -EAGAIN for more.
 */
int nm_health_respond(const char *req, size_t len, bool ready,
		      const char **resp);

#endif
