// DeepSeek-VL2 preprocessing (vision/tiling, vision/resample, vision/preprocess)
// against the official processor's output (golden pixel_u8) and Pillow 9.4.0.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

extern "C" {
#include "core/error.h"
#include "core/safetensors.h"
#include "media/image.h"
#include "vision/preprocess.h"
#include "vision/resample.h"
#include "vision/tiling.h"
}

namespace {

const std::string kData = VLM_TEST_DATA;

std::vector<uint8_t> ReadFile(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f.good()) << "cannot open " << path;
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

size_t CountDiff(const uint8_t *a, const uint8_t *b, size_t n, int *max_abs)
{
    size_t d = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            d++;
            int m = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
            if (m > *max_abs) *max_abs = m;
        }
    return d;
}

vlm_resolution Best(int w, int h)
{
    const vlm_resolution *c;
    int n = vlm_tiling_default_candidates(&c);
    vlm_resolution r = {0, 0};
    EXPECT_EQ(vlm_tiling_select_best(w, h, c, n, &r), VLM_OK);
    return r;
}

// --- golden end-to-end ------------------------------------------------------

struct GoldenCase {
    const char *dir;
    std::vector<const char *> images; // prompt order
};

class PreprocessGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(PreprocessGolden, PixelU8AndSpatialCropExact)
{
    const GoldenCase &gc = GetParam();
    std::string dir = kData + "/golden/inputs/" + gc.dir;
    vlm_st_file *st = nullptr;
    ASSERT_EQ(vlm_st_open((dir + "/preprocess.safetensors").c_str(), &st), VLM_OK) << vlm_last_error();
    const vlm_tensor_view *px = vlm_st_find(st, "pixel_u8");
    const vlm_tensor_view *crop = vlm_st_find(st, "images_spatial_crop");
    ASSERT_NE(px, nullptr);
    ASSERT_NE(crop, nullptr);
    ASSERT_EQ(px->dtype, VLM_DT_U8);
    ASSERT_EQ(crop->dtype, VLM_DT_I64);
    ASSERT_EQ(px->ndim, 4);
    ASSERT_EQ(px->shape[1], 3);
    ASSERT_EQ(px->shape[2], 384);
    ASSERT_EQ(px->shape[3], 384);
    ASSERT_EQ(crop->shape[0], int64_t(gc.images.size()));

    vlm_preprocess_config cfg;
    vlm_preprocess_config_default(&cfg);
    const int cropping = vlm_tiling_cropping(int(gc.images.size()));
    const size_t tile_bytes = size_t(3) * 384 * 384;
    // safetensors data need not be 8-byte aligned: copy out.
    std::vector<int64_t> crops(size_t(crop->nbytes / 8));
    std::memcpy(crops.data(), crop->data, crops.size() * 8);
    ASSERT_EQ(crops.size(), 2 * gc.images.size());
    std::vector<uint8_t> all;
    for (size_t k = 0; k < gc.images.size(); k++) {
        SCOPED_TRACE(gc.images[k]);
        vlm_image img;
        ASSERT_EQ(vlm_image_decode_file((dir + "/" + gc.images[k]).c_str(), nullptr, &img), VLM_OK)
            << vlm_last_error();
        vlm_image_tiles t;
        ASSERT_EQ(vlm_preprocess_image(&cfg, &img, cropping, &t), VLM_OK) << vlm_last_error();
        EXPECT_EQ(t.nw, crops[2 * k]);
        EXPECT_EQ(t.nh, crops[2 * k + 1]);
        EXPECT_EQ(t.n_tiles, 1 + t.nw * t.nh);
        all.insert(all.end(), t.tiles, t.tiles + tile_bytes * t.n_tiles);
        vlm_image_tiles_free(&t);
        vlm_image_free(&img);
    }
    ASSERT_EQ(int64_t(all.size()), int64_t(px->nbytes));
    int max_abs;
    size_t d = CountDiff(all.data(), (const uint8_t *)px->data, all.size(), &max_abs);
    EXPECT_EQ(d, 0u) << "differing bytes in pixel_u8, max |diff| " << max_abs;
    vlm_st_close(st);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, PreprocessGolden,
    ::testing::Values(GoldenCase{"case1_640x480_png", {"image.png"}},
                      GoldenCase{"case2_1000x300_png", {"image.png"}},
                      GoldenCase{"case3_200x150_jpg", {"image.jpg"}},
                      GoldenCase{"case4_two_images", {"image_1.png", "image_2.jpg"}},
                      GoldenCase{"case5_three_images", {"image_1.png", "image_2.png", "image_3.jpg"}}),
    [](const ::testing::TestParamInfo<GoldenCase> &i) { return std::string(i.param.dir); });

TEST(Preprocess, NormalizeIsBitExactWithGoldenPixelValues)
{
    vlm_st_file *st = nullptr;
    ASSERT_EQ(vlm_st_open((kData + "/golden/inputs/case3_200x150_jpg/preprocess.safetensors").c_str(), &st),
              VLM_OK);
    const vlm_tensor_view *u8 = vlm_st_find(st, "pixel_u8");
    const vlm_tensor_view *f32 = vlm_st_find(st, "pixel_values");
    ASSERT_NE(u8, nullptr);
    ASSERT_NE(f32, nullptr);
    ASSERT_EQ(f32->dtype, VLM_DT_F32);
    ASSERT_EQ(f32->nbytes, u8->nbytes * 4);
    vlm_preprocess_config cfg;
    vlm_preprocess_config_default(&cfg);
    std::vector<float> out(u8->nbytes);
    vlm_tiles_normalize(&cfg, (const uint8_t *)u8->data, size_t(u8->shape[0]), out.data());
    EXPECT_EQ(std::memcmp(out.data(), f32->data, f32->nbytes), 0);
    // The pad grey 127 -> -1/255 and the extremes.
    uint8_t probe[3 * 384 * 384] = {};
    probe[0] = 127;
    probe[1] = 255;
    probe[384 * 384] = 0;
    std::vector<float> p(3 * 384 * 384);
    vlm_tiles_normalize(&cfg, probe, 1, p.data());
    EXPECT_EQ(p[0], (127.0f / 255.0f - 0.5f) / 0.5f);
    EXPECT_NEAR(p[0], -1.0 / 255.0, 1e-7);
    EXPECT_EQ(p[1], 1.0f);
    EXPECT_EQ(p[384 * 384], -1.0f);
    vlm_st_close(st);
}

// --- configuration ----------------------------------------------------------

TEST(Preprocess, DefaultsEqualGoldenProcessorConfig)
{
    vlm_preprocess_config cfg;
    vlm_preprocess_config_default(&cfg);
    EXPECT_EQ(cfg.tile_size, 384);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(cfg.pad_color[i], 127);
        EXPECT_EQ(cfg.mean[i], 0.5f);
        EXPECT_EQ(cfg.std[i], 0.5f);
    }
    for (const char *model : {"tiny-mha", "tiny-mla"}) {
        SCOPED_TRACE(model);
        std::vector<uint8_t> js = ReadFile(kData + "/golden/" + model + "/processor_config.json");
        js.push_back(0);
        cJSON *root = cJSON_Parse((const char *)js.data());
        ASSERT_NE(root, nullptr);
        cJSON *cands = cJSON_GetObjectItem(root, "candidate_resolutions");
        ASSERT_TRUE(cJSON_IsArray(cands));
        ASSERT_EQ(cJSON_GetArraySize(cands), cfg.n_candidates);
        for (int i = 0; i < cfg.n_candidates; i++) {
            cJSON *c = cJSON_GetArrayItem(cands, i);
            // (width, height) pairs, as select_best_resolution reads them, same order.
            EXPECT_EQ(cJSON_GetArrayItem(c, 0)->valueint, cfg.candidates[i].width) << i;
            EXPECT_EQ(cJSON_GetArrayItem(c, 1)->valueint, cfg.candidates[i].height) << i;
        }
        EXPECT_EQ(cJSON_GetObjectItem(root, "patch_size")->valueint, 14);
        EXPECT_EQ(cJSON_GetObjectItem(root, "downsample_ratio")->valueint, 2);
        for (const char *key : {"image_mean", "image_std"}) {
            cJSON *a = cJSON_GetObjectItem(root, key);
            ASSERT_EQ(cJSON_GetArraySize(a), 3);
            for (int i = 0; i < 3; i++)
                EXPECT_EQ(float(cJSON_GetArrayItem(a, i)->valuedouble),
                          std::string(key) == "image_mean" ? cfg.mean[i] : cfg.std[i]);
        }
        cJSON_Delete(root);
    }
    // Tile size = candidate_resolutions[0][0] (the official processor's rule).
    EXPECT_EQ(cfg.candidates[0].width, cfg.tile_size);
}

// --- tiling -------------------------------------------------------------------

// Expected values from a transcription of the official select_best_resolution
// (processing_deepseek_vl_v2.py) run in Python 3.11 on the default list; the
// worked examples are also in spec §2.4.  Edge cases: for 1x1 every candidate has
// eff = min(int(s)^2, 1) = 1, so the smallest waste wins (384x384); for 1x10000
// and 10000x1, int(1 * s) = 0 for every candidate (s <= 0.3456), so eff = 0
// everywhere and the first candidate (smallest waste) wins.
TEST(Tiling, SelectBestResolution)
{
    struct {
        int w, h, W, H;
    } cases[] = {
        {640, 480, 768, 768},    {1024, 768, 1152, 768},  {800, 600, 1152, 768},
        {1920, 1080, 1536, 768}, {1, 1, 384, 384},        {1, 10000, 384, 384},
        {10000, 1, 384, 384},    {200, 150, 384, 384},    {1000, 300, 1152, 384},
        {500, 375, 768, 384},    {256, 640, 384, 768},    {384, 3456, 384, 3456},
        {3456, 384, 3456, 384},  {1152, 1152, 1152, 1152}, {7000, 5000, 1152, 1152},
        {100000, 3, 384, 384},   {3, 2, 384, 384},
    };
    for (const auto &c : cases) {
        vlm_resolution r = Best(c.w, c.h);
        EXPECT_EQ(r.width, c.W) << c.w << "x" << c.h;
        EXPECT_EQ(r.height, c.H) << c.w << "x" << c.h;
    }
    vlm_resolution r;
    const vlm_resolution *cands;
    int n = vlm_tiling_default_candidates(&cands);
    EXPECT_EQ(n, 23);
    EXPECT_EQ(vlm_tiling_select_best(0, 5, cands, n, &r), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_tiling_select_best(5, 5, cands, 0, &r), VLM_ERR_INVALID);
    // Ties: equal eff and equal waste keep the first; equal eff prefers less waste.
    vlm_resolution two[2] = {{768, 384}, {768, 384}};
    ASSERT_EQ(vlm_tiling_select_best(100, 100, two, 2, &r), VLM_OK);
    EXPECT_EQ(r.width, 768);
    // 640x480: 768x768 and 1152x768 both have eff 307200; 768x768 wastes less.
    vlm_resolution pair[2] = {{1152, 768}, {768, 768}};
    ASSERT_EQ(vlm_tiling_select_best(640, 480, pair, 2, &r), VLM_OK);
    EXPECT_EQ(r.width, 768);
    EXPECT_EQ(r.height, 768);
}

TEST(Tiling, CroppingRuleAndTarget)
{
    EXPECT_TRUE(vlm_tiling_cropping(1));
    EXPECT_TRUE(vlm_tiling_cropping(2));
    EXPECT_FALSE(vlm_tiling_cropping(3));
    const vlm_resolution *c;
    int n = vlm_tiling_default_candidates(&c);
    vlm_resolution r;
    ASSERT_EQ(vlm_tiling_target(1920, 1080, 1, 384, c, n, &r), VLM_OK);
    EXPECT_EQ(r.width, 1536);
    EXPECT_EQ(r.height, 768);
    ASSERT_EQ(vlm_tiling_target(1920, 1080, 0, 384, c, n, &r), VLM_OK);
    EXPECT_EQ(r.width, 384);
    EXPECT_EQ(r.height, 384);
}

TEST(Tiling, TokenCounts)
{
    const int h = vlm_tiling_tokens_per_side(384, 14, 2);
    EXPECT_EQ(h, 14); // ceil((384 // 14) / 2) = ceil(13.5)
    EXPECT_EQ(vlm_tiling_tokens_per_side(448, 14, 2), 16);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 1, 1), 421);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 2, 2), 1023);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 3, 2), 1415);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 4, 2), 1807);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 1, 9), 2101);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 3, 3), 2017);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 9, 1), 1989);
    // Golden: case2 3x1 = 813, case4 2x1 = 617 and 1x2 = 631.
    EXPECT_EQ(vlm_tiling_image_tokens(h, 3, 1), 813);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 2, 1), 617);
    EXPECT_EQ(vlm_tiling_image_tokens(h, 1, 2), 631);
    // The worked examples end to end: best resolution -> tiles -> tokens.
    struct {
        int w, h;
        int64_t tokens;
    } ex[] = {{640, 480, 1023}, {1024, 768, 1415}, {800, 600, 1415}, {1920, 1080, 1807}, {384, 384, 421}};
    for (const auto &e : ex) {
        vlm_resolution r = Best(e.w, e.h);
        EXPECT_EQ(vlm_tiling_image_tokens(h, r.width / 384, r.height / 384), e.tokens) << e.w << "x" << e.h;
    }
}

// --- resampler and pad against Pillow 9.4.0 -----------------------------------

// Same formula as tests/data/resample/make_resample_refs.py.
std::vector<uint8_t> SourceImage(int w, int h)
{
    std::vector<uint8_t> v(size_t(w) * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = &v[(size_t(y) * w + x) * 3];
            p[0] = ((x / 3 + y / 2) % 2) ? 250 : 5;
            p[1] = uint8_t((x * 255) / (w - 1));
            p[2] = uint8_t((x * 131 + y * 71 + x * y * 17) % 256);
        }
    return v;
}

TEST(Resample, BicubicMatchesPil)
{
    struct {
        int sw, sh, dw, dh;
    } cases[] = {
        {37, 23, 17, 11}, {37, 23, 5, 3},  {37, 23, 1, 1},   {37, 23, 2, 40}, {37, 23, 80, 23},
        {37, 23, 37, 50}, {37, 23, 61, 47}, {37, 23, 100, 9}, {37, 23, 36, 22}, {37, 23, 38, 24},
        {9, 7, 64, 50},   {9, 7, 3, 31},   {9, 7, 9, 1},
    };
    for (const auto &c : cases) {
        std::string name = "src" + std::to_string(c.sw) + "x" + std::to_string(c.sh) + "_to_" +
                           std::to_string(c.dw) + "x" + std::to_string(c.dh) + ".rgb";
        SCOPED_TRACE(name);
        std::vector<uint8_t> want = ReadFile(kData + "/resample/" + name);
        ASSERT_EQ(want.size(), size_t(c.dw) * c.dh * 3);
        std::vector<uint8_t> src = SourceImage(c.sw, c.sh), out(want.size());
        ASSERT_EQ(vlm_resample_bicubic_rgb8(src.data(), c.sw, c.sh, out.data(), c.dw, c.dh), VLM_OK);
        int max_abs;
        EXPECT_EQ(CountDiff(out.data(), want.data(), want.size(), &max_abs), 0u) << "max |diff| " << max_abs;
    }
    // Same size: a copy.
    std::vector<uint8_t> src = SourceImage(37, 23), out(src.size());
    ASSERT_EQ(vlm_resample_bicubic_rgb8(src.data(), 37, 23, out.data(), 37, 23), VLM_OK);
    EXPECT_EQ(out, src);
    EXPECT_EQ(vlm_resample_bicubic_rgb8(src.data(), 37, 23, out.data(), 0, 5), VLM_ERR_INVALID);
}

TEST(Resample, PadMatchesPilImageOpsPad)
{
    struct {
        int tw, th;
    } cases[] = {{13, 13}, {31, 10}, {29, 10}, {10, 30}, {74, 46}, {37, 23}, {16, 16}};
    std::vector<uint8_t> src = SourceImage(37, 23);
    vlm_image img = {37, 23, src.data()};
    const uint8_t grey[3] = {127, 127, 127};
    for (const auto &c : cases) {
        std::string name = "pad_src37x23_to_" + std::to_string(c.tw) + "x" + std::to_string(c.th) + ".rgb";
        SCOPED_TRACE(name);
        std::vector<uint8_t> want = ReadFile(kData + "/resample/" + name);
        ASSERT_EQ(want.size(), size_t(c.tw) * c.th * 3);
        std::vector<uint8_t> out(want.size());
        ASSERT_EQ(vlm_preprocess_pad(&img, c.tw, c.th, grey, out.data()), VLM_OK);
        int max_abs;
        EXPECT_EQ(CountDiff(out.data(), want.data(), want.size(), &max_abs), 0u) << "max |diff| " << max_abs;
    }
    // Offsets with Python's half-to-even rounding, independent of the files:
    // 37x23 into 31x10 -> 16x10 at x = round(7.5) = 8; into 29x10 -> 16x10 at round(6.5) = 6.
    std::vector<uint8_t> out(31 * 10 * 3);
    ASSERT_EQ(vlm_preprocess_pad(&img, 31, 10, grey, out.data()), VLM_OK);
    EXPECT_EQ(out[(0 * 31 + 7) * 3], 127);
    EXPECT_EQ(out[(0 * 31 + 24) * 3], 127);
    EXPECT_NE(out[(0 * 31 + 8) * 3 + 1], 127); // green ramp starts at 0 on the left edge
    out.assign(29 * 10 * 3, 0);
    ASSERT_EQ(vlm_preprocess_pad(&img, 29, 10, grey, out.data()), VLM_OK);
    EXPECT_EQ(out[(0 * 29 + 5) * 3], 127);
    EXPECT_EQ(out[(0 * 29 + 22) * 3], 127);
    EXPECT_NE(out[(0 * 29 + 6) * 3 + 1], 127);
}

TEST(Preprocess, GlobalViewLayoutCase1)
{
    // 640x480 -> global 384x288 at y = 48: rows 0..47 and 336..383 are pad grey.
    vlm_image img;
    ASSERT_EQ(vlm_image_decode_file((kData + "/golden/inputs/case1_640x480_png/image.png").c_str(), nullptr,
                                    &img),
              VLM_OK);
    vlm_preprocess_config cfg;
    vlm_preprocess_config_default(&cfg);
    vlm_image_tiles t;
    ASSERT_EQ(vlm_preprocess_image(&cfg, &img, 1, &t), VLM_OK);
    EXPECT_EQ(t.n_tiles, 5);
    EXPECT_EQ(t.nw, 2);
    EXPECT_EQ(t.nh, 2);
    const size_t plane = 384 * 384;
    for (int ch = 0; ch < 3; ch++)
        for (int y : {0, 47, 336, 383})
            for (int x : {0, 100, 383}) EXPECT_EQ(t.tiles[ch * plane + y * 384 + x], 127) << ch << " " << y;
    vlm_image_tiles_free(&t);
    // Without cropping: 2 tiles, the local one identical to the global one.
    ASSERT_EQ(vlm_preprocess_image(&cfg, &img, 0, &t), VLM_OK);
    EXPECT_EQ(t.n_tiles, 2);
    EXPECT_EQ(t.nw, 1);
    EXPECT_EQ(t.nh, 1);
    EXPECT_EQ(std::memcmp(t.tiles, t.tiles + 3 * plane, 3 * plane), 0);
    vlm_image_tiles_free(&t);
    vlm_image_free(&img);
}

TEST(Preprocess, ExtremeAspectRatiosDoNotFail)
{
    // 10000x1: PIL's contain would ask for a 384x0 resize (ValueError); we use 1 row.
    std::vector<uint8_t> px(10000 * 3, 200);
    vlm_image img = {10000, 1, px.data()};
    vlm_preprocess_config cfg;
    vlm_preprocess_config_default(&cfg);
    vlm_image_tiles t;
    ASSERT_EQ(vlm_preprocess_image(&cfg, &img, 1, &t), VLM_OK) << vlm_last_error();
    EXPECT_EQ(t.n_tiles, 2);
    // One image row at y = round((384 - 1) * 0.5) = round(191.5) = 192, grey elsewhere.
    EXPECT_EQ(t.tiles[192 * 384 + 10], 200);
    EXPECT_EQ(t.tiles[191 * 384 + 10], 127);
    EXPECT_EQ(t.tiles[193 * 384 + 10], 127);
    vlm_image_tiles_free(&t);
    img = {1, 10000, px.data()};
    ASSERT_EQ(vlm_preprocess_image(&cfg, &img, 1, &t), VLM_OK);
    EXPECT_EQ(t.tiles[10 * 384 + 192], 200);
    EXPECT_EQ(t.tiles[10 * 384 + 191], 127);
    vlm_image_tiles_free(&t);
    img = {1, 1, px.data()};
    ASSERT_EQ(vlm_preprocess_image(&cfg, &img, 1, &t), VLM_OK);
    EXPECT_EQ(t.tiles[0], 200); // 1x1 -> 384x384 of the same colour
    EXPECT_EQ(t.tiles[384 * 384 - 1], 200);
    vlm_image_tiles_free(&t);
}

} // namespace
