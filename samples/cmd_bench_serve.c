/* vlm bench --concurrency 1,4,8,...: the request engine under load, through the public API.
 * For each N: N requests of a 128-token prompt (random ids, so no prefix is shared) submitted
 * together; once all N have their first token (their prompts go in as the engine schedules them),
 * the next 64 tokens of every stream are timed, with all N decoding (as llama-batched-bench's S_TG
 * times generation after the prompts); then N - 1 decoding while one more arrives. Figures:
 *   aggregate_decode_tok_s  tokens made while all N decode together / that time (the median of --reps rounds)
 *   itl_p50_ms, itl_p99_ms  the gaps between a stream's tokens (all streams, all those rounds)
 *   ttft_ms                 submit to first token of a request arriving while N - 1 others decode
 *                           (the median of --reps arrivals, at most 16)
 *   ttft_alone_ms           the same request's TTFT on an idle engine
 *   itl_p99_during_arrival_ms  the running streams' p99 gap while it was prefilled (median of the same) */
#include "vlm.h"

#include "fusion/config.h"
#include "samples/cli.h"

#include <cjson/cJSON.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PROMPT 128
#define NEW 64
#define LONG 1024 /* phase one's requests run on until their 64 timed tokens are in, then are cancelled */
#define MAX_N 256
#define MAX_ROUNDS 16 /* --reps rounds (all N together) and arrivals per figure, at most */

typedef struct {
    double t[LONG + 1];
    atomic_int n;
} stream;

static int on_token(void *user, int32_t id)
{
    (void)id;
    stream *s = user;
    int i = atomic_load(&s->n);
    if (i <= LONG) s->t[i] = vlm_now_ms();
    atomic_store(&s->n, i + 1);
    return 0;
}

static int submit(vlm_engine *e, stream *s, uint64_t seed, int64_t vocab, int max_new, vlm_job **out)
{
    int32_t ids[PROMPT];
    uint64_t x = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < PROMPT; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        /* ordinary tokens: above the first 100 and below the last tenth (where the special ones are) */
        ids[i] = (int32_t)(100 + x % (uint64_t)(vocab * 9 / 10 - 100));
    }
    vlm_request_options o;
    vlm_request_options_default(&o);
    o.gen.max_new_tokens = max_new;
    o.gen.ignore_eos = 1;
    o.gen.user = s;
    o.on_token = on_token;
    o.prompt_ids = ids;
    o.n_prompt_ids = PROMPT;
    atomic_store(&s->n, 0);
    return vlm_engine_submit(e, NULL, 0, &o, out);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    if (!n) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

static void wait_all(vlm_job **jobs, int n)
{
    for (int i = 0; i < n; i++) vlm_job_wait(jobs[i], NULL);
}

/* Polls every 2 ms: the figures come from the token callbacks' own clock readings, and a poll every 0.2 ms
 * woke this thread 5,000 times a second, each wake-up taking a core from the engine for a moment. */
static void wait_tokens(stream *s, int n, int k)
{
    for (int i = 0; i < n; i++)
        while (atomic_load(&s[i].n) < k) nanosleep(&(struct timespec){0, 2000000}, NULL);
}

int vlm_cmd_bench_concurrency(const char *dir, const char *quant, const char *kv, int threads, const char *list, int reps,
                              int json)
{
    if (reps < 1) reps = 1;
    if (reps > MAX_ROUNDS) reps = MAX_ROUNDS;
    int ns[32], nn = 0, max_n = 1;
    for (const char *p = list; *p && nn < 32;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > MAX_N) {
            fprintf(stderr, "vlm bench: --concurrency takes numbers 1..%d separated by commas, not '%s'\n", MAX_N, list);
            return 2;
        }
        ns[nn++] = (int)v;
        if (v > max_n) max_n = (int)v;
        p = *end == ',' ? end + 1 : end;
    }
    vlm_engine_options eo = {.n_threads = threads, .quant = quant, .kv_cache = kv, .max_running = max_n,
                             .max_waiting = max_n + 1, .prefix_cache_mib = -1, .prefill_chunk = 512};
    vlm_engine *e;
    const double t0 = vlm_now_ms();
    if (vlm_engine_open(dir, &eo, &e)) return cli_fail("bench");
    if (!json) fprintf(stderr, "vlm bench: engine open in %.0f ms (%s)\n", vlm_now_ms() - t0, quant ? quant : "default");
    vlm_vl2_config cfg;
    if (vlm_vl2_config_load(dir, &cfg)) {
        vlm_engine_close(e);
        return cli_fail("bench");
    }
    const int64_t vocab = cfg.lm.vocab_size;
    stream *s = calloc((size_t)max_n + 1, sizeof *s);
    vlm_job **jobs = calloc((size_t)max_n + 1, sizeof *jobs);
    double *gaps = malloc((size_t)(max_n + 1) * (LONG + 1) * sizeof *gaps);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "concurrency");
    int rc = 0;
    double ttft_alone = 0;
    if (!json) printf("%4s %14s %10s %10s %10s %12s\n", "n", "aggregate/s", "itl p50", "itl p99", "ttft ms", "itl p99 arr");
    for (int k = 0; k < nn && !rc; k++) {
        const int n = ns[k];
        /* the idle TTFT of one request (the baseline for the arrival figure): the median of 3, after
         * one request that warms the engine up (the first one pays for page faults in the weights) */
        if (!ttft_alone) {
            double alone[4];
            for (int r = 0; r < 4 && !rc; r++) {
                const double a = vlm_now_ms();
                if ((rc = submit(e, &s[0], 999 + (uint64_t)r, vocab, NEW, &jobs[0]))) break;
                wait_tokens(&s[0], 1, 1);
                alone[r] = s[0].t[0] - a;
                vlm_job_free(jobs[0]);
            }
            if (rc) break;
            ttft_alone = pct(alone + 1, 3, 0.5);
        }
        /* n together: once every stream has its first token, their next NEW tokens are timed; the
         * median of --reps rounds (one round's figure drifts by 10-20 % here), the gaps of all rounds */
        double aggs[MAX_ROUNDS];
        int ng = 0;
        for (int r = 0; r < reps && !rc; r++) {
            for (int i = 0; i < n && !rc; i++)
                rc = submit(e, &s[i], (uint64_t)(k * 100000 + i) + (uint64_t)r * 1000003u, vocab, LONG, &jobs[i]);
            if (rc) break;
            wait_tokens(s, n, 1);
            int k0[MAX_N];
            for (int i = 0; i < n; i++) k0[i] = atomic_load(&s[i].n);
            const double t_all = vlm_now_ms();
            for (int i = 0; i < n; i++) wait_tokens(&s[i], 1, k0[i] + NEW);
            for (int i = 0; i < n; i++) vlm_job_free(jobs[i]);
            double t_end = 1e300;
            for (int i = 0; i < n; i++) {
                if (s[i].t[k0[i] + NEW - 1] < t_end) t_end = s[i].t[k0[i] + NEW - 1];
                for (int t = k0[i]; t < k0[i] + NEW; t++) gaps[ng++] = s[i].t[t] - s[i].t[t - 1];
            }
            int64_t in_window = 0;
            for (int i = 0; i < n; i++)
                for (int t = k0[i]; t < k0[i] + NEW; t++) in_window += s[i].t[t] > t_all && s[i].t[t] <= t_end;
            aggs[r] = t_end > t_all ? in_window / ((t_end - t_all) / 1e3) : 0;
        }
        if (rc) break;
        const double agg = pct(aggs, reps, 0.5), p50 = pct(gaps, ng, 0.5), p99 = pct(gaps, ng, 0.99);
        /* n - 1 decoding, one arrives: the medians of reps arrivals (one arrival's TTFT depends on where in
         * a step it lands, and this figure on a shared machine drifts by a third from one run to the next) */
        double ttft = ttft_alone, p99_arr = 0, ttfts[MAX_ROUNDS], p99s[MAX_ROUNDS];
        for (int r = 0; n > 1 && r < reps && !rc; r++) {
            for (int i = 0; i < n - 1 && !rc; i++)
                rc = submit(e, &s[i], (uint64_t)(k * 100000 + 10000 * (r + 1) + i), vocab, NEW, &jobs[i]);
            if (rc) break;
            wait_tokens(s, n - 1, 8);
            const double a = vlm_now_ms();
            if ((rc = submit(e, &s[n - 1], (uint64_t)(k * 100000 + 10000 * (r + 1) + 9999), vocab, NEW, &jobs[n - 1]))) break;
            wait_tokens(&s[n - 1], 1, 1);
            const double first = s[n - 1].t[0];
            ttfts[r] = first - a;
            wait_all(jobs, n);
            int na = 0;
            for (int i = 0; i < n - 1; i++)
                for (int t = 1; t < NEW; t++)
                    if (s[i].t[t] >= a && s[i].t[t - 1] <= first + 1) gaps[na++] = s[i].t[t] - s[i].t[t - 1];
            p99s[r] = pct(gaps, na, 0.99);
            for (int i = 0; i < n; i++) vlm_job_free(jobs[i]);
        }
        if (rc) break;
        if (n > 1) ttft = pct(ttfts, reps, 0.5), p99_arr = pct(p99s, reps, 0.5);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "n", n);
        cJSON_AddNumberToObject(o, "aggregate_decode_tok_s", agg);
        cJSON_AddNumberToObject(o, "itl_p50_ms", p50);
        cJSON_AddNumberToObject(o, "itl_p99_ms", p99);
        cJSON_AddNumberToObject(o, "ttft_ms", ttft);
        cJSON_AddNumberToObject(o, "ttft_alone_ms", ttft_alone);
        cJSON_AddNumberToObject(o, "itl_p99_during_arrival_ms", p99_arr);
        cJSON_AddItemToArray(arr, o);
        if (!json) {
            printf("%4d %14.1f %10.1f %10.1f %10.0f %12.1f\n", n, agg, p50, p99, ttft, p99_arr);
            fflush(stdout);
        }
    }
    if (!rc && !json) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("peak RSS %.0f MB\n", ru.ru_maxrss / 1024.0);
    }
    if (rc) cli_fail("bench");
    else if (json) {
        cJSON_AddNumberToObject(root, "prompt_tokens", PROMPT);
        cJSON_AddNumberToObject(root, "new_tokens", NEW);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        cJSON_AddNumberToObject(root, "peak_rss_mb", ru.ru_maxrss / 1024.0);
        char *out = cJSON_PrintUnformatted(root);
        if (out) puts(out);
        free(out);
    }
    cJSON_Delete(root);
    free(s);
    free(jobs);
    free(gaps);
    vlm_engine_close(e);
    return rc ? 1 : 0;
}
