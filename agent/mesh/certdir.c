// SPDX-License-Identifier: Apache-2.0
/*
 * certdir.c - the watched certificate directory (certdir.h).
 *
 * Threads: the worker owns the inotify fd, the debounce, the rebuilds and
 * the expiry warnings; its only shared state is the hand-over slot (one
 * nm_tls under a mutex, signalled by an eventfd) and the warning setting
 * (atomic). The event loop never reads a file: nm_certdir_take() is a
 * pointer exchange. nm_tls references cross threads safely (atomic count).
 *
 * The worker keeps its own reference to the last set it built (or was
 * given) as the "last good" one nm_tls_reload() falls back to per identity;
 * a rebuild that comes out equal to it (nm_tls_same: an event that changed
 * nothing, or only refused files) is dropped, so sessions are not thrown
 * away for nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "mesh/certdir.h"

#define WATCH_MASK                                                        \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE |       \
	 IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ATTRIB)
#define EXPIRY_CHECK_MS 30000
#define RETRY_WATCH_MS 1000
#define REWARN_MIN_S 60
#define REWARN_MAX_S (6 * 3600)

/* A certificate warned about: identity and serial, and when. */
struct warned {
	char key[2 * NM_NAME_MAX + NM_TLS_SERIAL_MAX + 4];
	int64_t at;
	bool seen; /* still loaded at the last check */
};

struct nm_certdir {
	pthread_t thread;
	bool started;
	int stop_fd;
	int kick_fd;               /* the warning setting changed */
	int ready_fd;
	pthread_mutex_t lock;
	struct nm_tls *ready;      /* under lock */
	int64_t ready_change_ms;   /* under lock */
	atomic_llong warning;
	/* worker only from here */
	char dir[NM_PATH_MAX];
	char td[NM_NAME_MAX];
	unsigned int debounce_ms;
	struct nm_tls *last;
	int ino;
	bool watch_failed;         /* logged once until it works again */
	struct warned *warned;
	unsigned int n_warned;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t nm_certdir_warn_threshold(int64_t setting, int64_t not_before,
				  int64_t not_after)
{
	int64_t life = not_after - not_before;

	if (setting == 0)
		return 0;
	if (setting > 0)
		return setting;
	if (life <= 0)
		return NM_CERTDIR_WARN_DEFAULT_S;
	return life / 5 < NM_CERTDIR_WARN_DEFAULT_S ? life / 5
						    : NM_CERTDIR_WARN_DEFAULT_S;
}

int64_t nm_certdir_rewarn_interval(int64_t threshold)
{
	int64_t r = threshold / 4;

	if (r < REWARN_MIN_S)
		return REWARN_MIN_S;
	return r > REWARN_MAX_S ? REWARN_MAX_S : r;
}

/* --- watching ------------------------------------------------------------ */

static bool is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Watches the folders below path down to depth levels (hidden ones are
 * the atomic writer's; the swap shows as a rename in their parent). */
static void watch_below(int fd, const char *path, int depth)
{
	char sub[NM_PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (depth <= 0 || !(d = opendir(path)))
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path,
				     de->d_name) >= sizeof(sub) ||
		    !is_dir(sub))
			continue;
		if (inotify_add_watch(fd, sub, WATCH_MASK) >= 0)
			watch_below(fd, sub, depth - 1);
	}
	closedir(d);
}

/*
 * A fresh inotify fd on the tree as it is now. Set before reading the
 * files, so any change after this point is an event on it.
 */
static void rewatch(struct nm_certdir *w)
{
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (fd >= 0 && inotify_add_watch(fd, w->dir, WATCH_MASK) < 0) {
		int err = errno;

		close(fd);
		fd = -1;
		errno = err;
	}
	if (w->ino >= 0)
		close(w->ino);
	w->ino = fd;
	if (fd < 0) {
		if (!w->watch_failed)
			pr_warn("msg=\"cannot watch the certificate folder; retrying every second\" dir=%s err=\"%s\"",
				w->dir, strerror(errno));
		w->watch_failed = true;
		return;
	}
	w->watch_failed = false;
	watch_below(fd, w->dir, 2);
}

static bool drain(int fd)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;

	while (read(fd, buf, sizeof(buf)) > 0)
		any = true;
	return any;
}

/* --- expiry -------------------------------------------------------------- */

static struct warned *find_warned(struct nm_certdir *w, const char *key)
{
	for (unsigned int i = 0; i < w->n_warned; i++)
		if (!strcmp(w->warned[i].key, key))
			return &w->warned[i];
	return NULL;
}

/* Forgets certificates no longer loaded, so the table stays small. */
static void prune_warned(struct nm_certdir *w)
{
	unsigned int j = 0;

	for (unsigned int i = 0; i < w->n_warned; i++)
		if (w->warned[i].seen)
			w->warned[j++] = w->warned[i];
	w->n_warned = j;
}

static void check_expiry(struct nm_certdir *w)
{
	int64_t setting = atomic_load(&w->warning);
	int64_t now = (int64_t)time(NULL);
	unsigned int n = w->last ? nm_tls_identity_count(w->last) : 0;

	for (unsigned int i = 0; i < w->n_warned; i++)
		w->warned[i].seen = false;
	for (unsigned int i = 0; i < n; i++) {
		struct nm_tls_cert_info ci;
		char key[sizeof(((struct warned *)0)->key)];
		int64_t thr, left;
		struct warned *wd;

		if (nm_tls_cert_info(w->last, i, &ci))
			continue;
		snprintf(key, sizeof(key), "%s/%s %s", ci.id.ns, ci.id.sa,
			 ci.serial);
		wd = find_warned(w, key);
		if (wd)
			wd->seen = true;
		thr = nm_certdir_warn_threshold(setting, ci.not_before,
						ci.not_after);
		left = ci.not_after - now;
		if (!thr || left > thr)
			continue;
		if (wd && now - wd->at < nm_certdir_rewarn_interval(thr))
			continue;
		if (!wd) {
			struct warned *nw = realloc(w->warned, (w->n_warned + 1) *
							       sizeof(*nw));

			if (!nw)
				continue;
			w->warned = nw;
			wd = &w->warned[w->n_warned++];
			snprintf(wd->key, sizeof(wd->key), "%s", key);
			wd->seen = true;
		}
		wd->at = now;
		pr_warn("msg=\"%s\" id=spiffe://%s/ns/%s/sa/%s file=%s serial=%s seconds_to_expiry=%lld warn_before=%lld",
			left > 0 ? "certificate expires soon" :
				   "certificate has expired and is still in use",
			ci.id.trust_domain, ci.id.ns, ci.id.sa, ci.file,
			ci.serial, (long long)left, (long long)thr);
	}
	prune_warned(w);
}

/* --- rebuilding ---------------------------------------------------------- */

static void publish(struct nm_certdir *w, struct nm_tls *t, int64_t change_ms)
{
	struct nm_tls *old;

	pthread_mutex_lock(&w->lock);
	old = w->ready; /* never taken: superseded */
	w->ready = nm_tls_ref(t);
	w->ready_change_ms = change_ms;
	pthread_mutex_unlock(&w->lock);
	nm_tls_unref(old);
	eventfd_write(w->ready_fd, 1);
}

static void rebuild(struct nm_certdir *w, int64_t change_ms)
{
	char err[1024] = "";
	struct nm_tls *t = NULL;
	int ret;

	ret = nm_tls_reload(w->dir, w->td, w->last, &t, err, sizeof(err));
	if (ret) {
		pr_warn("msg=\"certificates refused, keeping the last good set\" dir=%s err=\"%s\"",
			w->dir, err);
		return;
	}
	if (nm_tls_same(t, w->last)) {
		pr_debug("msg=\"certificate folder changed, credentials did not\" dir=%s refused=%u",
			 w->dir, nm_tls_refused_count(t));
		nm_tls_unref(t);
		return;
	}
	publish(w, t, change_ms);
	nm_tls_unref(w->last);
	w->last = t;
	check_expiry(w);
}

static int timeout_until(int64_t now, int64_t at)
{
	if (at <= now)
		return 0;
	return at - now > 60000 ? 60000 : (int)(at - now);
}

static void *worker(void *arg)
{
	struct nm_certdir *w = arg;
	int64_t deadline = -1, first = 0, next_expiry, next_retry = 0;

	rewatch(w);
	check_expiry(w);
	next_expiry = mono_ms() + EXPIRY_CHECK_MS;
	/* Read once now: a change between the caller's load and the first
	 * watch would otherwise wait for the next event. */
	first = deadline = mono_ms();
	for (;;) {
		struct pollfd p[3] = { { .fd = w->stop_fd, .events = POLLIN },
				       { .fd = w->kick_fd, .events = POLLIN },
				       { .fd = w->ino, .events = POLLIN } };
		int64_t now = mono_ms(), wake = next_expiry;
		int n;

		if (deadline >= 0 && deadline < wake)
			wake = deadline;
		if (w->ino < 0 && next_retry < wake)
			wake = next_retry;
		n = poll(p, w->ino >= 0 ? 3 : 2, timeout_until(now, wake));
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		now = mono_ms();
		if (p[1].revents & POLLIN) {
			eventfd_t v;

			eventfd_read(w->kick_fd, &v);
			next_expiry = now;
		}
		if (w->ino >= 0 && (p[2].revents & POLLIN) && drain(w->ino)) {
			if (deadline < 0)
				first = now;
			deadline = now + w->debounce_ms;
			if (deadline > first + NM_CERTDIR_MAX_WAIT_MS)
				deadline = first + NM_CERTDIR_MAX_WAIT_MS;
		}
		if (w->ino < 0 && now >= next_retry) {
			rewatch(w);
			next_retry = now + RETRY_WATCH_MS;
			if (w->ino >= 0 && deadline < 0) {
				/* Back: whatever happened meanwhile is read now. */
				first = now;
				deadline = now;
			}
		}
		if (deadline >= 0 && now >= deadline) {
			deadline = -1;
			rewatch(w);
			rebuild(w, first);
		}
		if (now >= next_expiry) {
			check_expiry(w);
			next_expiry = now + EXPIRY_CHECK_MS;
		}
	}
	return NULL;
}

/* --- the event loop's side ------------------------------------------------ */

int nm_certdir_start(const struct nm_certdir_opts *o, struct nm_certdir **out)
{
	struct nm_certdir *w;
	int ret;

	if (strlen(o->dir) >= sizeof(w->dir) ||
	    strlen(o->trust_domain) >= sizeof(w->td))
		return -ENAMETOOLONG;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->ino = -1;
	w->ready_fd = -1;
	w->kick_fd = -1;
	pthread_mutex_init(&w->lock, NULL);
	snprintf(w->dir, sizeof(w->dir), "%s", o->dir);
	snprintf(w->td, sizeof(w->td), "%s", o->trust_domain);
	w->debounce_ms = o->debounce_ms ? o->debounce_ms : NM_CERTDIR_DEBOUNCE_MS;
	atomic_init(&w->warning, o->expiry_warning);
	w->last = nm_tls_ref(o->current);
	w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->ready_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->stop_fd < 0 || w->ready_fd < 0 || w->kick_fd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = -pthread_create(&w->thread, NULL, worker, w);
	if (ret)
		goto fail;
	w->started = true;
	*out = w;
	return 0;
fail:
	nm_certdir_stop(w);
	return ret;
}

void nm_certdir_stop(struct nm_certdir *w)
{
	if (!w)
		return;
	if (w->started) {
		eventfd_write(w->stop_fd, 1);
		pthread_join(w->thread, NULL);
	}
	if (w->ino >= 0)
		close(w->ino);
	if (w->stop_fd >= 0)
		close(w->stop_fd);
	if (w->ready_fd >= 0)
		close(w->ready_fd);
	if (w->kick_fd >= 0)
		close(w->kick_fd);
	nm_tls_unref(w->ready);
	nm_tls_unref(w->last);
	pthread_mutex_destroy(&w->lock);
	free(w->warned);
	free(w);
}

int nm_certdir_fd(const struct nm_certdir *w)
{
	return w->ready_fd;
}

struct nm_tls *nm_certdir_take(struct nm_certdir *w, int64_t *change_ms)
{
	eventfd_t v;
	struct nm_tls *t;

	eventfd_read(w->ready_fd, &v);
	pthread_mutex_lock(&w->lock);
	t = w->ready;
	w->ready = NULL;
	if (change_ms)
		*change_ms = w->ready_change_ms;
	pthread_mutex_unlock(&w->lock);
	return t;
}

bool nm_certdir_watches(const struct nm_certdir *w, const char *dir,
			const char *trust_domain)
{
	return w && !strcmp(w->dir, dir) && !strcmp(w->td, trust_domain);
}

void nm_certdir_set_expiry_warning(struct nm_certdir *w, int64_t secs)
{
	if (w && atomic_exchange(&w->warning, secs) != secs)
		eventfd_write(w->kick_fd, 1);
}
