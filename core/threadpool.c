#include "core/threadpool.h"
#include "core/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct vlm_pool {
    int n_workers; /* threads besides the caller */
    pthread_t *threads;
    pthread_mutex_t job_lock; /* serialises callers */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation;
    atomic_int quit;
    atomic_int active; /* workers still inside the current job */
    /* the current job */
    vlm_range_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int_fast64_t next;
};

/* Workers and the caller poll for a while before sleeping on the condition variables:
 * decode runs hundreds of short jobs per token, and a futex wake-up per job would cost
 * more than many of them. */
#define SPIN_ROUNDS 2000 /* about 70 us of PAUSE on the EPYC this was tuned on */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_chunks(vlm_pool *p)
{
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->n) break;
        int64_t e = b + p->grain < p->n ? b + p->grain : p->n;
        p->fn(p->ctx, b, e);
    }
}

static void *worker_main(void *arg)
{
    vlm_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->generation) == seen && !atomic_load(&p->quit); i++)
            cpu_relax();
        if (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) {
            pthread_mutex_lock(&p->mu);
            while (!atomic_load(&p->quit) && atomic_load(&p->generation) == seen) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load(&p->generation);
        run_chunks(p);
        if (atomic_fetch_sub(&p->active, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

int vlm_pool_create(int n_threads, vlm_pool **out)
{
    *out = NULL;
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    vlm_pool *p = calloc(1, sizeof *p);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory creating thread pool");
    p->n_workers = n_threads - 1;
    pthread_mutex_init(&p->job_lock, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc(p->n_workers > 0 ? (size_t)p->n_workers : 1, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory creating thread pool");
    }
    for (int i = 0; i < p->n_workers; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            p->n_workers = i;
            break;
        }
    }
    *out = p;
    return VLM_OK;
}

void vlm_pool_free(vlm_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->job_lock);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int vlm_pool_threads(const vlm_pool *p) { return p ? p->n_workers + 1 : 1; }

void vlm_pool_for(vlm_pool *p, int64_t n, int64_t grain, vlm_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (!p || p->n_workers == 0 || n <= grain) {
        for (int64_t b = 0; b < n; b += grain) fn(ctx, b, b + grain < n ? b + grain : n);
        return;
    }
    pthread_mutex_lock(&p->job_lock);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    atomic_store(&p->active, p->n_workers);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1); /* publishes the job fields above to spinning workers */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&p->active) > 0; i++) cpu_relax();
    if (atomic_load(&p->active) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->job_lock);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static vlm_pool *g_pool;
static int g_default_threads;

static void make_default(void)
{
    if (vlm_pool_create(g_default_threads, &g_pool) != VLM_OK) g_pool = NULL; /* ops then run single-threaded */
}

vlm_pool *vlm_pool_default(void)
{
    pthread_once(&g_once, make_default);
    return g_pool;
}

void vlm_pool_default_set_threads(int n_threads) { g_default_threads = n_threads; }
