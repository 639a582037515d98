// Helpers shared by the tests that compare against the golden tensors in tests/data/golden.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "core/error.h"
#include "core/safetensors.h"
}

namespace golden {

inline std::string data_dir() {
  const char *env = std::getenv("VLM_TEST_DATA_DIR");
  return env ? env : VLM_TEST_DATA;
}
inline std::string root() { return data_dir() + "/golden"; }
inline std::string model_dir(const std::string &model) { return root() + "/" + model; }
inline std::string input_dir(const std::string &c) { return root() + "/inputs/" + c; }

inline const std::vector<std::string> &cases() {
  static const std::vector<std::string> c = {"case1_640x480_png", "case2_1000x300_png", "case3_200x150_jpg",
                                             "case4_two_images", "case5_three_images"};
  return c;
}
inline const std::vector<std::string> &models() {
  static const std::vector<std::string> m = {"tiny-mha", "tiny-mla"};
  return m;
}

// An open safetensors file, closed on scope exit.
struct File {
  vlm_st_file *f = nullptr;
  explicit File(const std::string &path) {
    if (vlm_st_open(path.c_str(), &f) != VLM_OK) ADD_FAILURE() << vlm_last_error();
  }
  ~File() { vlm_st_close(f); }
  const vlm_tensor_view *get(const char *name) const {
    const vlm_tensor_view *v = f ? vlm_st_find(f, name) : nullptr;
    if (!v) ADD_FAILURE() << "golden tensor '" << name << "' missing";
    return v;
  }
  std::vector<float> f32(const char *name) const {
    const vlm_tensor_view *v = get(name);
    if (!v) return {};
    std::vector<float> out((size_t)vlm_view_numel(v));
    vlm_view_read_f32(v, 0, out.size(), out.data());
    return out;
  }
  std::vector<int64_t> ints(const char *name) const {
    const vlm_tensor_view *v = get(name);
    std::vector<int64_t> out;
    if (!v) return out;
    for (int64_t i = 0; i < vlm_view_numel(v); i++) {
      switch (v->dtype) {
        // safetensors data need not be aligned: copy instead of dereferencing
        case VLM_DT_I64: { int64_t x; memcpy(&x, (const char *)v->data + 8 * i, 8); out.push_back(x); break; }
        case VLM_DT_I32: { int32_t x; memcpy(&x, (const char *)v->data + 4 * i, 4); out.push_back(x); break; }
        case VLM_DT_U8: out.push_back(((const uint8_t *)v->data)[i]); break;
        default: ADD_FAILURE() << name << " is not an integer tensor"; return out;
      }
    }
    return out;
  }
};

inline double max_abs_diff(const float *a, const float *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = std::fabs((double)a[i] - (double)b[i]);
    if (std::isnan(d)) return INFINITY;
    if (d > m) m = d;
  }
  return m;
}

// Runs a shell command, returns its exit status and stdout.
inline int run(const std::string &cmd, std::string *out) {
  FILE *p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

inline std::string vlm_bin() {
  const char *env = std::getenv("VLM_BIN");
  return env ? env : std::string(VLM_BUILD_DIR) + "/vlm";
}

}  // namespace golden
