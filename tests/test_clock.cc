// core/clock.h: the monotonic clock the engine, server and captioner time with, and the bounded
// condition-variable wait they poll with (a wait that never returned, or returned at once, would
// hang a drain or spin a core).
#include <gtest/gtest.h>

#include <cerrno>
#include <pthread.h>

extern "C" {
#include "core/clock.h"
}

TEST(Clock, NowIsMonotonicMilliseconds)
{
    const double a = vlm_now_ms();
    struct timespec pause = {0, 20 * 1000000L};
    nanosleep(&pause, nullptr);
    const double b = vlm_now_ms();
    EXPECT_GE(b - a, 20.0);
    EXPECT_LT(b - a, 5000.0);
}

TEST(Clock, WaitWithoutSignalTimesOutAfterItsTime)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    const double t0 = vlm_now_ms();
    int rc;
    do rc = vlm_cond_wait_ms(&c, &m, 50); /* spurious wake-ups may return 0 early */
    while (rc == 0 && vlm_now_ms() - t0 < 50);
    const double waited = vlm_now_ms() - t0;
    pthread_mutex_unlock(&m);
    EXPECT_EQ(rc, ETIMEDOUT);
    EXPECT_GE(waited, 49.0); /* the real-time deadline rounds to its clock, not to our ms */
    EXPECT_LT(waited, 5000.0);
}

TEST(Clock, WaitReturnsWhenSignalled)
{
    struct shared {
        pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t c = PTHREAD_COND_INITIALIZER;
        int flag = 0;
    } s;
    pthread_t t;
    pthread_mutex_lock(&s.m);
    ASSERT_EQ(pthread_create(
                  &t, nullptr,
                  [](void *p) -> void * {
                      auto *sp = static_cast<shared *>(p);
                      pthread_mutex_lock(&sp->m);
                      sp->flag = 1;
                      pthread_cond_signal(&sp->c);
                      pthread_mutex_unlock(&sp->m);
                      return nullptr;
                  },
                  &s),
              0);
    const double t0 = vlm_now_ms();
    while (!s.flag && vlm_now_ms() - t0 < 60000) vlm_cond_wait_ms(&s.c, &s.m, 60000);
    const double waited = vlm_now_ms() - t0;
    pthread_mutex_unlock(&s.m);
    pthread_join(t, nullptr);
    EXPECT_EQ(s.flag, 1);
    EXPECT_LT(waited, 30000.0); /* woken by the signal, not by the 60 s limit */
}

TEST(Clock, ZeroOrNegativeWaitReturnsAtOnce)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    pthread_mutex_lock(&m);
    const double t0 = vlm_now_ms();
    const int a = vlm_cond_wait_ms(&c, &m, 0), b = vlm_cond_wait_ms(&c, &m, -5);
    const double waited = vlm_now_ms() - t0;
    pthread_mutex_unlock(&m);
    EXPECT_EQ(a, ETIMEDOUT);
    EXPECT_EQ(b, ETIMEDOUT);
    EXPECT_LT(waited, 5000.0);
}
