/* The 4 x 8 word transpose of one block of 8 stored q4 rows (AVX2), shared by the int8 kernels that read q4
 * rows: ops_int8_panel.c stores its result as a panel, ops_int8_rows.c uses it in registers. */
#ifndef VLM_CORE_OPS_Q4_WORDS_H
#define VLM_CORE_OPS_Q4_WORDS_H

#include <immintrin.h>

/* Declares w0..w3: word i (stored bytes 4i..4i+3) of the 8 features whose rows are rows[0..7], read at byte
 * o16 of each (one block: 16 bytes), features 0-3 in the low lane and 4-7 in the high one. A word's low
 * nibbles are inputs 4i..4i+3 of the block, its high nibbles inputs 16+4i..16+4i+3. For use in a function
 * with the AVX2 target; a macro, as GCC kept arrays of vectors in memory. */
#define VLM_Q4_BLOCK_WORDS(rows, o16, w0, w1, w2, w3)                                                        \
    const __m256i q4w_a0_ = _mm256_loadu2_m128i((const __m128i *)((rows)[4] + (o16)),                        \
                                                (const __m128i *)((rows)[0] + (o16))),                       \
                  q4w_a1_ = _mm256_loadu2_m128i((const __m128i *)((rows)[5] + (o16)),                        \
                                                (const __m128i *)((rows)[1] + (o16))),                       \
                  q4w_a2_ = _mm256_loadu2_m128i((const __m128i *)((rows)[6] + (o16)),                        \
                                                (const __m128i *)((rows)[2] + (o16))),                       \
                  q4w_a3_ = _mm256_loadu2_m128i((const __m128i *)((rows)[7] + (o16)),                        \
                                                (const __m128i *)((rows)[3] + (o16)));                       \
    const __m256i q4w_t0_ = _mm256_unpacklo_epi32(q4w_a0_, q4w_a1_), q4w_t1_ = _mm256_unpackhi_epi32(q4w_a0_, q4w_a1_); \
    const __m256i q4w_t2_ = _mm256_unpacklo_epi32(q4w_a2_, q4w_a3_), q4w_t3_ = _mm256_unpackhi_epi32(q4w_a2_, q4w_a3_); \
    const __m256i w0 = _mm256_unpacklo_epi64(q4w_t0_, q4w_t2_), w1 = _mm256_unpackhi_epi64(q4w_t0_, q4w_t2_);          \
    const __m256i w2 = _mm256_unpacklo_epi64(q4w_t1_, q4w_t3_), w3 = _mm256_unpackhi_epi64(q4w_t1_, q4w_t3_)

#endif
