/* libuv's thread pool, held: every thread of it runs a job that waits for
 * held_pool_release, so the store's operations queued meanwhile (the pool
 * takes jobs in order) wait too, and a test sees what clients see while an
 * operation is out. For the unit tests that need it (test_tee, test_uploads_sweep). */
#ifndef WHARF_TEST_POOL_HOLD_H
#define WHARF_TEST_POOL_HOLD_H

#include <stdlib.h>
#include <uv.h>

#include "check.h"
#include "wharf/base/common.h"

static struct {
	uv_sem_t sem;
	uv_work_t *jobs;
	int n, done; /* jobs, and those that ended (on the loop) */
} held_pool;

/* Its size as libuv reads it when it starts the pool. */
static inline int held_pool_size(void)
{
	const char *v = getenv("UV_THREADPOOL_SIZE");
	long n = v ? strtol(v, NULL, 10) : 4;
	return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

static inline void held_pool_job(uv_work_t *w)
{
	(void)w;
	uv_sem_wait(&held_pool.sem);
}

static inline void held_pool_job_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	held_pool.done++;
}

/* Every thread of the pool waits, once the jobs queued before are done. */
static inline void held_pool_hold(uv_loop_t *loop)
{
	held_pool.n = held_pool_size();
	held_pool.done = 0;
	held_pool.jobs = wh_calloc((size_t)held_pool.n, sizeof(*held_pool.jobs));
	CHECK(uv_sem_init(&held_pool.sem, 0) == 0);
	for (int i = 0; i < held_pool.n; i++)
		CHECK(uv_queue_work(loop, &held_pool.jobs[i], held_pool_job, held_pool_job_done) ==
		      0);
}

/* Let the threads go (their jobs end on the loop: held_pool.done). */
static inline void held_pool_release(void)
{
	for (int i = 0; i < held_pool.n; i++)
		uv_sem_post(&held_pool.sem);
}

/* Once every job ended. */
static inline void held_pool_free(void)
{
	uv_sem_destroy(&held_pool.sem);
	free(held_pool.jobs);
	held_pool.jobs = NULL;
}

#endif
