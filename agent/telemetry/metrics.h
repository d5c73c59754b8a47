/* SPDX-License-Identifier: Apache-2.0 */
/*
 * metrics.h - a small Prometheus registry: counter, gauge and histogram
 * families with fixed label names, their series keyed by label values, and
 * the text exposition format 0.0.4. Pure and single-threaded: the event loop
 * updates it and renders it into a buffer it then publishes to the HTTP
 * thread (telemetry.c); nothing here locks.
 *
 * Cardinality is bounded per family: at most max_series label sets. The
 * first lookup of a label set past the cap returns the family's overflow
 * series, whose every label value is NM_METRIC_OVERFLOW, and counts the
 * refused set in the family's dropped counter (exported as
 * nodemesh_metric_series_overflow_total{metric="..."}). Series are never
 * freed while the registry lives, so callers may keep series pointers.
 */
#ifndef NM_TELEMETRY_METRICS_H
#define NM_TELEMETRY_METRICS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NM_METRIC_MAX_LABELS 24
#define NM_METRIC_MAX_BOUNDS 24
#define NM_METRIC_OVERFLOW "other"

/* A growing text buffer; on allocation failure it stays short and sets oom. */
struct nm_sbuf {
	char *data;
	size_t len, cap;
	bool oom;
};

void nm_sbuf_putn(struct nm_sbuf *b, const char *s, size_t n);
void nm_sbuf_puts(struct nm_sbuf *b, const char *s);
void nm_sbuf_printf(struct nm_sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Takes the text (NUL-terminated, caller frees); the buffer is empty after. */
char *nm_sbuf_take(struct nm_sbuf *b, size_t *len);
void nm_sbuf_free(struct nm_sbuf *b);
/* Prometheus label-value escaping: \ " and newline. */
void nm_sbuf_prom_label(struct nm_sbuf *b, const char *v);

enum nm_metric_type {
	NM_METRIC_COUNTER,
	NM_METRIC_GAUGE,
	NM_METRIC_HISTOGRAM,
};

struct nm_metric_series {
	struct nm_metric_series *hnext;  /* hash chain */
	struct nm_metric_series *next;   /* creation order, for rendering */
	uint32_t hash;
	double value;                    /* counter, gauge */
	double sum;                      /* histogram */
	uint64_t count;                  /* histogram */
	uint64_t *buckets;               /* histogram: per bound, not cumulative */
	const char *values[NM_METRIC_MAX_LABELS]; /* into the same allocation */
};

struct nm_metric_family {
	struct nm_metric_family *next;
	char *name, *help;
	enum nm_metric_type type;
	unsigned int n_labels;
	char *labels[NM_METRIC_MAX_LABELS];
	double bounds[NM_METRIC_MAX_BOUNDS];
	unsigned int n_bounds;
	uint32_t max_series;
	uint32_t n_series;
	uint64_t dropped;                /* label sets refused by the cap */
	struct nm_metric_series *overflow;
	struct nm_metric_series *head, **tail;
	struct nm_metric_series **table; /* hash buckets */
	uint32_t table_size;             /* power of two */
};

struct nm_metrics {
	struct nm_metric_family *head, **tail;
};

void nm_metrics_init(struct nm_metrics *m);
void nm_metrics_free(struct nm_metrics *m);

/*
 * A new family (registration order is exposition order). name and label
 * names must match [a-zA-Z_:][a-zA-Z0-9_:]* (label names without ':');
 * bounds (histograms: ascending, +Inf implied) may be NULL. NULL on a bad
 * name or out of memory.
 */
struct nm_metric_family *nm_metrics_add(struct nm_metrics *m, const char *name,
					const char *help, enum nm_metric_type type,
					const char *const *labels,
					unsigned int n_labels,
					const double *bounds,
					unsigned int n_bounds,
					uint32_t max_series);

/* One hash of n label values, to look the same set up in several families. */
uint32_t nm_metric_hash(const char *const *values, unsigned int n);
/*
 * The series of these label values (n_labels of them; NULL values read as
 * ""), created on first use. Past the cap, or out of memory, the overflow
 * series; NULL only when even that cannot be allocated.
 */
struct nm_metric_series *nm_metric_get(struct nm_metric_family *f,
				       const char *const *values);
struct nm_metric_series *nm_metric_get_hashed(struct nm_metric_family *f,
					      const char *const *values,
					      uint32_t hash);
/* Shorthand for families with up to 4 labels. */
struct nm_metric_series *nm_metric_getv(struct nm_metric_family *f, ...);

/* NULL-safe updates. */
static inline void nm_metric_add(struct nm_metric_series *s, double v)
{
	if (s)
		s->value += v;
}

static inline void nm_metric_set(struct nm_metric_series *s, double v)
{
	if (s)
		s->value = v;
}

void nm_metric_observe(const struct nm_metric_family *f,
		       struct nm_metric_series *s, double v);

/* The whole registry in the text format 0.0.4 (HELP, TYPE, samples). */
void nm_metrics_render(const struct nm_metrics *m, struct nm_sbuf *out);
/* Every counter and gauge series as "name{labels}: value" lines (the admin
 * /stats text form); histograms as name_count and name_sum. */
void nm_metrics_render_stats(const struct nm_metrics *m, struct nm_sbuf *out);

#endif
