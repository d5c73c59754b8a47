// SPDX-License-Identifier: Apache-2.0
/* check_loop.c - the event loop: fd events, masks, timers, stop. */
#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
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

/* Context switches of the calling thread: voluntary ones are sleeps. */
static long thread_sleeps(void)
{
	struct rusage ru;

	ck_assert_int_eq(getrusage(RUSAGE_THREAD, &ru), 0);
	return ru.ru_nvcsw;
}

static int64_t thread_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A child process writes one byte to fd after 20 ms. A process, not a
 * thread: a thread of our own would share the address space, and its
 * start and exit (stack mappings, sanitizer bookkeeping) can make the loop
 * thread wait on the mm's lock, a voluntary switch that is not the loop's. */
static pid_t write_later(int fd)
{
	pid_t pid = fork();

	if (pid == 0) {
		usleep(20 * 1000);
		_exit(write(fd, "x", 1) == 1 ? 0 : 1);
	}
	return pid;
}

/* mesh.busyPoll's loop half: data that arrives within the spin window is
 * found by polling, so the loop thread never goes to sleep for it. */
START_TEST(test_spin_finds_data_awake)
{
	struct nm_loop *loop;
	struct probe p = { .stop_after = 1 };
	int fds[2], status;
	pid_t writer;
	long sleeps;

	ck_assert_int_eq(nm_loop_create(&loop), 0);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(nm_loop_add(loop, fds[0], NM_EV_READ, on_fd, &p), 0);
	nm_loop_set_spin(loop, 2 * 1000 * 1000); /* far beyond the 20 ms */
	writer = write_later(fds[1]);
	ck_assert_int_gt(writer, 0);
	sleeps = thread_sleeps();
	ck_assert_int_eq(nm_loop_run(loop), 0);
	ck_assert_int_eq(thread_sleeps() - sleeps, 0);
	ck_assert_int_eq(p.reads, 1);
	ck_assert_int_eq(waitpid(writer, &status, 0), writer);
	ck_assert_int_eq(WIFEXITED(status) && WEXITSTATUS(status) == 0, 1);
	nm_loop_del(loop, fds[0]);
	close(fds[0]);
	close(fds[1]);
	nm_loop_free(loop);
}
END_TEST

/* The spin is bounded: past it the loop sleeps until the timer, so an
 * idle agent does not burn its core, and timers still run. Without spin
 * the same run sleeps too (the control). */
START_TEST(test_spin_then_sleep)
{
	for (int spin = 0; spin < 2; spin++) {
		struct nm_loop *loop;
		int64_t cpu, t0;
		long sleeps;

		ck_assert_int_eq(nm_loop_create(&loop), 0);
		nm_loop_set_spin(loop, spin ? 1000 : 0); /* 1 ms */
		ck_assert_int_ne(nm_loop_add_timer(loop, 60, stop_timer, NULL), 0);
		sleeps = thread_sleeps();
		cpu = thread_cpu_us();
		t0 = nm_loop_now_ms();
		ck_assert_int_eq(nm_loop_run(loop), 0);
		ck_assert_int_ge(nm_loop_now_ms() - t0, 59);
		ck_assert_int_ge(thread_sleeps() - sleeps, 1);
		/* 1 ms of spin per wait, a few waits: well under the 60 ms a
		 * spin without end would burn. */
		ck_assert_int_lt(thread_cpu_us() - cpu, 25 * 1000);
		nm_loop_free(loop);
	}
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
	tcase_add_test(tc, test_spin_finds_data_awake);
	tcase_add_test(tc, test_spin_then_sleep);
	suite_add_tcase(s, tc);
	return s;
}

NM_CHECK_MAIN(loop_suite)
