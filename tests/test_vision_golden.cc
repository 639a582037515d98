// SigLIP encoder, projector and image-token assembly against the official model's tensors,
// fed with the golden tiles (so preprocessing differences cannot hide here).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "core/checkpoint.h"
#include "fusion/config.h"
#include "fusion/image_tokens.h"
#include "fusion/projector.h"
#include "vision/siglip.h"
}

namespace {

struct VisionCase : ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

TEST_P(VisionCase, EncoderProjectorAndEmbeddingsMatchGolden) {
  const std::string model = std::get<0>(GetParam()), cs = std::get<1>(GetParam());
  vlm_vl2_config cfg;
  ASSERT_EQ(vlm_vl2_config_load(golden::model_dir(model).c_str(), &cfg), VLM_OK) << vlm_last_error();
  vlm_checkpoint *ck;
  ASSERT_EQ(vlm_checkpoint_open(golden::model_dir(model).c_str(), &ck), VLM_OK) << vlm_last_error();
  vlm_siglip *vit;
  vlm_projector *proj;
  ASSERT_EQ(vlm_siglip_load(ck, "vision.", &cfg.vision, &vit), VLM_OK) << vlm_last_error();
  ASSERT_EQ(vlm_projector_load(ck, "projector.", &cfg.projector, &proj), VLM_OK) << vlm_last_error();

  golden::File pre(golden::input_dir(cs) + "/preprocess.safetensors");
  golden::File gold(golden::model_dir(model) + "/" + cs + ".safetensors");
  const vlm_tensor_view *u8 = pre.get("pixel_u8");
  ASSERT_NE(u8, nullptr);
  const int n = (int)u8->shape[0], S = 384, G = 27, side = 14, C = cfg.vision.width, H = cfg.lm.hidden_size;
  std::vector<float> px((size_t)n * 3 * S * S);
  const uint8_t *u = (const uint8_t *)u8->data;
  for (size_t i = 0; i < px.size(); i++) px[i] = ((float)u[i] / 255.0f - 0.5f) / 0.5f;
  if (cs == "case3_200x150_jpg") {  // the full case also stores the normalised tensor
    std::vector<float> ref = pre.f32("pixel_values");
    ASSERT_EQ(ref.size(), px.size());
    EXPECT_EQ(golden::max_abs_diff(px.data(), ref.data(), px.size()), 0.0);
  }

  std::vector<float> vis((size_t)n * G * G * C), pr((size_t)n * side * side * H);
  ASSERT_EQ(vlm_siglip_forward(vit, px.data(), n, vis.data()), VLM_OK);
  std::vector<float> gv = gold.f32("vision_output");
  ASSERT_EQ(gv.size(), vis.size());
  EXPECT_LE(golden::max_abs_diff(vis.data(), gv.data(), vis.size()), 1e-4);

  // the projector on the golden encoder output isolates its own error
  ASSERT_EQ(vlm_projector_forward(proj, gv.data(), n, G, pr.data()), VLM_OK);
  std::vector<float> gp = gold.f32("projector_output");
  ASSERT_EQ(gp.size(), pr.size());
  EXPECT_LE(golden::max_abs_diff(pr.data(), gp.data(), pr.size()), 1e-4);

  // assembly: the image-token rows of inputs_embeds, image by image
  float *newline, *sep;
  ASSERT_EQ(vlm_checkpoint_vector(ck, "image_newline", H, &newline), VLM_OK);
  ASSERT_EQ(vlm_checkpoint_vector(ck, "view_seperator", H, &sep), VLM_OK);
  std::vector<int64_t> crop = gold.ints("images_spatial_crop"), mask = gold.ints("images_seq_mask");
  std::vector<float> embeds = gold.f32("inputs_embeds");
  std::vector<float> assembled;
  int tile = 0;
  for (size_t i = 0; i < crop.size() / 2; i++) {
    int nw = (int)crop[2 * i], nh = (int)crop[2 * i + 1];
    int64_t cnt = vlm_image_embed_count(side, nw, nh);
    std::vector<float> block((size_t)cnt * H);
    vlm_image_embeds_assemble(gp.data() + (size_t)tile * side * side * H, side, nw, nh, newline, sep, H, block.data());
    assembled.insert(assembled.end(), block.begin(), block.end());
    tile += 1 + nw * nh;
  }
  EXPECT_EQ(tile, n);
  std::vector<float> golden_rows;
  for (size_t t = 0; t < mask.size(); t++)
    if (mask[t]) golden_rows.insert(golden_rows.end(), embeds.begin() + t * H, embeds.begin() + (t + 1) * H);
  ASSERT_EQ(golden_rows.size(), assembled.size());
  // golden inputs_embeds were built from the golden projector output: identical values
  EXPECT_EQ(golden::max_abs_diff(assembled.data(), golden_rows.data(), assembled.size()), 0.0);

  free(newline);
  free(sep);
  vlm_projector_free(proj);
  vlm_siglip_free(vit);
  vlm_checkpoint_close(ck);
}

INSTANTIATE_TEST_SUITE_P(Golden, VisionCase,
                         ::testing::Combine(::testing::ValuesIn(golden::models()), ::testing::ValuesIn(golden::cases())),
                         [](const auto &info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           for (auto &ch : s) if (!isalnum((unsigned char)ch)) ch = '_';
                           return s;
                         });

TEST(ImageTokens, CountsFollowTheSpec) {
  EXPECT_EQ(vlm_image_embed_count(14, 1, 1), 421);
  EXPECT_EQ(vlm_image_embed_count(14, 2, 2), 1023);
  EXPECT_EQ(vlm_image_embed_count(14, 3, 2), 1415);
  EXPECT_EQ(vlm_image_embed_count(14, 4, 2), 1807);
  EXPECT_EQ(vlm_image_embed_count(14, 1, 9), 2101);
  EXPECT_EQ(vlm_image_embed_count(14, 3, 3), 2017);
  EXPECT_EQ(vlm_image_embed_count(14, 9, 1), 1989);
}

// A 2x1 layout on labelled vectors: rows join the same within-tile row of both tiles.
TEST(ImageTokens, LayoutOrder) {
  const int side = 2, H = 1, nw = 2, nh = 1;
  // tiles: global (0..3), local0 (10..13), local1 (20..23)
  std::vector<float> proj = {0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23};
  float nl = -1, sep = -2;
  std::vector<float> out((size_t)vlm_image_embed_count(side, nw, nh));
  vlm_image_embeds_assemble(proj.data(), side, nw, nh, &nl, &sep, H, out.data());
  std::vector<float> want = {0, 1, -1, 2, 3, -1, -2, 10, 11, 20, 21, -1, 12, 13, 22, 23, -1};
  EXPECT_EQ(out, want);
}

}  // namespace
