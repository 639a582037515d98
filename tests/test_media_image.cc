// GIF, WebP, BMP, TIFF and AVIF decoding (media/image_av.c) against Pillow, and
// broken inputs of every format.
//
// Reference data: tests/data/image/more/NAME.rgb = Image.open(NAME).convert("RGB")
// bytes from Pillow 9.4.0 (the version the official DeepSeek-VL2 processor used;
// AVIF, which 9.4 cannot read, from Pillow 13.0.0 = libavif + libyuv), made by
// tests/data/image/more/make_refs.py; manifest.txt gives each file's size and the
// largest difference allowed (0 everywhere but tiff_cmyk.tif, where FFmpeg's own
// CMYK conversion truncates where PIL rounds: 1 level).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include "core/error.h"
#include "media/image.h"
}

namespace {

const std::string kMore = std::string(VLM_TEST_DATA) + "/image/more/";

std::vector<uint8_t> Read(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    EXPECT_TRUE(f.good()) << "cannot open " << path;
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

bool ErrorHas(const char *needle) { return std::strstr(vlm_last_error(), needle) != nullptr; }

int Decode(const std::vector<uint8_t> &b, vlm_image *img, const vlm_image_limits *lim = nullptr)
{
    return vlm_image_decode_memory(b.data(), b.size(), lim, img);
}

void PutLe32(std::vector<uint8_t> &b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[at + i] = uint8_t(v >> (8 * i));
}
void PutBe32(std::vector<uint8_t> &b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) b[at + i] = uint8_t(v >> (24 - 8 * i));
}

size_t Find(const std::vector<uint8_t> &b, const char *s, size_t from = 0)
{
    size_t n = std::strlen(s);
    for (size_t i = from; i + n <= b.size(); i++)
        if (!std::memcmp(&b[i], s, n)) return i;
    return std::string::npos;
}

// Sets a SHORT or LONG tag of a little-endian TIFF's first IFD (turned into a LONG).
void SetTiffTag(std::vector<uint8_t> &b, unsigned tag, uint32_t value)
{
    ASSERT_EQ(b[0], 'I');
    uint32_t ifd = b[4] | (b[5] << 8) | (b[6] << 16) | (uint32_t(b[7]) << 24);
    unsigned n = b[ifd] | (b[ifd + 1] << 8);
    for (unsigned i = 0; i < n; i++) {
        size_t e = ifd + 2 + 12 * i;
        if (unsigned(b[e] | (b[e + 1] << 8)) != tag) continue;
        b[e + 2] = 4; // LONG
        b[e + 3] = 0;
        PutLe32(b, e + 4, 1);
        PutLe32(b, e + 8, value);
        return;
    }
    FAIL() << "tag " << tag << " not found";
}

struct Sample {
    std::string name;
    int w, h, tol;
};

std::vector<Sample> Manifest()
{
    std::vector<Sample> v;
    std::ifstream m(kMore + "manifest.txt");
    EXPECT_TRUE(m.good());
    std::string line;
    while (std::getline(m, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        Sample s;
        ls >> s.name >> s.w >> s.h >> s.tol;
        v.push_back(s);
    }
    return v;
}

// ---------------------------------------------------------------------------

TEST(MediaImage, EveryFormatMatchesPillow)
{
    std::map<std::string, int> count;
    for (const Sample &s : Manifest()) {
        SCOPED_TRACE(s.name);
        std::vector<uint8_t> want = Read(kMore + s.name.substr(0, s.name.rfind('.')) + ".rgb");
        ASSERT_EQ(want.size(), size_t(s.w) * s.h * 3);
        vlm_image img;
        ASSERT_EQ(vlm_image_decode_file((kMore + s.name).c_str(), nullptr, &img), VLM_OK) << vlm_last_error();
        ASSERT_EQ(img.width, s.w);
        ASSERT_EQ(img.height, s.h);
        int max_abs = 0;
        size_t diff = 0;
        for (size_t i = 0; i < want.size(); i++) {
            int d = std::abs(int(img.rgb[i]) - int(want[i]));
            if (d) diff++;
            if (d > max_abs) max_abs = d;
        }
        EXPECT_LE(max_abs, s.tol) << diff << " bytes differ";
        if (s.tol == 0) {
            EXPECT_EQ(diff, 0u);
        }
        vlm_image_free(&img);
        count[s.name.substr(s.name.rfind('.') + 1)]++;
    }
    EXPECT_EQ(count["webp"], 8);
    EXPECT_EQ(count["gif"], 9);
    EXPECT_EQ(count["bmp"], 12);
    EXPECT_EQ(count["tif"], 13);
    EXPECT_EQ(count["avif"], 4);
}

TEST(MediaImage, SpotValuesWorkedOutByHand)
{
    vlm_image img;
    // tiff_gray16 row 0 starts 0 1 255 256 1000 32768 65534 65535: PIL's "I;16" -> RGB clips.
    ASSERT_EQ(vlm_image_decode_file((kMore + "tiff_gray16.tif").c_str(), nullptr, &img), VLM_OK);
    const int want[8] = {0, 1, 255, 255, 255, 255, 255, 255};
    for (int x = 0; x < 8; x++) EXPECT_EQ(img.rgb[3 * x], want[x]) << x;
    vlm_image_free(&img);
    // gif_offset: frame 0 is 20x9 at (6,5) on a 39x21 screen; outside it PIL shows
    // palette entry 0 (no transparency), read here straight from the global colour table.
    std::vector<uint8_t> g = Read(kMore + "gif_offset.gif");
    ASSERT_EQ(Decode(g, &img), VLM_OK);
    for (int c = 0; c < 3; c++) {
        EXPECT_EQ(img.rgb[c], g[13 + c]);                         // (0,0)
        EXPECT_EQ(img.rgb[(20 * 39 + 38) * 3 + c], g[13 + c]);    // (38,20)
    }
    vlm_image_free(&img);
    // gif_offset_trans: the same, but frame 0 has transparency index 3 -> palette entry 3.
    g = Read(kMore + "gif_offset_trans.gif");
    ASSERT_EQ(Decode(g, &img), VLM_OK);
    for (int c = 0; c < 3; c++) EXPECT_EQ(img.rgb[c], g[13 + 3 * 3 + c]);
    vlm_image_free(&img);
    // bmp_rgb555: pixel value v -> (r*255/31, g*255/31, b*255/31); the first stored row is
    // the bottom one, and its first pixel is little-endian at the data offset.
    std::vector<uint8_t> b = Read(kMore + "bmp_rgb555.bmp");
    uint32_t off = b[10] | (b[11] << 8);
    unsigned v = b[off] | (b[off + 1] << 8);
    ASSERT_EQ(Decode(b, &img), VLM_OK);
    const uint8_t *p = img.rgb + size_t(img.height - 1) * img.width * 3;
    EXPECT_EQ(p[0], ((v >> 10) & 31) * 255 / 31);
    EXPECT_EQ(p[1], ((v >> 5) & 31) * 255 / 31);
    EXPECT_EQ(p[2], (v & 31) * 255 / 31);
    vlm_image_free(&img);
}

TEST(MediaImage, FormatComesFromTheBytesNotTheName)
{
    struct {
        const char *file;
        vlm_image_format f;
        const char *name, *mime;
    } cases[] = {
        {"webp_lossy.webp", VLM_IMAGE_WEBP, "webp", "image/webp"},
        {"gif_basic.gif", VLM_IMAGE_GIF, "gif", "image/gif"},
        {"bmp_rgb24.bmp", VLM_IMAGE_BMP, "bmp", "image/bmp"},
        {"tiff_rgb.tif", VLM_IMAGE_TIFF, "tiff", "image/tiff"},
        {"avif_yuv420.avif", VLM_IMAGE_AVIF, "avif", "image/avif"},
    };
    for (auto &c : cases) {
        SCOPED_TRACE(c.file);
        std::vector<uint8_t> b = Read(kMore + c.file);
        EXPECT_EQ(vlm_image_detect(b.data(), b.size()), c.f);
        EXPECT_STREQ(vlm_image_format_name(c.f), c.name);
        EXPECT_STREQ(vlm_image_format_mime(c.f), c.mime);
        // Saved under a misleading name, it still decodes as what it is.
        std::string path = "/tmp/vlm_media_img_" + std::to_string(getpid()) + ".png";
        std::ofstream(path, std::ios::binary).write((const char *)b.data(), b.size());
        vlm_image img;
        EXPECT_EQ(vlm_image_decode_file(path.c_str(), nullptr, &img), VLM_OK) << vlm_last_error();
        EXPECT_EQ(img.width, 39);
        vlm_image_free(&img);
        unlink(path.c_str());
    }
    std::vector<uint8_t> text = {'B', 'M', 'W', ' ', 'i', 's', ' ', 'a', ' ', 'c', 'a', 'r', ' ', 'm', 'a', 'k', 'e', 'r'};
    EXPECT_EQ(vlm_image_detect(text.data(), text.size()), VLM_IMAGE_UNKNOWN);
}

TEST(MediaImage, ProbeReadsHeadersOnly)
{
    struct {
        const char *file;
        vlm_image_format f;
        int w, h, frames;
    } cases[] = {
        {"gif_anim.gif", VLM_IMAGE_GIF, 39, 21, 2},   {"gif_basic.gif", VLM_IMAGE_GIF, 39, 21, 1},
        {"webp_anim.webp", VLM_IMAGE_WEBP, 39, 21, 2}, {"webp_lossy_2x2.webp", VLM_IMAGE_WEBP, 2, 2, 1},
        {"bmp_topdown.bmp", VLM_IMAGE_BMP, 39, 21, 1}, {"tiff_rgb16.tif", VLM_IMAGE_TIFF, 39, 21, 1},
        {"avif_yuv420_even.avif", VLM_IMAGE_AVIF, 40, 22, 1},
    };
    for (auto &c : cases) {
        SCOPED_TRACE(c.file);
        std::vector<uint8_t> b = Read(kMore + c.file);
        vlm_image_info info;
        ASSERT_EQ(vlm_image_probe_memory(b.data(), b.size(), &info), VLM_OK) << vlm_last_error();
        EXPECT_EQ(info.format, c.f);
        EXPECT_EQ(info.width, c.w);
        EXPECT_EQ(info.height, c.h);
        EXPECT_EQ(info.frames, c.frames);
    }
    std::vector<uint8_t> png = Read(std::string(VLM_TEST_DATA) + "/image/rgb8.png");
    vlm_image_info info;
    ASSERT_EQ(vlm_image_probe_memory(png.data(), png.size(), &info), VLM_OK);
    EXPECT_EQ(info.width, 13);
    EXPECT_EQ(info.height, 7);
    std::vector<uint8_t> jpg = Read(std::string(VLM_TEST_DATA) + "/image/rgb420.jpg");
    ASSERT_EQ(vlm_image_probe_memory(jpg.data(), jpg.size(), &info), VLM_OK);
    EXPECT_EQ(info.format, VLM_IMAGE_JPEG);
    EXPECT_EQ(info.width, 39);
    EXPECT_EQ(info.height, 21);
}

// --- broken inputs, per format -------------------------------------------------

struct Broken {
    const char *label;
    std::vector<uint8_t> bytes;
    int code;
    const char *msg;
};

void ExpectAll(const std::vector<Broken> &cases)
{
    for (const Broken &c : cases) {
        SCOPED_TRACE(c.label);
        vlm_image img;
        img.rgb = (uint8_t *)1; // must be reset
        EXPECT_EQ(Decode(c.bytes, &img), c.code) << vlm_last_error();
        EXPECT_TRUE(ErrorHas(c.msg)) << "got: " << vlm_last_error();
        EXPECT_EQ(img.rgb, nullptr);
        EXPECT_EQ(img.width, 0);
    }
}

std::vector<uint8_t> Cut(const std::vector<uint8_t> &b, size_t n) { return std::vector<uint8_t>(b.begin(), b.begin() + n); }

TEST(MediaImageBroken, Gif)
{
    std::vector<uint8_t> g = Read(kMore + "gif_basic.gif");
    size_t img0 = 13 + 48; // after the 16-colour global table
    ASSERT_EQ(g[img0], ',');
    std::vector<Broken> cases;
    cases.push_back({"header only", Cut(g, 10), VLM_ERR_FORMAT, "gif: file is truncated"});
    cases.push_back({"in the colour table", Cut(g, 40), VLM_ERR_FORMAT, "gif: file is truncated (in the colour table)"});
    cases.push_back({"in the image data", Cut(g, g.size() / 2), VLM_ERR_FORMAT, "gif: file is truncated (in frame 0)"});
    std::vector<uint8_t> c = g;
    c[img0] = 0x99;
    cases.push_back({"unknown block", c, VLM_ERR_FORMAT, "gif: corrupt file (unknown block 0x99)"});
    c = g;
    c[img0 + 10] = 13; // LZW minimum code size past 12
    cases.push_back({"bad LZW code size", c, VLM_ERR_FORMAT, "gif: corrupt file (the decoder failed"});
    std::vector<uint8_t> none(g.begin(), g.begin() + 13);
    none[10] &= 0x7f; // no global table
    none.push_back(';');
    cases.push_back({"no image", none, VLM_ERR_FORMAT, "gif: the file holds no image"});
    c = g;
    c[6] = c[7] = c[8] = c[9] = 0xFF; // screen 65535 x 65535
    cases.push_back({"huge screen", c, VLM_ERR_LIMIT, "gif: image is 65535x65535 = 4294836225 pixels"});
    ExpectAll(cases);
}

TEST(MediaImageBroken, WebP)
{
    std::vector<uint8_t> lossy = Read(kMore + "webp_lossy.webp");
    std::vector<uint8_t> ll = Read(kMore + "webp_lossless.webp");
    std::vector<uint8_t> anim = Read(kMore + "webp_anim.webp");
    std::vector<Broken> cases;
    cases.push_back({"truncated", Cut(lossy, lossy.size() - 1), VLM_ERR_FORMAT, "webp: file is truncated (RIFF says"});
    cases.push_back({"header only", Cut(lossy, 16), VLM_ERR_FORMAT, "webp: file is truncated"});
    std::vector<uint8_t> c = lossy;
    ASSERT_EQ(Find(c, "VP8 "), 12u);
    c[20 + 3] = 0x00; // VP8 start code 9d 01 2a
    cases.push_back({"bad VP8 start code", c, VLM_ERR_FORMAT, "webp: corrupt VP8 frame header"});
    c = lossy;
    PutLe32(c, 16, 100000); // VP8 chunk longer than the file
    cases.push_back({"chunk past the end", c, VLM_ERR_FORMAT, "webp: file is truncated (chunk 'VP8 '"});
    c = ll;
    c[20] = 0x2e; // VP8L signature is 0x2f
    cases.push_back({"bad VP8L signature", c, VLM_ERR_FORMAT, "webp: corrupt VP8L header"});
    c = ll;
    c[21] = c[22] = c[23] = 0xFF;
    c[24] |= 0x0F; // 16384 x 16384
    cases.push_back({"huge lossless", c, VLM_ERR_LIMIT, "webp: image is 16384x16384 = 268435456 pixels"});
    c = anim;
    ASSERT_EQ(Find(c, "VP8X"), 12u);
    c[24] = c[25] = c[26] = c[27] = c[28] = c[29] = 0xFF; // canvas 2^24 x 2^24
    cases.push_back({"huge canvas", c, VLM_ERR_LIMIT, "webp: image is 16777216x16777216"});
    c = anim;
    size_t anmf = Find(c, "ANMF");
    ASSERT_NE(anmf, std::string::npos);
    c[anmf + 8] = 0xF0; // frame 0 moved off the canvas
    cases.push_back({"frame off canvas", c, VLM_ERR_FORMAT, "webp: first frame"});
    ExpectAll(cases);
}

TEST(MediaImageBroken, Bmp)
{
    std::vector<uint8_t> b = Read(kMore + "bmp_rgb24.bmp");
    std::vector<uint8_t> rle = Read(kMore + "bmp_rle8.bmp");
    std::vector<Broken> cases;
    cases.push_back({"truncated rows", Cut(b, b.size() - 1), VLM_ERR_FORMAT,
                     "bmp: file is truncated (pixel data needs 2574 bytes, the file has 2573)"});
    cases.push_back({"header only", Cut(b, 20), VLM_ERR_FORMAT, "bmp: file is truncated (20 bytes)"});
    cases.push_back({"truncated RLE", Cut(rle, rle.size() / 2), VLM_ERR_FORMAT,
                     "bmp: file is truncated (the RLE data ends before the picture does)"});
    std::vector<uint8_t> c = b;
    PutLe32(c, 14, 99);
    cases.push_back({"unknown header size", c, VLM_ERR_UNSUPPORTED, "unsupported image format"});
    c = b;
    PutLe32(c, 14, 64);
    c.resize(14 + 64 + 10); // a plausible but short header
    cases.push_back({"short header", c, VLM_ERR_FORMAT, "bmp: file is truncated"});
    c = b;
    c[28] = 7; // 7 bits per pixel
    cases.push_back({"bad depth", c, VLM_ERR_FORMAT, "bmp: corrupt file (the decoder failed"});
    c = b;
    PutLe32(c, 18, 100000);
    PutLe32(c, 22, 100000);
    cases.push_back({"huge", c, VLM_ERR_LIMIT, "bmp: image is 100000x100000 = 10000000000 pixels"});
    c = b;
    PutLe32(c, 18, 0);
    cases.push_back({"zero width", c, VLM_ERR_FORMAT, "bmp: invalid image size 0x21"});
    ExpectAll(cases);
}

TEST(MediaImageBroken, Tiff)
{
    std::vector<uint8_t> t = Read(kMore + "tiff_rgb.tif");
    std::vector<Broken> cases;
    cases.push_back({"truncated strips", Cut(t, t.size() - 100), VLM_ERR_FORMAT, "tiff: file is truncated"});
    cases.push_back({"only the header", Cut(t, 8), VLM_ERR_FORMAT, "tiff: file is truncated (first IFD at"});
    std::vector<uint8_t> c = t;
    PutLe32(c, 4, 0x7FFFFFF0);
    cases.push_back({"IFD past the end", c, VLM_ERR_FORMAT, "tiff: file is truncated (first IFD at 2147483632)"});
    c = t;
    c[2] = 43; // BigTIFF
    cases.push_back({"BigTIFF", c, VLM_ERR_UNSUPPORTED, "BigTIFF"});
    c = t;
    SetTiffTag(c, 259, 9999); // unknown compression
    cases.push_back({"unknown compression", c, VLM_ERR_FORMAT, "tiff: corrupt file (the decoder failed"});
    c = t;
    SetTiffTag(c, 256, 100000);
    SetTiffTag(c, 257, 100000);
    cases.push_back({"huge", c, VLM_ERR_LIMIT, "tiff: image is 100000x100000"});
    ExpectAll(cases);
}

TEST(MediaImageBroken, Avif)
{
    std::vector<uint8_t> a = Read(kMore + "avif_yuv420.avif");
    std::vector<Broken> cases;
    cases.push_back({"truncated mdat", Cut(a, a.size() - 1), VLM_ERR_FORMAT, "avif: file is truncated (box 'mdat'"});
    cases.push_back({"truncated ftyp", Cut(a, 20), VLM_ERR_FORMAT, "avif: file is truncated (box 'ftyp'"});
    std::vector<uint8_t> c = a;
    size_t meta = Find(c, "meta");
    ASSERT_NE(meta, std::string::npos);
    std::memcpy(&c[meta], "mexa", 4);
    cases.push_back({"no meta box", c, VLM_ERR_FORMAT, "avif: no item properties"});
    c = a;
    size_t ispe = Find(c, "ispe");
    ASSERT_NE(ispe, std::string::npos);
    PutBe32(c, ispe + 8, 100000);
    PutBe32(c, ispe + 12, 100000);
    cases.push_back({"huge", c, VLM_ERR_LIMIT, "avif: image is 100000x100000"});
    c = a;
    PutBe32(c, meta - 4, 3);
    cases.push_back({"box size 3", c, VLM_ERR_FORMAT, "avif: corrupt box size 3"});
    ExpectAll(cases);
}

TEST(MediaImageBroken, ZeroBytesAndWrongMagicForEveryFormat)
{
    for (const char *f : {"webp_lossy.webp", "gif_basic.gif", "bmp_rgb24.bmp", "tiff_rgb.tif", "avif_yuv420.avif"}) {
        SCOPED_TRACE(f);
        std::vector<uint8_t> b = Read(kMore + f);
        vlm_image img;
        EXPECT_EQ(vlm_image_decode_memory(b.data(), 0, nullptr, &img), VLM_ERR_FORMAT);
        EXPECT_TRUE(ErrorHas("empty")) << vlm_last_error();
        b[0] ^= 0x20; // R->r, G->g, B->b, I->i, and the AVIF box size
        if (b[4] == 'f') b[5] ^= 0x20; // AVIF: 'ftyp' -> 'fTyp'
        EXPECT_EQ(Decode(b, &img), VLM_ERR_UNSUPPORTED);
        EXPECT_TRUE(ErrorHas("unsupported image format")) << vlm_last_error();
    }
}

TEST(MediaImageBroken, BombsAreRefusedFromTheHeaderAndQuickly)
{
    // A 10000 x 10000 GIF screen in a 40-byte file (100 MP > 50 MP): refused from the
    // header without running the decoder.
    std::vector<uint8_t> g = Read(kMore + "gif_basic.gif");
    g[6] = 0x10, g[7] = 0x27, g[8] = 0x10, g[9] = 0x27;
    auto t0 = std::chrono::steady_clock::now();
    vlm_image img;
    EXPECT_EQ(Decode(g, &img), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("10000x10000 = 100000000 pixels")) << vlm_last_error();
    // Within a raised pixel limit, the decoded-bytes budget still refuses it:
    // 1e8 pixels x (4 bytes of BGRA + 3 of RGB) = 700 MB > 500 MB.
    vlm_image_limits lim = {200000000, 500000000};
    EXPECT_EQ(Decode(g, &img, &lim), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("decoding needs 700000000 bytes, more than the decoded-bytes limit of 500000000"))
        << vlm_last_error();
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_LT(ms, 500.0);
}

TEST(MediaImageBroken, DecodedBytesBudgetCoversEveryFormat)
{
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    EXPECT_EQ(lim.max_decoded_bytes, VLM_IMAGE_DEFAULT_MAX_DECODED_BYTES);
    // 39 x 21 RGB alone is 2457 bytes.
    lim.max_decoded_bytes = 2000;
    for (const char *f : {"webp_lossy.webp", "gif_basic.gif", "bmp_rgb24.bmp", "tiff_rgb.tif", "avif_yuv420.avif"}) {
        SCOPED_TRACE(f);
        std::vector<uint8_t> b = Read(kMore + f);
        vlm_image img;
        EXPECT_EQ(Decode(b, &img, &lim), VLM_ERR_LIMIT);
        EXPECT_TRUE(ErrorHas("more than the decoded-bytes limit of 2000")) << vlm_last_error();
    }
    // PNG and JPEG obey it too (their RGB output).
    std::vector<uint8_t> png = Read(std::string(VLM_TEST_DATA) + "/image/rgb8.png"); // 13 x 7 x 3 = 273
    vlm_image img;
    lim.max_decoded_bytes = 272;
    EXPECT_EQ(Decode(png, &img, &lim), VLM_ERR_LIMIT);
    lim.max_decoded_bytes = 273;
    ASSERT_EQ(Decode(png, &img, &lim), VLM_OK);
    vlm_image_free(&img);
    // 0 means the default, so old code that only sets max_pixels keeps working.
    vlm_image_limits old = {50000000, 0};
    std::vector<uint8_t> t = Read(kMore + "tiff_rgb16.tif");
    ASSERT_EQ(Decode(t, &img, &old), VLM_OK);
    vlm_image_free(&img);
}

} // namespace
