/* SPDX-License-Identifier: Apache-2.0 */
/*
 * loop.h - a small single-threaded epoll event loop in the shape of redis'
 * ae: file events with one handler per fd, timers, and a before-sleep hook.
 * Level-triggered; handlers see the epoll events that fired.
 */
#ifndef NM_LOOP_H
#define NM_LOOP_H

#include <stdint.h>

#define NM_EV_READ 0x1u
#define NM_EV_WRITE 0x2u
#define NM_EV_ERROR 0x4u /* EPOLLERR/EPOLLHUP, reported, never requested */

#define NM_TIMER_STOP (-1)

struct nm_loop;

typedef void (*nm_file_fn)(struct nm_loop *loop, int fd, unsigned int events,
			   void *data);
/* Returns the delay in ms until it runs again, or NM_TIMER_STOP. */
typedef int64_t (*nm_timer_fn)(struct nm_loop *loop, uint64_t id, void *data);
typedef void (*nm_hook_fn)(struct nm_loop *loop, void *data);

int nm_loop_create(struct nm_loop **out);
void nm_loop_free(struct nm_loop *loop);

/* Registers fd (mask of NM_EV_READ|NM_EV_WRITE, may be 0); 0 or -errno. */
int nm_loop_add(struct nm_loop *loop, int fd, unsigned int mask, nm_file_fn fn,
		void *data);
/* Changes the mask; a no-op when it is unchanged. 0 or -errno. */
int nm_loop_set_mask(struct nm_loop *loop, int fd, unsigned int mask);
/* Forgets fd; call before close(fd). */
void nm_loop_del(struct nm_loop *loop, int fd);

/* Returns a timer id (> 0) or 0 on allocation failure. */
uint64_t nm_loop_add_timer(struct nm_loop *loop, int64_t delay_ms,
			   nm_timer_fn fn, void *data);
void nm_loop_del_timer(struct nm_loop *loop, uint64_t id);
void nm_loop_set_before_sleep(struct nm_loop *loop, nm_hook_fn fn, void *data);
/*
 * Busy polling in the loop (mesh.busyPoll): before it sleeps, the loop polls
 * epoll with a zero timeout for up to us microseconds, yielding the CPU
 * between polls so that other runnable tasks on the core still run. Data
 * that arrives meanwhile is found without a wakeup, which on a sleeping core
 * costs an interrupt (an exit, in a VM) and a trip through the scheduler.
 * It costs CPU: the core stays busy while traffic flows. 0 (the default)
 * turns it off.
 */
void nm_loop_set_spin(struct nm_loop *loop, uint32_t us);

/* Runs until nm_loop_stop(); returns 0 or -errno from epoll_wait. */
int nm_loop_run(struct nm_loop *loop);
void nm_loop_stop(struct nm_loop *loop);
/* Monotonic clock in ms, as timers use it. */
int64_t nm_loop_now_ms(void);

#endif
