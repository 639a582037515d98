/* Time for durations and bounded waits: one monotonic clock for the whole program. */
#ifndef VLM_CORE_CLOCK_H
#define VLM_CORE_CLOCK_H

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Milliseconds on the monotonic clock (for durations and deadlines; not the time of day). */
double vlm_now_ms(void);

/* Waits on cond (mutex held by the caller) until it is signalled or ms milliseconds have passed;
 * returns pthread_cond_timedwait's result (ETIMEDOUT when the time ran out). Callers recheck their
 * condition either way, as with any condition variable. */
int vlm_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, double ms);

#ifdef __cplusplus
}
#endif
#endif
