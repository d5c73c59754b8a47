// SPDX-License-Identifier: Apache-2.0
/*
 * loop.c - epoll event loop (see loop.h).
 *
 * File handlers live in an array indexed by fd that grows on demand, as in
 * redis' ae. Timers are few (heartbeat, sweeps), so a plain list is cheaper
 * than a heap and easy to reason about.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/loop.h"

#define NM_LOOP_BATCH 256

struct nm_file_event {
	unsigned int mask;
	bool registered;
	nm_file_fn fn;
	void *data;
};

struct nm_timer {
	uint64_t id;
	int64_t when_ms;
	nm_timer_fn fn;
	void *data;
	bool deleted;
	struct nm_timer *next;
};

struct nm_loop {
	int epfd;
	bool stop;
	struct nm_file_event *files;
	int nfiles;
	struct nm_timer *timers;
	uint64_t next_timer_id;
	nm_hook_fn before_sleep;
	void *before_sleep_data;
	uint32_t spin_us; /* nm_loop_set_spin(); 0 = sleep at once */
	struct epoll_event events[NM_LOOP_BATCH];
};

/* Monotonic clock in us: the spin's deadline, and ms for the timers. */
static int64_t loop_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t nm_loop_now_ms(void)
{
	return loop_now_us() / 1000;
}

int nm_loop_create(struct nm_loop **out)
{
	struct nm_loop *loop;
	int err;

	loop = calloc(1, sizeof(*loop));
	if (!loop)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		err = -errno;
		goto err_free;
	}
	loop->next_timer_id = 1;
	*out = loop;
	return 0;

err_free:
	free(loop);
	return err;
}

void nm_loop_free(struct nm_loop *loop)
{
	struct nm_timer *t, *next;

	if (!loop)
		return;
	for (t = loop->timers; t; t = next) {
		next = t->next;
		free(t);
	}
	close(loop->epfd);
	free(loop->files);
	free(loop);
}

static int loop_reserve(struct nm_loop *loop, int fd)
{
	struct nm_file_event *files;
	int n;

	if (fd < loop->nfiles)
		return 0;
	n = loop->nfiles ? loop->nfiles : 64;
	while (n <= fd)
		n *= 2;
	files = realloc(loop->files, n * sizeof(*files));
	if (!files)
		return -ENOMEM;
	memset(files + loop->nfiles, 0, (n - loop->nfiles) * sizeof(*files));
	loop->files = files;
	loop->nfiles = n;
	return 0;
}

static uint32_t mask_to_epoll(unsigned int mask)
{
	return (mask & NM_EV_READ ? EPOLLIN : 0) |
	       (mask & NM_EV_WRITE ? EPOLLOUT : 0);
}

int nm_loop_add(struct nm_loop *loop, int fd, unsigned int mask, nm_file_fn fn,
		void *data)
{
	struct epoll_event ev = { .events = mask_to_epoll(mask), .data.fd = fd };
	int err;

	if (fd < 0)
		return -EBADF;
	err = loop_reserve(loop, fd);
	if (err)
		return err;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	loop->files[fd] = (struct nm_file_event){
		.mask = mask, .registered = true, .fn = fn, .data = data,
	};
	return 0;
}

int nm_loop_set_mask(struct nm_loop *loop, int fd, unsigned int mask)
{
	struct epoll_event ev = { .events = mask_to_epoll(mask), .data.fd = fd };
	struct nm_file_event *fe;

	if (fd < 0 || fd >= loop->nfiles || !loop->files[fd].registered)
		return -ENOENT;
	fe = &loop->files[fd];
	if (fe->mask == mask)
		return 0;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev))
		return -errno;
	fe->mask = mask;
	return 0;
}

void nm_loop_del(struct nm_loop *loop, int fd)
{
	if (fd < 0 || fd >= loop->nfiles || !loop->files[fd].registered)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL);
	loop->files[fd] = (struct nm_file_event){ 0 };
}

uint64_t nm_loop_add_timer(struct nm_loop *loop, int64_t delay_ms,
			   nm_timer_fn fn, void *data)
{
	struct nm_timer *t = calloc(1, sizeof(*t));

	if (!t)
		return 0;
	t->id = loop->next_timer_id++;
	t->when_ms = nm_loop_now_ms() + delay_ms;
	t->fn = fn;
	t->data = data;
	t->next = loop->timers;
	loop->timers = t;
	return t->id;
}

void nm_loop_del_timer(struct nm_loop *loop, uint64_t id)
{
	/* Marked, not unlinked: a timer may delete itself or another timer
	 * while the list is being walked. */
	for (struct nm_timer *t = loop->timers; t; t = t->next)
		if (t->id == id)
			t->deleted = true;
}

void nm_loop_set_before_sleep(struct nm_loop *loop, nm_hook_fn fn, void *data)
{
	loop->before_sleep = fn;
	loop->before_sleep_data = data;
}

void nm_loop_stop(struct nm_loop *loop)
{
	loop->stop = true;
}

static int loop_timeout_ms(const struct nm_loop *loop)
{
	int64_t now = nm_loop_now_ms(), best = -1;

	for (const struct nm_timer *t = loop->timers; t; t = t->next) {
		if (t->deleted)
			continue;
		int64_t d = t->when_ms > now ? t->when_ms - now : 0;
		if (best < 0 || d < best)
			best = d;
	}
	return best > 1000 ? 1000 : (int)best;
}

static void loop_run_timers(struct nm_loop *loop)
{
	int64_t now = nm_loop_now_ms();
	struct nm_timer **pp, *t;

	for (t = loop->timers; t; t = t->next) {
		if (t->deleted || t->when_ms > now)
			continue;
		int64_t again = t->fn(loop, t->id, t->data);
		if (again == NM_TIMER_STOP)
			t->deleted = true;
		else
			t->when_ms = nm_loop_now_ms() + again;
	}
	for (pp = &loop->timers; (t = *pp);) {
		if (t->deleted) {
			*pp = t->next;
			free(t);
		} else {
			pp = &t->next;
		}
	}
}

void nm_loop_set_spin(struct nm_loop *loop, uint32_t us)
{
	loop->spin_us = us;
}

/* epoll_wait(), after up to spin_us of zero-timeout polls when spinning is
 * on and the loop would sleep at all. The spin is far shorter than the
 * millisecond timers, so their deadlines are not adjusted for it. */
static int loop_wait(struct nm_loop *loop, int timeout_ms)
{
	if (loop->spin_us && timeout_ms != 0) {
		int64_t end = loop_now_us() + loop->spin_us;

		do {
			int n = epoll_wait(loop->epfd, loop->events,
					   NM_LOOP_BATCH, 0);

			if (n)
				return n;
			sched_yield();
		} while (loop_now_us() < end);
	}
	return epoll_wait(loop->epfd, loop->events, NM_LOOP_BATCH, timeout_ms);
}

int nm_loop_run(struct nm_loop *loop)
{
	loop->stop = false;
	while (!loop->stop) {
		int n, i;

		if (loop->before_sleep)
			loop->before_sleep(loop, loop->before_sleep_data);
		n = loop_wait(loop, loop_timeout_ms(loop));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (i = 0; i < n && !loop->stop; i++) {
			struct epoll_event *ev = &loop->events[i];
			int fd = ev->data.fd;
			unsigned int events = 0;

			/* A handler earlier in this batch may have closed fd. */
			if (fd >= loop->nfiles || !loop->files[fd].registered)
				continue;
			if (ev->events & EPOLLIN)
				events |= NM_EV_READ;
			if (ev->events & EPOLLOUT)
				events |= NM_EV_WRITE;
			if (ev->events & (EPOLLERR | EPOLLHUP))
				events |= NM_EV_ERROR;
			loop->files[fd].fn(loop, fd, events, loop->files[fd].data);
		}
		loop_run_timers(loop);
	}
	return 0;
}
