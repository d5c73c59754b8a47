// SPDX-License-Identifier: Apache-2.0
/* check_loop.c - the event loop: fd events, masks, timers, stop. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/loop.h"
#include "nm_check.h"

struct probe {
	int reads;
	int writes;
	int fd_seen;
	int timer_runs;
	int stop_after;
};

static void on_fd(struct nm_loop *loop, int fd, unsigned int events, void *data)
{
	struct probe *p = data;
	char c;

	p->fd_seen = fd;
	if (events & NM_EV_READ) {
		p->reads++;
		ck_assert_int_eq(read(fd, &c, 1), 1);
	}
	if (events & NM_EV_WRITE) {
		p->writes++;
		nm_loop_set_mask(loop, fd, NM_EV_READ);
	}
	if (p->reads + p->writes >= p->stop_after)
		nm_loop_stop(loop);
}

static int64_t on_timer(struct nm_loop *loop, uint64_t id, void *data)
{
	struct probe *p = data;

	if (++p->timer_runs == 3) {
		nm_loop_stop(loop);
		return NM_TIMER_STOP;
	}
	return 5;
}

static int64_t stop_timer(struct nm_loop *loop, uint64_t id, void *data)
{
	nm_loop_stop(loop);
	return NM_TIMER_STOP;
}

START_TEST(test_read_event)
{
	struct nm_loop *loop;
	struct probe p = { .stop_after = 1 };
	int fds[2];

	ck_assert_int_eq(nm_loop_create(&loop), 0);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(nm_loop_add(loop, fds[0], NM_EV_READ, on_fd, &p), 0);
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	ck_assert_int_eq(nm_loop_run(loop), 0);
	ck_assert_int_eq(p.reads, 1);
	ck_assert_int_eq(p.fd_seen, fds[0]);
	nm_loop_del(loop, fds[0]);
	close(fds[0]);
	close(fds[1]);
	nm_loop_free(loop);
}
END_TEST

START_TEST(test_mask_change)
{
	struct nm_loop *loop;
	struct probe p = { .stop_after = 2 };
	int sv[2];

	ck_assert_int_eq(nm_loop_create(&loop), 0);
	ck_assert_int_eq(pipe(sv), 0);
	/* The write end is writable at once; the handler switches it to
	 * read-only interest, so exactly one write event arrives. */
	ck_assert_int_eq(nm_loop_add(loop, sv[1], NM_EV_WRITE, on_fd, &p), 0);
	ck_assert_int_eq(nm_loop_add_timer(loop, 50, stop_timer, NULL) > 0, 1);
	ck_assert_int_eq(nm_loop_run(loop), 0);
	ck_assert_int_eq(p.writes, 1);
	ck_assert_int_eq(nm_loop_set_mask(loop, 12345, NM_EV_READ), -ENOENT);
	nm_loop_del(loop, sv[1]);
	close(sv[0]);
	close(sv[1]);
	nm_loop_free(loop);
}
END_TEST

START_TEST(test_timers)
{
	struct nm_loop *loop;
	struct probe p = { 0 };
	int64_t t0;
	uint64_t dead;

	ck_assert_int_eq(nm_loop_create(&loop), 0);
	dead = nm_loop_add_timer(loop, 1, on_timer, &p);
	nm_loop_del_timer(loop, dead); /* deleted timers never run */
	ck_assert_int_ne(nm_loop_add_timer(loop, 5, on_timer, &p), 0);
	t0 = nm_loop_now_ms();
	ck_assert_int_eq(nm_loop_run(loop), 0);
	ck_assert_int_eq(p.timer_runs, 3);
	ck_assert_int_ge(nm_loop_now_ms() - t0, 14);
	nm_loop_free(loop);
}
END_TEST

START_TEST(test_bad_fd)
{
	struct nm_loop *loop;

	ck_assert_int_eq(nm_loop_create(&loop), 0);
	ck_assert_int_eq(nm_loop_add(loop, -1, NM_EV_READ, on_fd, NULL), -EBADF);
	ck_assert_int_eq(nm_loop_add(loop, 999, NM_EV_READ, on_fd, NULL), -EBADF);
	nm_loop_del(loop, 999); /* forgetting an unknown fd is harmless */
	nm_loop_free(loop);
}
END_TEST

static Suite *loop_suite(void)
{
	Suite *s = suite_create("loop");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_read_event);
	tcase_add_test(tc, test_mask_change);
	tcase_add_test(tc, test_timers);
	tcase_add_test(tc, test_bad_fd);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(loop_suite)
