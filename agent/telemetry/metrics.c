// SPDX-License-Identifier: Apache-2.0
/*
 * metrics.c - the registry and the text exposition format (metrics.h).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/metrics.h"

/* ------------------------------------------------------------- buffers */

static bool sbuf_grow(struct nm_sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->oom)
		return false;
	if (b->len + more + 1 <= b->cap)
		return true;
	cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more + 1)
		cap *= 2;
	p = realloc(b->data, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->data = p;
	b->cap = cap;
	return true;
}

void nm_sbuf_putn(struct nm_sbuf *b, const char *s, size_t n)
{
	if (!sbuf_grow(b, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void nm_sbuf_puts(struct nm_sbuf *b, const char *s)
{
	nm_sbuf_putn(b, s, strlen(s));
}

void nm_sbuf_printf(struct nm_sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !sbuf_grow(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

char *nm_sbuf_take(struct nm_sbuf *b, size_t *len)
{
	char *p;

	if (b->oom) {
		nm_sbuf_free(b);
		return NULL;
	}
	if (!b->data && !sbuf_grow(b, 0))
		return NULL;
	if (!b->len)
		b->data[0] = '\0';
	p = b->data;
	if (len)
		*len = b->len;
	*b = (struct nm_sbuf){ 0 };
	return p;
}

void nm_sbuf_free(struct nm_sbuf *b)
{
	free(b->data);
	*b = (struct nm_sbuf){ 0 };
}

void nm_sbuf_prom_label(struct nm_sbuf *b, const char *v)
{
	const char *run = v;

	for (; *v; v++) {
		const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" :
				  *v == '\n' ? "\\n" : NULL;

		if (!esc)
			continue;
		nm_sbuf_putn(b, run, (size_t)(v - run));
		nm_sbuf_puts(b, esc);
		run = v + 1;
	}
	nm_sbuf_putn(b, run, (size_t)(v - run));
}

/* HELP text escaping: \ and newline only. */
static void sbuf_prom_help(struct nm_sbuf *b, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\')
			nm_sbuf_puts(b, "\\\\");
		else if (*v == '\n')
			nm_sbuf_puts(b, "\\n");
		else
			nm_sbuf_putn(b, v, 1);
	}
}

/* ------------------------------------------------------------ registry */

void nm_metrics_init(struct nm_metrics *m)
{
	m->head = NULL;
	m->tail = &m->head;
}

static void family_free(struct nm_metric_family *f)
{
	struct nm_metric_series *s, *n;

	for (s = f->head; s; s = n) {
		n = s->next;
		free(s);
	}
	free(f->overflow);
	free(f->table);
	free(f->name);
	free(f->help);
	for (unsigned int i = 0; i < f->n_labels; i++)
		free(f->labels[i]);
	free(f);
}

void nm_metrics_free(struct nm_metrics *m)
{
	struct nm_metric_family *f, *n;

	for (f = m->head; f; f = n) {
		n = f->next;
		family_free(f);
	}
	nm_metrics_init(m);
}

static bool name_ok(const char *s, bool colon)
{
	if (!s || !*s)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  c == '_' || (colon && c == ':') ||
			  (p != s && c >= '0' && c <= '9');

		if (!ok)
			return false;
	}
	return true;
}

struct nm_metric_family *nm_metrics_add(struct nm_metrics *m, const char *name,
					const char *help, enum nm_metric_type type,
					const char *const *labels,
					unsigned int n_labels,
					const double *bounds,
					unsigned int n_bounds,
					uint32_t max_series)
{
	struct nm_metric_family *f;

	if (!name_ok(name, true) || n_labels > NM_METRIC_MAX_LABELS ||
	    n_bounds > NM_METRIC_MAX_BOUNDS)
		return NULL;
	for (unsigned int i = 0; i < n_labels; i++)
		if (!name_ok(labels[i], false) || (type == NM_METRIC_HISTOGRAM &&
						   !strcmp(labels[i], "le")))
			return NULL;
	for (unsigned int i = 1; i < n_bounds; i++)
		if (!(bounds[i] > bounds[i - 1]))
			return NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	f->type = type;
	f->max_series = max_series ? max_series : 1;
	f->tail = &f->head;
	f->table_size = 64;
	f->table = calloc(f->table_size, sizeof(*f->table));
	if (!f->name || !f->help || !f->table)
		goto err;
	for (f->n_labels = 0; f->n_labels < n_labels; f->n_labels++) {
		f->labels[f->n_labels] = strdup(labels[f->n_labels]);
		if (!f->labels[f->n_labels])
			goto err;
	}
	if (type == NM_METRIC_HISTOGRAM) {
		memcpy(f->bounds, bounds, n_bounds * sizeof(*bounds));
		f->n_bounds = n_bounds;
	}
	*m->tail = f;
	m->tail = &f->next;
	return f;
err:
	family_free(f);
	return NULL;
}

/* FNV-1a over the values, each with its terminator. */
uint32_t nm_metric_hash(const char *const *values, unsigned int n)
{
	uint32_t h = 2166136261u;

	for (unsigned int i = 0; i < n; i++) {
		const char *v = values[i] ? values[i] : "";

		do {
			h ^= (uint8_t)*v;
			h *= 16777619u;
		} while (*v++);
	}
	return h;
}

static struct nm_metric_series *series_new(const struct nm_metric_family *f,
					   const char *const *values,
					   uint32_t hash)
{
	size_t len = sizeof(struct nm_metric_series), off;
	size_t blen = f->type == NM_METRIC_HISTOGRAM ?
			      (f->n_bounds + 1) * sizeof(uint64_t) : 0;
	struct nm_metric_series *s;

	for (unsigned int i = 0; i < f->n_labels; i++)
		len += strlen(values[i] ? values[i] : "") + 1;
	s = calloc(1, len + blen);
	if (!s)
		return NULL;
	s->hash = hash;
	off = sizeof(*s);
	if (blen) {
		s->buckets = (uint64_t *)((char *)s + off);
		off += blen;
	}
	for (unsigned int i = 0; i < f->n_labels; i++) {
		const char *v = values[i] ? values[i] : "";
		size_t n = strlen(v) + 1;

		memcpy((char *)s + off, v, n);
		s->values[i] = (char *)s + off;
		off += n;
	}
	return s;
}

static bool series_match(const struct nm_metric_family *f,
			 const struct nm_metric_series *s,
			 const char *const *values)
{
	for (unsigned int i = 0; i < f->n_labels; i++)
		if (strcmp(s->values[i], values[i] ? values[i] : ""))
			return false;
	return true;
}

static void table_grow(struct nm_metric_family *f)
{
	uint32_t size = f->table_size * 2;
	struct nm_metric_series **t = calloc(size, sizeof(*t));

	if (!t)
		return; /* longer chains, still correct */
	for (struct nm_metric_series *s = f->head; s; s = s->next) {
		s->hnext = t[s->hash & (size - 1)];
		t[s->hash & (size - 1)] = s;
	}
	free(f->table);
	f->table = t;
	f->table_size = size;
}

static struct nm_metric_series *overflow_series(struct nm_metric_family *f)
{
	const char *v[NM_METRIC_MAX_LABELS];

	f->dropped++;
	if (!f->overflow) {
		for (unsigned int i = 0; i < f->n_labels; i++)
			v[i] = NM_METRIC_OVERFLOW;
		f->overflow = series_new(f, v, 0);
	}
	return f->overflow;
}

struct nm_metric_series *nm_metric_get_hashed(struct nm_metric_family *f,
					      const char *const *values,
					      uint32_t hash)
{
	struct nm_metric_series *s;

	if (!f)
		return NULL;
	for (s = f->table[hash & (f->table_size - 1)]; s; s = s->hnext)
		if (s->hash == hash && series_match(f, s, values))
			return s;
	if (f->n_series >= f->max_series)
		return overflow_series(f);
	s = series_new(f, values, hash);
	if (!s)
		return overflow_series(f);
	s->hnext = f->table[hash & (f->table_size - 1)];
	f->table[hash & (f->table_size - 1)] = s;
	*f->tail = s;
	f->tail = &s->next;
	f->n_series++;
	if (f->n_series > f->table_size)
		table_grow(f);
	return s;
}

struct nm_metric_series *nm_metric_get(struct nm_metric_family *f,
				       const char *const *values)
{
	if (!f)
		return NULL;
	return nm_metric_get_hashed(f, values, nm_metric_hash(values, f->n_labels));
}

struct nm_metric_series *nm_metric_getv(struct nm_metric_family *f, ...)
{
	const char *v[4] = { 0 };
	va_list ap;

	if (!f || f->n_labels > 4)
		return NULL;
	va_start(ap, f);
	for (unsigned int i = 0; i < f->n_labels; i++)
		v[i] = va_arg(ap, const char *);
	va_end(ap);
	return nm_metric_get(f, v);
}

void nm_metric_observe(const struct nm_metric_family *f,
		       struct nm_metric_series *s, double v)
{
	unsigned int i;

	if (!f || !s || !s->buckets || isnan(v))
		return;
	for (i = 0; i < f->n_bounds && v > f->bounds[i]; i++)
		;
	s->buckets[i]++;
	s->count++;
	s->sum += v;
}

/* ----------------------------------------------------------- exposition */

/* Prometheus float text: integers without an exponent, +Inf/-Inf/NaN. */
static void put_value(struct nm_sbuf *b, double v)
{
	if (isnan(v))
		nm_sbuf_puts(b, "NaN");
	else if (isinf(v))
		nm_sbuf_puts(b, v > 0 ? "+Inf" : "-Inf");
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		nm_sbuf_printf(b, "%.0f", v);
	else
		nm_sbuf_printf(b, "%.17g", v);
}

static void put_labels(struct nm_sbuf *b, const struct nm_metric_family *f,
		       const struct nm_metric_series *s, const char *le)
{
	if (!f->n_labels && !le)
		return;
	nm_sbuf_puts(b, "{");
	for (unsigned int i = 0; i < f->n_labels; i++) {
		nm_sbuf_printf(b, "%s%s=\"", i ? "," : "", f->labels[i]);
		nm_sbuf_prom_label(b, s->values[i]);
		nm_sbuf_puts(b, "\"");
	}
	if (le)
		nm_sbuf_printf(b, "%sle=\"%s\"", f->n_labels ? "," : "", le);
	nm_sbuf_puts(b, "}");
}

static void render_series(struct nm_sbuf *b, const struct nm_metric_family *f,
			  const struct nm_metric_series *s)
{
	char le[64];
	uint64_t cum = 0;

	if (f->type != NM_METRIC_HISTOGRAM) {
		nm_sbuf_puts(b, f->name);
		put_labels(b, f, s, NULL);
		nm_sbuf_puts(b, " ");
		put_value(b, s->value);
		nm_sbuf_puts(b, "\n");
		return;
	}
	for (unsigned int i = 0; i <= f->n_bounds; i++) {
		cum += s->buckets[i];
		if (i < f->n_bounds)
			snprintf(le, sizeof(le), "%g", f->bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		nm_sbuf_printf(b, "%s_bucket", f->name);
		put_labels(b, f, s, le);
		nm_sbuf_printf(b, " %llu\n", (unsigned long long)cum);
	}
	nm_sbuf_printf(b, "%s_sum", f->name);
	put_labels(b, f, s, NULL);
	nm_sbuf_puts(b, " ");
	put_value(b, s->sum);
	nm_sbuf_printf(b, "\n%s_count", f->name);
	put_labels(b, f, s, NULL);
	nm_sbuf_printf(b, " %llu\n", (unsigned long long)s->count);
}

void nm_metrics_render(const struct nm_metrics *m, struct nm_sbuf *out)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };

	for (const struct nm_metric_family *f = m->head; f; f = f->next) {
		/* A family without samples would only be noise. */
		if (!f->head && !f->overflow)
			continue;
		nm_sbuf_printf(out, "# HELP %s ", f->name);
		sbuf_prom_help(out, f->help);
		nm_sbuf_printf(out, "\n# TYPE %s %s\n", f->name, types[f->type]);
		for (const struct nm_metric_series *s = f->head; s; s = s->next)
			render_series(out, f, s);
		if (f->overflow)
			render_series(out, f, f->overflow);
	}
}

static void stats_line(struct nm_sbuf *b, const struct nm_metric_family *f,
		       const struct nm_metric_series *s, const char *suffix,
		       double v)
{
	nm_sbuf_printf(b, "%s%s", f->name, suffix);
	put_labels(b, f, s, NULL);
	nm_sbuf_puts(b, ": ");
	put_value(b, v);
	nm_sbuf_puts(b, "\n");
}

void nm_metrics_render_stats(const struct nm_metrics *m, struct nm_sbuf *out)
{
	for (const struct nm_metric_family *f = m->head; f; f = f->next) {
		const struct nm_metric_series *s = f->head;

		for (int pass = 0; pass < 2; pass++) {
			for (; s; s = pass ? NULL : s->next) {
				if (f->type == NM_METRIC_HISTOGRAM) {
					stats_line(out, f, s, "_count", (double)s->count);
					stats_line(out, f, s, "_sum", s->sum);
				} else {
					stats_line(out, f, s, "", s->value);
				}
			}
			s = f->overflow;
		}
	}
}
