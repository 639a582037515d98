#include "core/clock.h"

#include <time.h>

double vlm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int vlm_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *mutex, double ms)
{
    /* the condition variables are created with the default (real-time) clock, so the deadline is
     * on that clock */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    const long long ns = ts.tv_nsec + (long long)(ms > 0 ? ms * 1e6 : 0);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return pthread_cond_timedwait(cond, mutex, &ts);
}
