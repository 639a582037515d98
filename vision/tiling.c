#include "vision/tiling.h"

#include "core/error.h"

static const vlm_resolution k_default_candidates[VLM_TILING_DEFAULT_N_CANDIDATES] = {
    {384, 384},   {384, 768},  {768, 384},  {384, 1152}, {1152, 384}, {384, 1536},
    {1536, 384},  {768, 768},  {384, 1920}, {1920, 384}, {384, 2304}, {2304, 384},
    {768, 1152},  {1152, 768}, {384, 2688}, {2688, 384}, {384, 3072}, {3072, 384},
    {768, 1536},  {1536, 768}, {384, 3456}, {3456, 384}, {1152, 1152},
};

int vlm_tiling_default_candidates(const vlm_resolution **out)
{
    *out = k_default_candidates;
    return VLM_TILING_DEFAULT_N_CANDIDATES;
}

int vlm_tiling_select_best(int width, int height, const vlm_resolution *cands, int n_cands,
                           vlm_resolution *best)
{
    if (width <= 0 || height <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "tiling: invalid image size %dx%d", width, height);
    if (!cands || n_cands <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "tiling: no candidate resolutions");
    /* Python: max_effective_resolution = 0, min_wasted_resolution = inf, so the
     * first candidate is always taken (eff >= 0, waste < inf). */
    int64_t best_eff = 0, best_waste = 0;
    int have = 0;
    const int64_t area = (int64_t)width * height;
    for (int i = 0; i < n_cands; i++) {
        const int64_t cw = cands[i].width, ch = cands[i].height;
        /* Same double operations as the Python: W/w, H/h, min, then w*s truncated. */
        double sw = (double)cw / (double)width, sh = (double)ch / (double)height;
        double s = sw < sh ? sw : sh;
        int64_t dw = (int64_t)((double)width * s), dh = (int64_t)((double)height * s);
        int64_t eff = dw * dh < area ? dw * dh : area;
        int64_t waste = cw * ch - eff;
        if (!have || eff > best_eff || (eff == best_eff && waste < best_waste)) {
            have = 1;
            best_eff = eff;
            best_waste = waste;
            best->width = (int)cw;
            best->height = (int)ch;
        }
    }
    return VLM_OK;
}

int vlm_tiling_target(int width, int height, int cropping, int tile_size,
                      const vlm_resolution *cands, int n_cands, vlm_resolution *target)
{
    if (cropping) return vlm_tiling_select_best(width, height, cands, n_cands, target);
    if (width <= 0 || height <= 0)
        return vlm_errorf(VLM_ERR_INVALID, "tiling: invalid image size %dx%d", width, height);
    target->width = target->height = tile_size;
    return VLM_OK;
}

int vlm_tiling_tokens_per_side(int tile_size, int patch_size, int downsample_ratio)
{
    if (tile_size <= 0 || patch_size <= 0 || downsample_ratio <= 0) return 0;
    int patches = tile_size / patch_size; /* Python: image_size // patch_size */
    return (patches + downsample_ratio - 1) / downsample_ratio; /* math.ceil(p / r) */
}

int64_t vlm_tiling_image_tokens(int tokens_per_side, int nw, int nh)
{
    int64_t h = tokens_per_side;
    return h * (h + 1) + 1 + (h * nh) * (h * nw + 1);
}
