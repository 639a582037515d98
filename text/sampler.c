/* Logits processing and sampling (order and semantics in sampler.h). */
#include "text/sampler.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float v;
    int32_t i;
} cand;

struct vlm_sampler {
    vlm_sampler_params p;
    int vocab;
    uint64_t st[4];
    int64_t calls; /* vlm_sampler_sample/pick calls so far: the step a refusal names */
    uint8_t *seen;
    cand *c;
    double *p_buf; /* [vocab]: the candidates' probabilities */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

/* uniform in [0, 1) with 53 random bits */
static double next_unit(vlm_sampler *s) { return (double)(xoshiro_next(s->st) >> 11) * 0x1.0p-53; }

int vlm_sampler_create(const vlm_sampler_params *p, int vocab, vlm_sampler **out)
{
    *out = NULL;
    if (!p || vocab <= 0) return vlm_errorf(VLM_ERR_INVALID, "sampler: needs parameters and a positive vocabulary size");
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return vlm_errorf(VLM_ERR_INVALID, "sampler: temperature %g must be a finite value >= 0", (double)p->temperature);
    if (p->top_k < 0) return vlm_errorf(VLM_ERR_INVALID, "sampler: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return vlm_errorf(VLM_ERR_INVALID, "sampler: top_p %g must be in [0, 1]", (double)p->top_p);
    if (!(p->repetition_penalty >= 0) || isinf(p->repetition_penalty))
        return vlm_errorf(VLM_ERR_INVALID, "sampler: repetition_penalty %g must be a finite value > 0",
                          (double)p->repetition_penalty);
    vlm_sampler *s = calloc(1, sizeof *s);
    if (!s) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    s->seen = calloc((size_t)vocab, 1);
    s->c = malloc((size_t)vocab * sizeof *s->c);
    s->p_buf = malloc((size_t)vocab * sizeof *s->p_buf);
    if (!s->seen || !s->c || !s->p_buf) {
        vlm_sampler_free(s);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    }
    s->p = *p;
    s->vocab = vocab;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->st[i] = splitmix64(&x);
    *out = s;
    return VLM_OK;
}

void vlm_sampler_free(vlm_sampler *s)
{
    if (!s) return;
    free(s->seen);
    free(s->c);
    free(s->p_buf);
    free(s);
}

static void repetition_penalty(vlm_sampler *s, float *logits, const int32_t *hist, int64_t n)
{
    const float pen = s->p.repetition_penalty;
    if (pen == 0.0f || pen == 1.0f || !hist) return;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = hist[i];
        if (id < 0 || id >= s->vocab || s->seen[id]) continue;
        s->seen[id] = 1;
        logits[id] = logits[id] < 0 ? logits[id] * pen : logits[id] / pen;
    }
    for (int64_t i = 0; i < n; i++)
        if (hist[i] >= 0 && hist[i] < s->vocab) s->seen[hist[i]] = 0;
}

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* Rearranges c[0, n) so that c[0, m) holds the first m candidates of the cmp_cand order (in no
 * particular order among themselves): quickselect. cmp_cand is a strict total order (ids differ). */
static void select_first(cand *c, int n, int m)
{
    int lo = 0, hi = n - 1;
    const int k = m - 1;
    while (lo < hi) {
        const cand pivot = c[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand(&c[i], &pivot) < 0) i++;
            while (cmp_cand(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                const cand t = c[i];
                c[i++] = c[j], c[j--] = t;
            }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else break;
    }
}

/* exp(v - vmax), or with vmax = +inf: 1 for the infinite logits, 0 for the others */
static double prob_rel(float v, float vmax) { return isinf(vmax) ? (double)(v == vmax) : exp((double)v - (double)vmax); }

int32_t vlm_sampler_sample(vlm_sampler *s, float *logits, const int32_t *history, int64_t n_history)
{
    if (!s || !logits) return vlm_errorf(VLM_ERR_INVALID, "sampler: no logits");
    int64_t n_nan = 0, n_inf = 0;
    for (int i = 0; i < s->vocab; i++) {
        n_nan += isnan(logits[i]) != 0;
        n_inf += isinf(logits[i]) != 0;
    }
    if (n_nan || n_inf) {
        s->calls++;
        return vlm_errorf(VLM_ERR_FORMAT,
                          "the model produced %s logits at step %lld (%lld of %d): the checkpoint may be damaged",
                          n_nan && n_inf ? "NaN and infinite" : n_nan ? "NaN" : "infinite", (long long)s->calls,
                          (long long)(n_nan + n_inf), s->vocab);
    }
    return vlm_sampler_pick(s, logits, history, n_history);
}

int32_t vlm_sampler_pick(vlm_sampler *s, float *logits, const int32_t *history, int64_t n_history)
{
    if (!s || !logits) return vlm_errorf(VLM_ERR_INVALID, "sampler: no logits");
    s->calls++;
    const int V = s->vocab;
    repetition_penalty(s, logits, history, n_history);

    if (s->p.temperature == 0.0f) {
        int32_t best = -1;
        for (int i = 0; i < V; i++)
            if (!isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
        if (best < 0) return vlm_errorf(VLM_ERR_INVALID, "sampler: every logit is NaN");
        return best;
    }

    int n = 0;
    float vmax = -INFINITY;
    for (int i = 0; i < V; i++) {
        float v = logits[i] / s->p.temperature;
        logits[i] = v;
        if (!isnan(v) && v != -INFINITY) {
            s->c[n++] = (cand){v, i};
            if (v > vmax) vmax = v;
        }
    }
    if (n == 0) return vlm_errorf(VLM_ERR_INVALID, "sampler: no token has a finite logit");
    /* The candidates are put in order (largest logit first, lowest id on ties) only as far as top-k and
     * top-p need: a full sort of a 129k vocabulary cost ~12 ms a token, about a whole decode step. */
    int sorted = 0; /* c[0, sorted) is in order and holds the first `sorted` candidates of that order */
    if (s->p.top_k > 0 && s->p.top_k < n) {
        select_first(s->c, n, s->p.top_k);
        float kth = s->c[0].v;
        for (int j = 1; j < s->p.top_k; j++) kth = s->c[j].v < kth ? s->c[j].v : kth;
        int keep = s->p.top_k;
        for (int j = keep; j < n; j++) /* ties with the k-th stay */
            if (s->c[j].v >= kth) {
                const cand t = s->c[keep];
                s->c[keep++] = s->c[j], s->c[j] = t;
            }
        n = keep;
        qsort(s->c, (size_t)n, sizeof *s->c, cmp_cand);
        sorted = n;
    }
    /* probabilities relative to the best token, normalised by their sum; (finite logits over a tiny
     * temperature may overflow to +inf: those tokens then share all the mass) */
    double *p = s->p_buf, sum = 0;
    for (int j = 0; j < n; j++) sum += p[j] = prob_rel(s->c[j].v, vmax);
    if (s->p.top_p > 0.0f && s->p.top_p < 1.0f) {
        const double lim = (double)s->p.top_p * sum;
        /* the smallest prefix of the order whose mass reaches lim: order a growing prefix until it does */
        for (int m = 64; sorted < n;) {
            if (m > n) m = n;
            select_first(s->c, n, m);
            qsort(s->c, (size_t)m, sizeof *s->c, cmp_cand);
            double mass = 0;
            for (int j = 0; j < m; j++) mass += p[j] = prob_rel(s->c[j].v, vmax);
            sorted = m;
            if (mass >= lim) break;
            m *= 8;
        }
        double before = 0;
        int keep = 0;
        while (keep < n && (keep == 0 || before < lim)) before += p[keep++];
        n = keep;
        sum = before;
    }
    /* the draw walks the candidates in the order they are in (sorted or not, the same distribution) */
    double u = next_unit(s) * sum, acc = 0;
    int32_t pick = s->c[n - 1].i;
    for (int j = 0; j < n; j++) {
        acc += p[j];
        if (u < acc) {
            pick = s->c[j].i;
            break;
        }
    }
    return pick;
}
