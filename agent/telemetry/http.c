// SPDX-License-Identifier: Apache-2.0
/*
 * http.c - the metrics and admin servers (libmicrohttpd, own threads;
 * docs/telemetry.md). They serve only what the event loop published in
 * struct nm_tel_shared (internal.h), copied under its mutex; the one
 * process-wide thing they change is the log level (POST /logging), which
 * is atomic (lib/log.c).
 *
 * Metrics: one internal epoll thread, non-blocking, so a slow scraper only
 * costs its own connection. Admin: a thread per connection (at most
 * ADMIN_CONNS), since /flows?follow=1 waits for records on a condition
 * variable.
 */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "telemetry/internal.h"
#include "telemetry/metrics.h"

#define METRICS_CONNS 64
#define ADMIN_CONNS 16
#define FOLLOW_WAIT_S 1

struct nm_tel_http {
	struct nm_tel_shared *sh;
	struct MHD_Daemon *metrics, *admin;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int code,
			     const char *type, const char *body, size_t len)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned int code,
				  const char *text)
{
	return reply(c, code, "text/plain; charset=utf-8", text, strlen(text));
}

/* A published text, copied under the lock (NULL: not published yet). */
static enum MHD_Result reply_shared(struct nm_tel_shared *sh, struct MHD_Connection *c,
				    char *const *field, const char *type)
{
	struct MHD_Response *r = NULL;
	enum MHD_Result ret;

	pthread_mutex_lock(&sh->mu);
	if (*field)
		r = MHD_create_response_from_buffer(strlen(*field), *field,
						    MHD_RESPMEM_MUST_COPY);
	pthread_mutex_unlock(&sh->mu);
	if (!r)
		return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not published yet\n");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Only GET (and HEAD); a POST body is never read. */
static bool is_get(const char *method)
{
	return !strcmp(method, MHD_HTTP_METHOD_GET) || !strcmp(method, MHD_HTTP_METHOD_HEAD);
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *c,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	struct nm_tel_http *h = cls;

	if (!is_get(method))
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
	/* /stats/prometheus is where ztunnel serves them (and the chart's
	 * scrape annotation points). */
	if (strcmp(url, "/metrics") && strcmp(url, "/stats/prometheus"))
		return reply_text(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
	pthread_mutex_lock(&h->sh->mu);
	h->sh->scrapes++;
	pthread_mutex_unlock(&h->sh->mu);
	return reply_shared(h->sh, c, &h->sh->metrics,
			    "text/plain; version=0.0.4; charset=utf-8");
}

/* /flows: {"active": [...], "active_total": N, "truncated": bool,
 *          "recent": [...newest last]} */
static enum MHD_Result flows_list(struct nm_tel_shared *sh, struct MHD_Connection *c,
				  const char *w)
{
	struct nm_sbuf b = { 0 };
	uint64_t first, seq;
	bool comma = false;
	enum MHD_Result ret;
	char *body;
	size_t len;

	nm_sbuf_puts(&b, "{\"active\":[");
	pthread_mutex_lock(&sh->mu);
	for (unsigned int i = 0; i < sh->n_active; i++) {
		if (!nm_tel_entry_match(&sh->active[i], w))
			continue;
		if (comma)
			nm_sbuf_puts(&b, ",");
		nm_sbuf_puts(&b, sh->active[i].json);
		comma = true;
	}
	nm_sbuf_printf(&b, "],\"active_total\":%llu,\"truncated\":%s,\"recent\":[",
		       (unsigned long long)sh->active_total,
		       sh->active_truncated ? "true" : "false");
	comma = false;
	first = sh->next_seq > NM_TEL_RECENT ? sh->next_seq - NM_TEL_RECENT : 0;
	for (seq = first; seq < sh->next_seq; seq++) {
		const struct nm_tel_entry *e = &sh->ring[seq % NM_TEL_RING];

		if (!e->json || e->seq != seq || !nm_tel_entry_match(e, w))
			continue;
		if (comma)
			nm_sbuf_puts(&b, ",");
		nm_sbuf_puts(&b, e->json);
		comma = true;
	}
	pthread_mutex_unlock(&sh->mu);
	nm_sbuf_puts(&b, "]}\n");
	body = nm_sbuf_take(&b, &len);
	if (!body)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	ret = reply(c, MHD_HTTP_OK, "application/json", body, len);
	free(body);
	return ret;
}

struct follow {
	struct nm_tel_shared *sh;
	uint64_t next;
	char w[2 * NM_NAME_MAX + 2];
};

/* Closed-flow records as JSON lines, as they come; a reader that falls
 * more than the ring behind skips ahead. */
static ssize_t follow_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct follow *fo = cls;
	struct nm_tel_shared *sh = fo->sh;
	size_t n = 0;

	pthread_mutex_lock(&sh->mu);
	if (fo->next == sh->next_seq && !sh->stopping) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += FOLLOW_WAIT_S;
		pthread_cond_timedwait(&sh->cv, &sh->mu, &ts);
	}
	if (sh->stopping) {
		pthread_mutex_unlock(&sh->mu);
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	if (sh->next_seq - fo->next > NM_TEL_RING)
		fo->next = sh->next_seq - NM_TEL_RING;
	while (fo->next < sh->next_seq) {
		const struct nm_tel_entry *e = &sh->ring[fo->next % NM_TEL_RING];
		size_t len = e->json ? strlen(e->json) : 0;

		if (e->json && nm_tel_entry_match(e, fo->w)) {
			if (n + len + 1 > max) {
				if (n)
					break;
				/* Larger than MHD's block: not sendable whole. */
				fo->next++;
				continue;
			}
			memcpy(buf + n, e->json, len);
			buf[n + len] = '\n';
			n += len + 1;
		}
		fo->next++;
	}
	pthread_mutex_unlock(&sh->mu);
	return (ssize_t)n; /* 0: MHD asks again (we waited above) */
}

static enum MHD_Result flows_follow(struct nm_tel_shared *sh, struct MHD_Connection *c,
				    const char *w)
{
	struct MHD_Response *r;
	struct follow *fo = calloc(1, sizeof(*fo));
	enum MHD_Result ret;

	if (!fo)
		return reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	fo->sh = sh;
	snprintf(fo->w, sizeof(fo->w), "%s", w ? w : "");
	pthread_mutex_lock(&sh->mu);
	fo->next = sh->next_seq; /* from now on */
	pthread_mutex_unlock(&sh->mu);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, follow_read,
					      fo, free);
	if (!r) {
		free(fo);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-ndjson");
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result logging(struct MHD_Connection *c, const char *method)
{
	static const char *const names[] = { "warn", "info", "debug" };
	const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "level");
	char msg[160];
	int level;

	if (!strcmp(method, MHD_HTTP_METHOD_POST) && q) {
		if (nm_tel_parse_log_level(q, &level))
			return reply_text(c, MHD_HTTP_BAD_REQUEST,
					  "unknown level: use warn, info or debug\n");
		nm_log_set_level((enum nm_log_level)level);
		pr_info("msg=\"log level changed through the admin API\" level=%s",
			names[level]);
	} else if (!is_get(method) && strcmp(method, MHD_HTTP_METHOD_POST)) {
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET or POST\n");
	} else if (q) {
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "changing the level needs POST /logging?level=L\n");
	}
	snprintf(msg, sizeof(msg), "current log level is %s\n",
		 names[nm_log_get_level() <= NM_LOG_DEBUG ? nm_log_get_level() : 1]);
	return reply_text(c, MHD_HTTP_OK, msg);
}

static const char admin_help[] =
	"admin commands:\n"
	"  /config_dump        state, policies, certificates, features, limits (JSON)\n"
	"  /stats              counters as 'name: value' (?format=json)\n"
	"  /logging            GET: the log level; POST ?level=warn|info|debug\n"
	"  /flows              active and recent flows (JSON; ?workload=W, ?follow=1)\n";

static enum MHD_Result on_admin(void *cls, struct MHD_Connection *c,
				const char *url, const char *method,
				const char *version, const char *upload,
				size_t *upload_size, void **state)
{
	struct nm_tel_http *h = cls;
	const char *fmt, *w, *follow;

	/* POST: the first call only announces the request; a body is
	 * skipped, the answer goes out once it has all arrived. */
	if (!*state) {
		*state = (void *)1;
		if (!strcmp(method, MHD_HTTP_METHOD_POST))
			return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (!strcmp(url, "/logging"))
		return logging(c, method);
	if (!is_get(method))
		return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only (POST: /logging)\n");
	if (!strcmp(url, "/config_dump"))
		return reply_shared(h->sh, c, &h->sh->config_dump, "application/json");
	if (!strcmp(url, "/stats")) {
		fmt = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "format");
		if (fmt && !strcmp(fmt, "json"))
			return reply_shared(h->sh, c, &h->sh->stats_json, "application/json");
		if (fmt && strcmp(fmt, "text"))
			return reply_text(c, MHD_HTTP_BAD_REQUEST, "format: json or text\n");
		return reply_shared(h->sh, c, &h->sh->stats, "text/plain; charset=utf-8");
	}
	if (!strcmp(url, "/flows")) {
		w = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "workload");
		follow = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "follow");
		if (w && strlen(w) >= 2 * NM_NAME_MAX + 2)
			return reply_text(c, MHD_HTTP_BAD_REQUEST, "workload: too long\n");
		if (follow && (!strcmp(follow, "1") || !strcmp(follow, "true")))
			return flows_follow(h->sh, c, w);
		return flows_list(h->sh, c, w);
	}
	if (!strcmp(url, "/") || !strcmp(url, "/help"))
		return reply_text(c, MHD_HTTP_OK, admin_help);
	return reply_text(c, MHD_HTTP_NOT_FOUND, admin_help);
}

static struct MHD_Daemon *serve(struct nm_tel_http *h, const char *role,
				const struct nm_addr *ip, uint16_t port,
				unsigned int flags, unsigned int conns,
				unsigned int timeout_s, MHD_AccessHandlerCallback fn)
{
	struct sockaddr_storage ss;
	struct MHD_Daemon *d;
	char s1[64];

	nm_addr_to_sockaddr(ip, htons(port), &ss);
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/*
	 * No MHD_OPTION_LISTENING_ADDRESS_REUSE: left out, MHD sets
	 * SO_REUSEADDR alone, so a restarted agent binds again over the
	 * TIME_WAITs its scrapes left (set to false, it sets nothing and the
	 * bind fails for a minute). Never SO_REUSEPORT: a second agent in
	 * this netns would share the port and answer half the scrapes.
	 */
	d = MHD_start_daemon(flags | MHD_USE_INTERNAL_POLLING_THREAD, port, NULL, NULL,
			     fn, h,
			     MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
			     MHD_OPTION_CONNECTION_LIMIT, conns,
			     MHD_OPTION_CONNECTION_TIMEOUT, timeout_s,
			     MHD_OPTION_END);
	if (!d)
		pr_warn("msg=\"cannot serve\" role=%s addr=%s err=\"%s\"", role,
			nm_sockaddr_format(&ss, s1, sizeof(s1)), strerror(errno ? errno : EADDRINUSE));
	else
		pr_info("msg=\"listening\" role=%s addr=%s", role,
			nm_sockaddr_format(&ss, s1, sizeof(s1)));
	return d;
}

int nm_tel_http_start(struct nm_tel_shared *sh, const struct nm_telemetry_cfg *cfg,
		      struct nm_tel_http **out)
{
	struct nm_tel_http *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h)
		return -ENOMEM;
	h->sh = sh;
	if (cfg->metrics_port)
		h->metrics = serve(h, "metrics", &cfg->metrics_addr, cfg->metrics_port,
				   MHD_USE_EPOLL, METRICS_CONNS, 30, on_metrics);
	/* No idle timeout: a /flows?follow=1 stream is idle between records. */
	if (cfg->admin_port)
		h->admin = serve(h, "admin", &cfg->admin_addr, cfg->admin_port,
				 MHD_USE_THREAD_PER_CONNECTION, ADMIN_CONNS, 0, on_admin);
	*out = h;
	return 0;
}

void nm_tel_http_stop(struct nm_tel_http *h)
{
	if (!h)
		return;
	if (h->metrics)
		MHD_stop_daemon(h->metrics);
	if (h->admin)
		MHD_stop_daemon(h->admin);
	free(h);
}
