// Small buffer helpers shared by the backend tests (CPU and CUDA).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace bufutil {

// n uniform floats in [lo, hi) from a fixed seed.
inline std::vector<float> Rand(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f)
{
    std::mt19937 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v) x = d(g);
    return v;
}

inline bool SameBits(const std::vector<float> &a, const std::vector<float> &b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace bufutil
