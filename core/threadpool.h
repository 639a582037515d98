/* A fixed pool of worker threads for data-parallel loops. Workers are created
 * once; vlm_pool_for splits [0, n) into chunks that the workers and the calling
 * thread take in turn, and returns when all are done. Jobs from different
 * caller threads are serialised. */
#ifndef VLM_CORE_THREADPOOL_H
#define VLM_CORE_THREADPOOL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vlm_pool vlm_pool;
typedef void (*vlm_range_fn)(void *ctx, int64_t begin, int64_t end);

/* n_threads <= 0: one per online CPU. */
int vlm_pool_create(int n_threads, vlm_pool **out);
void vlm_pool_free(vlm_pool *p);
int vlm_pool_threads(const vlm_pool *p);
/* Calls fn(ctx, b, e) over disjoint ranges covering [0, n), each at most `grain` long (grain >= 1). */
void vlm_pool_for(vlm_pool *p, int64_t n, int64_t grain, vlm_range_fn fn, void *ctx);

/* The process-wide pool the CPU ops use (created on first use). */
vlm_pool *vlm_pool_default(void);
/* Sets the size of the default pool; must be called before its first use. 0 = all CPUs. */
void vlm_pool_default_set_threads(int n_threads);

#ifdef __cplusplus
}
#endif
#endif
