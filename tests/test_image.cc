// Image decoding (media/image.h) against Pillow 9.4.0's Image.open(f).convert("RGB").
//
// Reference data:
//  - tests/data/image/*.png|jpg with NAME.rgb = PIL's RGB bytes (made by
//    tests/data/image/make_refs.py with Pillow 9.4.0 from PyPI; every PNG colour
//    type and bit depth, tRNS, short PLTE, Adam7, JPEG 4:2:0/4:2:2/4:4:4,
//    progressive, grey, CMYK (Adobe) and YCCK);
//  - the golden JPEGs against the golden image_rgb_u8 tensors (PIL 9.4.0 with
//    Debian's libjpeg-turbo, from the official reference run);
//  - the golden PNGs against the FNV-1a 64 hash of PIL's RGB bytes (printed by
//    make_refs.py).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <stdexcept>
#include <vector>

#include <unistd.h>

extern "C" {
#include "core/error.h"
#include "core/safetensors.h"
#include "media/image.h"
}

namespace {

const std::string kData = VLM_TEST_DATA;

// A missing data file ends the test (GoogleTest reports the exception as a failure): the callers
// index into what they read.
std::vector<uint8_t> ReadFile(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    if (!f.good()) throw std::runtime_error("cannot open " + path);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

uint64_t Fnv1a64(const uint8_t *p, size_t n)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001B3ull;
    }
    return h;
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

uint32_t Crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

void PutBe32(std::vector<uint8_t> &v, uint32_t x)
{
    v.push_back(uint8_t(x >> 24));
    v.push_back(uint8_t(x >> 16));
    v.push_back(uint8_t(x >> 8));
    v.push_back(uint8_t(x));
}

void PutChunk(std::vector<uint8_t> &v, const char *tag, const std::vector<uint8_t> &data)
{
    PutBe32(v, uint32_t(data.size()));
    std::vector<uint8_t> td(tag, tag + 4);
    td.insert(td.end(), data.begin(), data.end());
    v.insert(v.end(), td.begin(), td.end());
    PutBe32(v, Crc32(td.data(), td.size()));
}

// A PNG that is only a signature, an IHDR (valid CRC) and IEND.
std::vector<uint8_t> PngHeaderOnly(uint32_t w, uint32_t h)
{
    std::vector<uint8_t> v = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<uint8_t> ihdr;
    PutBe32(ihdr, w);
    PutBe32(ihdr, h);
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
    PutChunk(v, "IHDR", ihdr);
    PutChunk(v, "IEND", {});
    return v;
}

int DecodeBytes(const std::vector<uint8_t> &b, vlm_image *img, const vlm_image_limits *lim = nullptr)
{
    return vlm_image_decode_memory(b.data(), b.size(), lim, img);
}

bool ErrorHas(const char *needle) { return std::strstr(vlm_last_error(), needle) != nullptr; }

// ---------------------------------------------------------------------------

TEST(ImageDecode, EveryManifestFileMatchesPil)
{
    std::ifstream m(kData + "/image/manifest.txt");
    ASSERT_TRUE(m.good());
    std::string line;
    int checked = 0, png = 0, jpg = 0;
    while (std::getline(m, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::string name;
        int w = 0, h = 0;
        ls >> name >> w >> h;
        SCOPED_TRACE(name);
        std::string stem = name.substr(0, name.rfind('.'));
        std::vector<uint8_t> want = ReadFile(kData + "/image/" + stem + ".rgb");
        ASSERT_EQ(want.size(), size_t(w) * h * 3);
        vlm_image img;
        ASSERT_EQ(vlm_image_decode_file((kData + "/image/" + name).c_str(), nullptr, &img), VLM_OK)
            << vlm_last_error();
        EXPECT_EQ(img.width, w);
        EXPECT_EQ(img.height, h);
        if (img.width == w && img.height == h) {
            int max_abs;
            size_t d = CountDiff(img.rgb, want.data(), want.size(), &max_abs);
            EXPECT_EQ(d, 0u) << "differing bytes (max |diff| " << max_abs << ")";
        }
        vlm_image_free(&img);
        checked++;
        (name.find(".png") != std::string::npos ? png : jpg)++;
    }
    EXPECT_EQ(checked, 28);
    EXPECT_EQ(png, 21);
    EXPECT_EQ(jpg, 7);
}

TEST(ImageDecode, SpotValuesOfPilConversions)
{
    // Values worked out by hand from PIL's unpackers, independent of the .rgb files.
    vlm_image img;
    // gray16.png row 1 holds 0 1 127 128 254 255 256 257 1000 32767 32768 65534 65535:
    // PIL opens 16-bit grey as mode "I" and convert("RGB") clips to 0..255.
    ASSERT_EQ(vlm_image_decode_file((kData + "/image/gray16.png").c_str(), nullptr, &img), VLM_OK);
    const int want16[13] = {0, 1, 127, 128, 254, 255, 255, 255, 255, 255, 255, 255, 255};
    for (int x = 0; x < 13; x++) {
        const uint8_t *p = img.rgb + (size_t(1) * img.width + x) * 3;
        EXPECT_EQ(p[0], want16[x]) << x;
        EXPECT_EQ(p[1], want16[x]);
        EXPECT_EQ(p[2], want16[x]);
    }
    vlm_image_free(&img);
    // gray2.png: pixel (0,0) = 0, pixel (1,0) = 3 -> 0 and 255; every value is a multiple of 85.
    ASSERT_EQ(vlm_image_decode_file((kData + "/image/gray2.png").c_str(), nullptr, &img), VLM_OK);
    EXPECT_EQ(img.rgb[0], 0);
    EXPECT_EQ(img.rgb[3], 255);
    for (int i = 0; i < img.width * img.height * 3; i++) EXPECT_EQ(img.rgb[i] % 85, 0);
    vlm_image_free(&img);
    // gray4.png: multiples of 17.
    ASSERT_EQ(vlm_image_decode_file((kData + "/image/gray4.png").c_str(), nullptr, &img), VLM_OK);
    for (int i = 0; i < img.width * img.height * 3; i++) EXPECT_EQ(img.rgb[i] % 17, 0);
    vlm_image_free(&img);
}

TEST(ImageDecode, MemoryAndFileGiveTheSamePixels)
{
    for (const char *name : {"rgb8_adam7", "rgb444"}) {
        SCOPED_TRACE(name);
        std::string path = kData + "/image/" + name + (name[3] == '8' ? ".png" : ".jpg");
        std::vector<uint8_t> b = ReadFile(path);
        vlm_image a, f;
        ASSERT_EQ(DecodeBytes(b, &a), VLM_OK);
        ASSERT_EQ(vlm_image_decode_file(path.c_str(), nullptr, &f), VLM_OK);
        ASSERT_EQ(a.width, f.width);
        ASSERT_EQ(a.height, f.height);
        std::vector<uint8_t> want = ReadFile(kData + "/image/" + name + ".rgb");
        ASSERT_EQ(want.size(), size_t(a.width) * a.height * 3);
        EXPECT_EQ(std::memcmp(a.rgb, want.data(), want.size()), 0);
        EXPECT_EQ(std::memcmp(f.rgb, want.data(), want.size()), 0);
        vlm_image_free(&a);
        vlm_image_free(&f);
        vlm_image_free(&f); // freeing a freed (zeroed) image is a no-op
    }
}

TEST(ImageDecode, GoldenJpegsEqualPilPixelsExactly)
{
    struct Case {
        const char *dir, *file, *tensor;
        int w, h;
    } cases[] = {
        {"case3_200x150_jpg", "image.jpg", "image_rgb_u8", 200, 150},
        {"case4_two_images", "image_2.jpg", "image_rgb_u8_2", 256, 640},
        {"case5_three_images", "image_3.jpg", "image_rgb_u8_3", 800, 200},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.dir);
        std::string dir = kData + "/golden/inputs/" + c.dir;
        vlm_st_file *st = nullptr;
        ASSERT_EQ(vlm_st_open((dir + "/preprocess.safetensors").c_str(), &st), VLM_OK) << vlm_last_error();
        const vlm_tensor_view *v = vlm_st_find(st, c.tensor);
        ASSERT_NE(v, nullptr);
        ASSERT_EQ(v->dtype, VLM_DT_U8);
        ASSERT_EQ(v->ndim, 3);
        EXPECT_EQ(v->shape[0], c.h);
        EXPECT_EQ(v->shape[1], c.w);
        EXPECT_EQ(v->shape[2], 3);
        vlm_image img;
        ASSERT_EQ(vlm_image_decode_file((dir + "/" + c.file).c_str(), nullptr, &img), VLM_OK);
        ASSERT_EQ(img.width, c.w);
        ASSERT_EQ(img.height, c.h);
        int max_abs;
        size_t d = CountDiff(img.rgb, (const uint8_t *)v->data, v->nbytes, &max_abs);
        EXPECT_EQ(d, 0u) << "bytes differ from PIL's decode, max |diff| " << max_abs;
        vlm_image_free(&img);
        vlm_st_close(st);
    }
}

TEST(ImageDecode, GoldenPngsEqualPilPixelsByHash)
{
    struct Case {
        const char *path;
        int w, h;
        uint64_t fnv;
    } cases[] = {
        {"case1_640x480_png/image.png", 640, 480, 0xbb5331e39d8c06d1ull},
        {"case2_1000x300_png/image.png", 1000, 300, 0xc16ee853447ebd5eull},
        {"case4_two_images/image_1.png", 500, 375, 0xc3c1db64705bafa1ull},
        {"case5_three_images/image_1.png", 320, 240, 0x987ac994e577ab7bull},
        {"case5_three_images/image_2.png", 240, 320, 0xaaf213a8ceefbe08ull},
    };
    for (const Case &c : cases) {
        SCOPED_TRACE(c.path);
        vlm_image img;
        ASSERT_EQ(vlm_image_decode_file((kData + "/golden/inputs/" + c.path).c_str(), nullptr, &img),
                  VLM_OK);
        EXPECT_EQ(img.width, c.w);
        EXPECT_EQ(img.height, c.h);
        EXPECT_EQ(Fnv1a64(img.rgb, size_t(img.width) * img.height * 3), c.fnv);
        vlm_image_free(&img);
    }
}

// --- broken inputs ---------------------------------------------------------

TEST(ImageDecodeErrors, EmptyInput)
{
    vlm_image img;
    uint8_t dummy = 0;
    EXPECT_EQ(vlm_image_decode_memory(&dummy, 0, nullptr, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("empty")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);

    char path[] = "/tmp/vlm_test_empty_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    close(fd);
    EXPECT_EQ(vlm_image_decode_file(path, nullptr, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("empty file")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas(path)) << vlm_last_error();
    unlink(path);
}

TEST(ImageDecodeErrors, MissingFile)
{
    vlm_image img;
    EXPECT_EQ(vlm_image_decode_file("/nonexistent/dir/x.png", nullptr, &img), VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("/nonexistent/dir/x.png")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);
}

TEST(ImageDecodeErrors, WrongMagicIsUnsupportedWhateverTheName)
{
    vlm_image img;
    // (GIF is decoded now; a Photoshop file is still not.)
    std::vector<uint8_t> psd = {'8', 'B', 'P', 'S', 0, 1, 0, 0, 0, 0, 0, 0, 0};
    EXPECT_EQ(DecodeBytes(psd, &img), VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(ErrorHas("unsupported image format")) << vlm_last_error();
    // A PNG signature with one byte wrong is not a PNG.
    std::vector<uint8_t> b = ReadFile(kData + "/image/rgb8.png");
    b[1] = 'Q';
    EXPECT_EQ(DecodeBytes(b, &img), VLM_ERR_UNSUPPORTED);
    // Two bytes of a JPEG SOI are not enough to call it a JPEG.
    std::vector<uint8_t> soi = {0xFF, 0xD8};
    EXPECT_EQ(DecodeBytes(soi, &img), VLM_ERR_UNSUPPORTED);
    EXPECT_EQ(img.rgb, nullptr);
}

TEST(ImageDecodeErrors, TruncatedPng)
{
    std::vector<uint8_t> b = ReadFile(kData + "/image/rgb8.png");
    ASSERT_GT(b.size(), 100u);
    vlm_image img;
    // Cut in the middle of IDAT, inside IHDR, right after the signature.
    for (size_t keep : {b.size() / 2, size_t(20), size_t(8), size_t(40)}) {
        SCOPED_TRACE(keep);
        std::vector<uint8_t> t(b.begin(), b.begin() + keep);
        EXPECT_EQ(DecodeBytes(t, &img), VLM_ERR_FORMAT);
        EXPECT_TRUE(ErrorHas("png: file is truncated")) << vlm_last_error();
        EXPECT_EQ(img.rgb, nullptr);
    }
    // Only IEND missing: PIL loads such a file, and so do we.
    std::vector<uint8_t> t(b.begin(), b.end() - 12);
    ASSERT_EQ(DecodeBytes(t, &img), VLM_OK) << vlm_last_error();
    std::vector<uint8_t> want = ReadFile(kData + "/image/rgb8.rgb");
    EXPECT_EQ(std::memcmp(img.rgb, want.data(), want.size()), 0);
    vlm_image_free(&img);
}

TEST(ImageDecodeErrors, CorruptPng)
{
    std::vector<uint8_t> b = ReadFile(kData + "/image/rgb8.png");
    vlm_image img;
    // Bad IHDR CRC.
    std::vector<uint8_t> c = b;
    c[29] ^= 0x55;
    EXPECT_EQ(DecodeBytes(c, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("png: corrupt file")) << vlm_last_error();
    // Garbage in the compressed data (IDAT starts at byte 33: length, tag, data).
    c = b;
    for (size_t i = 45; i < 60; i++) c[i] ^= 0xA7;
    EXPECT_EQ(DecodeBytes(c, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("png: corrupt file")) << vlm_last_error();
    // First chunk not IHDR.
    c = b;
    std::memcpy(&c[12], "IDAT", 4);
    EXPECT_EQ(DecodeBytes(c, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("not IHDR")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);
}

TEST(ImageDecodeErrors, TruncatedJpeg)
{
    vlm_image img;
    for (const char *name : {"rgb420.jpg", "rgb_prog.jpg", "gray.jpg"}) {
        std::vector<uint8_t> b = ReadFile(kData + "/image/" + name);
        // Cut in the scan data, in the headers, and just the EOI marker missing
        // (PIL raises "image file is truncated" for all three).
        for (size_t keep : {b.size() / 2, size_t(100), b.size() - 2}) {
            SCOPED_TRACE(std::string(name) + " keep " + std::to_string(keep));
            std::vector<uint8_t> t(b.begin(), b.begin() + keep);
            EXPECT_EQ(DecodeBytes(t, &img), VLM_ERR_FORMAT);
            EXPECT_TRUE(ErrorHas("jpeg: file is truncated")) << vlm_last_error();
            EXPECT_EQ(img.rgb, nullptr);
        }
    }
}

size_t FindMarker(const std::vector<uint8_t> &b, uint8_t m)
{
    for (size_t i = 2; i + 9 < b.size(); i++)
        if (b[i] == 0xFF && b[i + 1] == m) return i;
    return 0;
}

TEST(ImageDecodeErrors, CorruptJpeg)
{
    const std::vector<uint8_t> b = ReadFile(kData + "/image/rgb420.jpg");
    vlm_image img;
    // A Huffman table whose code counts overflow.
    std::vector<uint8_t> c = b;
    size_t dht = FindMarker(c, 0xC4);
    ASSERT_NE(dht, 0u);
    for (int i = 0; i < 8; i++) c[dht + 5 + i] = 0xFF;
    EXPECT_EQ(DecodeBytes(c, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("jpeg: corrupt file")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas("Huffman")) << vlm_last_error();
    // A frame header with width 0.
    c = b;
    size_t sof = FindMarker(c, 0xC0);
    ASSERT_NE(sof, 0u);
    c[sof + 7] = c[sof + 8] = 0;
    EXPECT_EQ(DecodeBytes(c, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("jpeg: corrupt file")) << vlm_last_error();
    // SOI followed by bytes that are no marker at all: libjpeg skips them looking
    // for a marker and runs out of data.
    std::vector<uint8_t> g = {0xFF, 0xD8, 0xFF, 0x00, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc};
    g.resize(64, 0x11);
    EXPECT_EQ(DecodeBytes(g, &img), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("jpeg: file is truncated")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);
}

TEST(ImageDecodeErrors, PixelLimitFromPngHeaderBeforeAllocation)
{
    // 100000 x 100000 RGB would need 30 GB; the header alone must be refused
    // (no IDAT exists, so anything that got past the header would fail differently).
    std::vector<uint8_t> b = PngHeaderOnly(100000, 100000);
    vlm_image img;
    EXPECT_EQ(DecodeBytes(b, &img), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("100000x100000")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas("10000000000")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas("50000000")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);
    // Width over 2^31-1 is invalid in PNG whatever the limit.
    vlm_image_limits big = {INT64_MAX, 0};
    b = PngHeaderOnly(0x80000000u, 1);
    EXPECT_EQ(DecodeBytes(b, &img, &big), VLM_ERR_FORMAT);
}

TEST(ImageDecodeErrors, PixelLimitIsInclusive)
{
    vlm_image img;
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    EXPECT_EQ(lim.max_pixels, 50000000);
    std::vector<uint8_t> png = ReadFile(kData + "/image/rgb8.png"); // 13 x 7 = 91
    lim.max_pixels = 90;
    EXPECT_EQ(DecodeBytes(png, &img, &lim), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("13x7 = 91 pixels")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas("90")) << vlm_last_error();
    lim.max_pixels = 91;
    ASSERT_EQ(DecodeBytes(png, &img, &lim), VLM_OK);
    vlm_image_free(&img);

    std::vector<uint8_t> jpg = ReadFile(kData + "/image/rgb420.jpg"); // 39 x 21 = 819
    lim.max_pixels = 818;
    EXPECT_EQ(DecodeBytes(jpg, &img, &lim), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("39x21 = 819 pixels")) << vlm_last_error();
    lim.max_pixels = 819;
    ASSERT_EQ(DecodeBytes(jpg, &img, &lim), VLM_OK);
    vlm_image_free(&img);
}

TEST(ImageDecodeErrors, PixelLimitFromJpegHeader)
{
    // Patch the SOF0 dimensions of a real JPEG to 60000 x 60000 (3.6e9 pixels).
    std::vector<uint8_t> b = ReadFile(kData + "/image/rgb420.jpg");
    size_t sof = FindMarker(b, 0xC0);
    ASSERT_NE(sof, 0u);
    b[sof + 5] = 0xEA; // height, big-endian 60000 = 0xEA60
    b[sof + 6] = 0x60;
    b[sof + 7] = 0xEA; // width
    b[sof + 8] = 0x60;
    vlm_image img;
    EXPECT_EQ(DecodeBytes(b, &img), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("60000x60000")) << vlm_last_error();
    EXPECT_EQ(img.rgb, nullptr);
}

} // namespace
