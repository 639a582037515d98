// safetensors reading and writing: round trip, and every malformed header is a clear error.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "golden_util.h"

extern "C" {
#include "core/checkpoint.h"
#include "core/tensor.h"
}

namespace {

std::string tmp_path(const char *name) {
  char dir[] = "/tmp/vlm_st_XXXXXX";
  std::string d = mkdtemp(dir);
  return d + "/" + name;
}

void write_raw(const std::string &path, const std::string &header, size_t data_bytes) {
  FILE *f = fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  uint64_t n = header.size();
  fwrite(&n, 8, 1, f);
  fwrite(header.data(), 1, header.size(), f);
  for (size_t i = 0; i < data_bytes; i++) fputc((int)(i & 0xff), f);
  fclose(f);
}

int open_status(const std::string &path, std::string *msg) {
  vlm_st_file *f = nullptr;
  int rc = vlm_st_open(path.c_str(), &f);
  *msg = vlm_last_error();
  vlm_st_close(f);
  return rc;
}

TEST(Safetensors, WriteThenReadRoundTrip) {
  std::string p = tmp_path("a.safetensors");
  float a[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
  uint16_t b[3] = {vlm_f32_to_bf16(1.0f), vlm_f32_to_bf16(-0.5f), vlm_f32_to_bf16(3.0f)};
  vlm_tensor_view t[2] = {};
  t[0] = {"w", VLM_DT_F32, 2, {2, 3}, a, sizeof a};
  t[1] = {"b", VLM_DT_BF16, 1, {3}, b, sizeof b};
  ASSERT_EQ(vlm_st_write(p.c_str(), t, 2), VLM_OK) << vlm_last_error();
  vlm_st_file *f;
  ASSERT_EQ(vlm_st_open(p.c_str(), &f), VLM_OK) << vlm_last_error();
  EXPECT_EQ(vlm_st_count(f), 2);
  const vlm_tensor_view *w = vlm_st_find(f, "w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->ndim, 2);
  EXPECT_EQ(w->shape[0], 2);
  EXPECT_EQ(w->shape[1], 3);
  EXPECT_EQ(0, memcmp(w->data, a, sizeof a));
  float bf[3];
  ASSERT_EQ(vlm_view_read_f32(vlm_st_find(f, "b"), 0, 3, bf), VLM_OK);
  EXPECT_EQ(bf[0], 1.0f);
  EXPECT_EQ(bf[1], -0.5f);
  EXPECT_EQ(bf[2], 3.0f);
  EXPECT_EQ(vlm_st_find(f, "missing"), nullptr);
  vlm_st_close(f);
}

TEST(Safetensors, Bf16AndF16Conversions) {
  EXPECT_EQ(vlm_bf16_to_f32(0x3f80), 1.0f);
  EXPECT_EQ(vlm_f32_to_bf16(1.0f), 0x3f80);
  // round to nearest even: 1 + 2^-8 lies exactly between two bf16 values and rounds to the even one (1.0)
  EXPECT_EQ(vlm_f32_to_bf16(1.00390625f), 0x3f80);
  EXPECT_EQ(vlm_f32_to_bf16(1.01171875f), 0x3f82);
  EXPECT_EQ(vlm_f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(vlm_f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(vlm_f16_to_f32(0x0001), 5.9604644775390625e-08f);  // smallest subnormal
  EXPECT_EQ(vlm_f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(vlm_f32_to_f16(1e6f), 0x7c00);  // overflow -> inf
  for (int h = 0; h < 0x7c00; h += 37) EXPECT_EQ(vlm_f32_to_f16(vlm_f16_to_f32((uint16_t)h)), h);
}

TEST(Safetensors, MalformedFilesAreErrors) {
  std::string msg;
  std::string p = tmp_path("bad.safetensors");
  // zero bytes
  { FILE *f = fopen(p.c_str(), "wb"); fclose(f); }
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("too short"), std::string::npos) << msg;
  // header length past the end of the file
  write_raw(p, "{}", 0);
  { FILE *f = fopen(p.c_str(), "r+b"); uint64_t n = 1000; fwrite(&n, 8, 1, f); fclose(f); }
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("header length"), std::string::npos) << msg;
  // not JSON
  write_raw(p, "{\"a\": [1,", 0);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  // unknown dtype
  write_raw(p, R"({"x":{"dtype":"Q3","shape":[2],"data_offsets":[0,2]}})", 2);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("unknown dtype"), std::string::npos) << msg;
  // data range past the end (truncated file)
  write_raw(p, R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  // shape disagrees with the byte range
  write_raw(p, R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  EXPECT_NE(msg.find("need 12"), std::string::npos) << msg;
  // negative dimension, and huge dimensions whose product overflows
  write_raw(p, R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  write_raw(p, R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  // offsets reversed
  write_raw(p, R"({"x":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", 4);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  // entry is not an object
  write_raw(p, R"({"x":5})", 0);
  EXPECT_EQ(open_status(p, &msg), VLM_ERR_FORMAT);
  // a folder instead of a file, and a missing file
  EXPECT_EQ(open_status("/tmp", &msg), VLM_ERR_IO);
  EXPECT_EQ(open_status("/nonexistent/x.safetensors", &msg), VLM_ERR_IO);
  EXPECT_NE(msg.find("/nonexistent/x.safetensors"), std::string::npos) << msg;
}

TEST(Safetensors, MetadataIsSkippedAndEmptyTensorsAllowed) {
  std::string p = tmp_path("m.safetensors");
  write_raw(p, R"({"__metadata__":{"format":"pt"},"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", 0);
  vlm_st_file *f;
  ASSERT_EQ(vlm_st_open(p.c_str(), &f), VLM_OK) << vlm_last_error();
  EXPECT_EQ(vlm_st_count(f), 1);
  EXPECT_EQ(vlm_view_numel(vlm_st_find(f, "e")), 0);
  vlm_st_close(f);
}

// Every truncation of a real checkpoint is either rejected or yields only in-range views.
TEST(Safetensors, TruncatedCheckpointNeverCrashes) {
  std::string src = golden::model_dir("tiny-mha") + "/model.safetensors";
  FILE *f = fopen(src.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  std::string bytes;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) bytes.append(buf, n);
  fclose(f);
  std::string p = tmp_path("t.safetensors");
  const size_t cuts[] = {0, 7, 8, 9, 100, 1000, 20000, bytes.size() / 2, bytes.size() - 1};
  for (size_t cut : cuts) {
    FILE *o = fopen(p.c_str(), "wb");
    fwrite(bytes.data(), 1, cut, o);
    fclose(o);
    std::string msg;
    EXPECT_NE(open_status(p, &msg), VLM_OK) << "cut at " << cut;
  }
}

}  // namespace
