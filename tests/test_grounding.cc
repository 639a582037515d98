// Grounding output: the <|ref|>/<|det|> parser and the grid -> pixel rule
// (text/grounding.h), the drawing of labelled boxes with the built-in font
// (media/draw.h), the PNG writer (media/image_write.h), and stop strings over
// streamed text (text/stop_text.h). Expected values are worked out by hand in
// the comments.
#include <gtest/gtest.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" {
#include "core/error.h"
#include "media/draw.h"
#include "media/image.h"
#include "media/image_write.h"
#include "text/grounding.h"
#include "text/stop_text.h"
}

namespace {

struct Parsed {
    std::vector<std::string> labels;
    std::vector<std::vector<double>> grids;
};

Parsed parse(const std::string &s)
{
    vlm_grounding g;
    EXPECT_EQ(vlm_grounding_parse(s.data(), s.size(), &g), VLM_OK);
    Parsed p;
    for (int i = 0; i < g.n_boxes; i++) {
        p.labels.push_back(g.boxes[i].label);
        p.grids.push_back(std::vector<double>(g.boxes[i].grid, g.boxes[i].grid + 4));
    }
    vlm_grounding_free(&g);
    return p;
}

using Grid = std::vector<double>;

}  // namespace

// ---------------------------------------------------------------- parsing

TEST(GroundingParse, OneReferenceOneBox)
{
    Parsed p = parse("<|ref|>The giraffe at the back<|/ref|><|det|>[[580, 270, 999, 900]]<|/det|>");
    ASSERT_EQ(p.labels.size(), 1u);
    EXPECT_EQ(p.labels[0], "The giraffe at the back");
    EXPECT_EQ(p.grids[0], (Grid{580, 270, 999, 900}));
}

TEST(GroundingParse, SeveralReferencesAndBoxesInOrder)
{
    // A grounded caption: text between the tags, two boxes for the second label.
    Parsed p = parse("A <|ref|>cat<|/ref|><|det|>[[1,2,3,4]]<|/det|> sits next to two "
                     "<|ref|>dogs<|/ref|><|det|>[[10, 20, 30, 40], [50,60,70,80]]<|/det|>.");
    ASSERT_EQ(p.labels.size(), 3u);
    EXPECT_EQ(p.labels, (std::vector<std::string>{"cat", "dogs", "dogs"}));
    EXPECT_EQ(p.grids[0], (Grid{1, 2, 3, 4}));
    EXPECT_EQ(p.grids[1], (Grid{10, 20, 30, 40}));
    EXPECT_EQ(p.grids[2], (Grid{50, 60, 70, 80}));
}

TEST(GroundingParse, LabelsBelongToOneDetBlock)
{
    // A det without a ref before it gets ""; a ref is used by the next det only;
    // with two refs before a det the later one names it.
    Parsed p = parse("<|det|>[[0,0,999,999]]<|/det|><|ref|>a<|/ref|><|det|>[[1,1,2,2]]<|/det|>"
                     "<|det|>[[3,3,4,4]]<|/det|><|ref|>b<|/ref|><|ref|>c<|/ref|><|det|>[[5,5,6,6]]<|/det|>");
    EXPECT_EQ(p.labels, (std::vector<std::string>{"", "a", "", "c"}));
    EXPECT_EQ(p.grids[3], (Grid{5, 5, 6, 6}));
}

TEST(GroundingParse, OnlyWellFormedBoxesCount)
{
    // three numbers, five numbers, words: skipped; an extra bracket level: the inner one counts;
    // signed, fractional and exponent numbers as Python's eval reads them.
    Parsed p = parse("<|ref|>x<|/ref|><|det|>[[1,2,3],[1,2,3,4,5],[a,b,c,d],[[9,9,9,9]],[ 1.5 , -2,3e2, 4. ],"
                     "[1,2,3,inf],[1,,2,3]]<|/det|>");
    ASSERT_EQ(p.grids.size(), 2u);
    EXPECT_EQ(p.grids[0], (Grid{9, 9, 9, 9}));
    EXPECT_EQ(p.grids[1], (Grid{1.5, -2, 300, 4}));
    EXPECT_EQ(p.labels[1], "x");
}

TEST(GroundingParse, UnterminatedTagsAndPlainTextGiveNothing)
{
    for (const char *s : {"", "no tags at all [[1,2,3,4]]", "<|det|>[[1,2,3,4]]", "<|ref|>a<|/ref|><|det|>[[1,2,3,4]]",
                          "<|ref|>a<|det|>[[1,2,3,4]]<|/det|>"}) {
        Parsed p = parse(s);
        EXPECT_TRUE(p.grids.empty()) << s;
    }
    // a box before the unterminated part still counts
    Parsed p = parse("<|det|>[[1,2,3,4]]<|/det|><|ref|>dangling");
    EXPECT_EQ(p.grids.size(), 1u);
    vlm_grounding g;
    EXPECT_EQ(vlm_grounding_parse(nullptr, 0, &g), VLM_OK);
    EXPECT_EQ(g.n_boxes, 0);
    vlm_grounding_free(&g);
}

TEST(GroundingParse, LabelsKeepUtf8AndStopAtTheirTag)
{
    Parsed p = parse("<|ref|>长颈鹿 🦒<|/ref|><|det|>[[1,2,3,4]]<|/det|>");
    ASSERT_EQ(p.labels.size(), 1u);
    EXPECT_EQ(p.labels[0], "长颈鹿 🦒");
    // not NUL-terminated input: only len bytes are read
    std::string s = "<|det|>[[1,2,3,4]]<|/det|>";
    vlm_grounding g;
    ASSERT_EQ(vlm_grounding_parse(s.data(), s.size() - 1, &g), VLM_OK);
    EXPECT_EQ(g.n_boxes, 0);
    vlm_grounding_free(&g);
}

// ---------------------------------------------------------------- grid -> pixels

TEST(GroundingPixels, TruncatesLikeTheOfficialCode)
{
    int px[4];
    // 640x480: 580/999*640 = 371.57 -> 371 (not rounded to 372); 270/999*480 = 129.73 -> 129;
    // 999 -> 640 exactly; 900/999*480 = 432.43 -> 432.
    double g1[4] = {580, 270, 999, 900};
    vlm_grounding_to_pixels(g1, 640, 480, px);
    EXPECT_EQ(std::vector<int>(px, px + 4), (std::vector<int>{371, 129, 640, 432}));
    // int() truncates toward zero: -1/999*640 = -0.64 -> 0; -500/999*100 = -50.05 -> -50.
    double g2[4] = {-1, -500, 0, 1.5};
    vlm_grounding_to_pixels(g2, 640, 100, px);
    EXPECT_EQ(std::vector<int>(px, px + 4), (std::vector<int>{0, -50, 0, 0}));
    // x uses the width, y the height (a 1000x300 image): 500/999*1000 = 500.5 -> 500, 500/999*300 = 150.15 -> 150.
    double g3[4] = {500, 500, 500, 500};
    vlm_grounding_to_pixels(g3, 1000, 300, px);
    EXPECT_EQ(std::vector<int>(px, px + 4), (std::vector<int>{500, 150, 500, 150}));
    double g4[4] = {1e300, -1e300, 0, 0};
    vlm_grounding_to_pixels(g4, 640, 480, px);
    EXPECT_EQ(px[0], 1 << 30);
    EXPECT_EQ(px[1], -(1 << 30));
}

// ---------------------------------------------------------------- drawing

namespace {

struct Img {
    vlm_image im;
    Img(int w, int h, uint8_t fill) {
        im.width = w;
        im.height = h;
        im.rgb = (uint8_t *)malloc((size_t)w * h * 3);
        memset(im.rgb, fill, (size_t)w * h * 3);
    }
    ~Img() { free(im.rgb); }
    const uint8_t *at(int x, int y) const { return im.rgb + ((size_t)y * im.width + x) * 3; }
    bool is(int x, int y, vlm_rgb c) const {
        const uint8_t *p = at(x, y);
        return p[0] == c.r && p[1] == c.g && p[2] == c.b;
    }
};

const vlm_rgb kRed = {255, 0, 0}, kBlack = {0, 0, 0}, kWhite = {255, 255, 255};

// Every pixel must be `c` where inside(x, y) holds, and untouched (all bytes `bg`) elsewhere.
template <class F>
void expect_mask(const Img &img, vlm_rgb c, uint8_t bg, F inside)
{
    int bad = 0;
    for (int y = 0; y < img.im.height; y++)
        for (int x = 0; x < img.im.width; x++) {
            bool want = inside(x, y);
            const uint8_t *p = img.at(x, y);
            bool ok = want ? img.is(x, y, c) : (p[0] == bg && p[1] == bg && p[2] == bg);
            if (!ok && ++bad <= 5) ADD_FAILURE() << "pixel " << x << "," << y << " want " << (want ? "drawn" : "background");
        }
}

}  // namespace

TEST(Draw, RectangleOutlineIsDrawnInward)
{
    Img img(20, 12, 0);
    vlm_draw_rect(&img.im, 9, 7, 2, 3, 2, kRed);  // corners in either order
    // PIL's rectangle(width=2): pixels of [2..9]x[3..7] within 2 of an edge.
    expect_mask(img, kRed, 0, [](int x, int y) {
        return x >= 2 && x <= 9 && y >= 3 && y <= 7 && (x < 4 || x > 7 || y < 5 || y > 5);
    });
}

TEST(Draw, ClippedAndThickOutlines)
{
    Img a(10, 10, 0);
    vlm_draw_rect(&a.im, -5, -5, 4, 100, 1, kRed);  // only the right edge x = 4 and nothing else is inside
    expect_mask(a, kRed, 0, [](int x, int) { return x == 4; });
    Img b(10, 10, 0);
    vlm_draw_rect(&b.im, INT_MIN, INT_MIN, INT_MAX, INT_MAX, 3, kRed);  // edges all outside: nothing
    expect_mask(b, kRed, 0, [](int, int) { return false; });
    Img c(10, 10, 0);
    vlm_draw_rect(&c.im, 1, 1, 5, 4, 2, kRed);  // 2 * width >= height (4): filled
    expect_mask(c, kRed, 0, [](int x, int y) { return x >= 1 && x <= 5 && y >= 1 && y <= 4; });
    Img d(10, 10, 0);
    vlm_draw_rect(&d.im, 1, 1, 5, 4, 0, kRed);  // no width: nothing
    vlm_draw_fill(&d.im, 3, 3, 3, 3, kRed);
    expect_mask(d, kRed, 0, [](int x, int y) { return x == 3 && y == 3; });
}

TEST(Draw, FontHasADistinctGlyphPerPrintableCharacter)
{
    std::set<std::vector<uint8_t>> seen;
    for (uint32_t c = 0x20; c <= 0x7e; c++) {
        const uint8_t *g = vlm_font_glyph(c);
        std::vector<uint8_t> rows(g, g + VLM_FONT_H);
        int bits = 0;
        for (uint8_t r : rows) {
            EXPECT_EQ(r & ~0x1f, 0) << "glyph " << (char)c << " wider than 5";
            bits += __builtin_popcount(r);
        }
        EXPECT_EQ(bits == 0, c == ' ') << (char)c;
        EXPECT_TRUE(seen.insert(rows).second) << "glyph " << (char)c << " repeats another";
    }
    // Everything else is one hollow box, unlike any ASCII glyph.
    const uint8_t *box = vlm_font_glyph(0x4e2d);
    EXPECT_EQ(vlm_font_glyph(0x7f), box);
    EXPECT_EQ(vlm_font_glyph(0x1f600), box);
    EXPECT_EQ(vlm_font_glyph(0x1f), box);
    EXPECT_TRUE(seen.insert(std::vector<uint8_t>(box, box + VLM_FONT_H)).second);
    EXPECT_EQ(box[0], 0x1f);
    EXPECT_EQ(box[3], 0x11);
    // '-' is one full row in the middle.
    const uint8_t *minus = vlm_font_glyph('-');
    EXPECT_EQ(std::vector<uint8_t>(minus, minus + 7), (std::vector<uint8_t>{0, 0, 0, 0x1f, 0, 0, 0}));
}

TEST(Draw, TextSizeAndPixels)
{
    EXPECT_EQ(vlm_draw_text_width("", 1), 0);
    EXPECT_EQ(vlm_draw_text_width("ab", 1), 11);           // 2 * 6 - 1
    EXPECT_EQ(vlm_draw_text_width("ab", 3), 33);
    EXPECT_EQ(vlm_draw_text_width("\xe4\xb8\xad" "a", 1), 11);  // one glyph per character
    EXPECT_EQ(vlm_draw_text_width("\xff\xc3", 1), 11);     // one per invalid byte
    EXPECT_EQ(vlm_draw_text_height(2), 14);
    EXPECT_EQ(vlm_draw_text_width("ab", 0), 0);
    // "-" at scale 2 from (1, 1): glyph row 3 -> image rows 7..8, columns 1..10.
    Img img(14, 16, 255);
    vlm_draw_text(&img.im, 1, 1, "-", 2, kBlack);
    expect_mask(img, kBlack, 255, [](int x, int y) { return y >= 7 && y <= 8 && x >= 1 && x <= 10; });
    // Two glyphs: the second starts 6 pixels to the right; partly outside on the left.
    Img two(12, 9, 255);
    vlm_draw_text(&two.im, -6, 0, "-.", 1, kBlack);
    // '.' = rows 5-6, columns 1-2 of its cell (cell at x = 0).
    expect_mask(two, kBlack, 255, [](int x, int y) { return (y == 5 || y == 6) && (x == 1 || x == 2); });
}

TEST(Draw, LabelledBoxHasOutlineAndTag)
{
    Img img(100, 80, 128);
    vlm_rgb c = vlm_draw_palette(0);  // (230, 25, 75): luma 91 < 140, so white text
    vlm_draw_labeled_box(&img.im, 20, 30, 60, 70, "cat", c);
    // min(100, 80) = 80: font scale 1, outline 3 px; tag 3*6-1 + 2*2 = 21 wide, 7 + 4 = 11 high,
    // at x 20..40, y 19..29, text from (22, 21).
    int white = 0, box = 0, other = 0;
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 100; x++) {
            bool in_outline = x >= 20 && x <= 60 && y >= 30 && y <= 70 && (x < 23 || x > 57 || y < 33 || y > 67);
            bool in_tag = x >= 20 && x <= 40 && y >= 19 && y <= 29;
            if (in_tag && img.is(x, y, kWhite)) {
                white++;
                EXPECT_TRUE(x >= 22 && x < 22 + 17 && y >= 21 && y < 28) << x << "," << y;
            } else if (in_outline || in_tag) {
                box += img.is(x, y, c);
            } else {
                other += !(img.at(x, y)[0] == 128 && img.at(x, y)[1] == 128 && img.at(x, y)[2] == 128);
            }
        }
    int bits = 0;
    for (char ch : std::string("cat"))
        for (int r = 0; r < 7; r++) bits += __builtin_popcount(vlm_font_glyph((uint8_t)ch)[r]);
    EXPECT_EQ(white, bits);
    EXPECT_EQ(box, (41 * 41 - 35 * 35) + 21 * 11 - bits);
    EXPECT_EQ(other, 0);
    // No room above: the tag goes inside the box, at its top edge; a light colour gets black text.
    Img top(60, 40, 0);
    vlm_rgb yellow = vlm_draw_palette(3);
    vlm_draw_labeled_box(&top.im, 5, 0, 50, 30, "A", yellow);
    EXPECT_TRUE(top.is(5 + 2 + 2, 0 + 2, kBlack));  // 'A' row 0 is .###. -> pixel (x+2, y)
    EXPECT_TRUE(top.is(5, 10, yellow));             // tag (11 high) covers rows 0..10
    EXPECT_TRUE(top.is(7, 20, yellow));             // the outline's left edge
}

// ---------------------------------------------------------------- PNG writer

TEST(PngWrite, RoundTripsThroughTheDecoder)
{
    Img img(37, 23, 0);
    uint32_t seed = 99;
    for (size_t i = 0; i < (size_t)37 * 23 * 3; i++) img.im.rgb[i] = (uint8_t)((seed = seed * 1664525u + 1013904223u) >> 24);
    void *data = nullptr;
    size_t size = 0;
    ASSERT_EQ(vlm_image_encode_png(&img.im, &data, &size), VLM_OK) << vlm_last_error();
    ASSERT_GT(size, 8u);
    EXPECT_EQ(memcmp(data, "\x89PNG\r\n\x1a\n", 8), 0);
    // chunks: IHDR (8-bit RGB), sRGB, IDAT..., IEND and nothing else
    const uint8_t *p = (const uint8_t *)data;
    std::vector<std::string> chunks;
    for (size_t off = 8; off + 8 <= size;) {
        uint32_t len = (uint32_t)p[off] << 24 | p[off + 1] << 16 | p[off + 2] << 8 | p[off + 3];
        chunks.push_back(std::string((const char *)p + off + 4, 4));
        if (chunks.size() == 1) {
            EXPECT_EQ(p[off + 8 + 8], 8);  // bit depth
            EXPECT_EQ(p[off + 8 + 9], 2);  // colour type RGB
        }
        off += 12 + (size_t)len;
    }
    ASSERT_GE(chunks.size(), 4u);
    EXPECT_EQ(chunks[0], "IHDR");
    EXPECT_EQ(chunks[1], "sRGB");
    EXPECT_EQ(chunks.back(), "IEND");
    for (size_t i = 2; i + 1 < chunks.size(); i++) EXPECT_EQ(chunks[i], "IDAT");
    vlm_image back;
    ASSERT_EQ(vlm_image_decode_memory(data, size, nullptr, &back), VLM_OK) << vlm_last_error();
    EXPECT_EQ(back.width, 37);
    EXPECT_EQ(back.height, 23);
    EXPECT_EQ(memcmp(back.rgb, img.im.rgb, (size_t)37 * 23 * 3), 0);
    vlm_image_free(&back);
    free(data);

    std::string path = "/tmp/vlm_test_pngwrite_" + std::to_string(getpid()) + ".png";
    ASSERT_EQ(vlm_image_write_png(path.c_str(), &img.im), VLM_OK) << vlm_last_error();
    ASSERT_EQ(vlm_image_decode_file(path.c_str(), nullptr, &back), VLM_OK) << vlm_last_error();
    EXPECT_EQ(memcmp(back.rgb, img.im.rgb, (size_t)37 * 23 * 3), 0);
    vlm_image_free(&back);
    remove(path.c_str());
}

TEST(PngWrite, ErrorsNameTheProblem)
{
    Img img(4, 4, 7);
    EXPECT_EQ(vlm_image_write_png("/nonexistent-dir/out.png", &img.im), VLM_ERR_IO);
    EXPECT_NE(std::string(vlm_last_error()).find("/nonexistent-dir/out.png"), std::string::npos) << vlm_last_error();
    vlm_image empty = {0, 0, nullptr};
    void *data = (void *)1;
    size_t size = 5;
    EXPECT_EQ(vlm_image_encode_png(&empty, &data, &size), VLM_ERR_INVALID);
    EXPECT_EQ(data, nullptr);
    EXPECT_EQ(size, 0u);
}

// ---------------------------------------------------------------- stop strings

namespace {

struct Stop {
    vlm_stop_text *s = nullptr;
    std::string shown;
    explicit Stop(std::vector<const char *> stops) {
        EXPECT_EQ(vlm_stop_text_new(stops.data(), (int)stops.size(), &s), VLM_OK);
    }
    ~Stop() { vlm_stop_text_free(s); }
    // returns what this push showed; *hit: the push found a stop string
    std::string push(const std::string &t, int visible = 1, int *hit = nullptr) {
        const char *out;
        size_t n;
        int r = vlm_stop_text_push(s, t.data(), t.size(), visible, &out, &n);
        EXPECT_GE(r, 0);
        if (hit) *hit = r;
        shown.append(out, n);
        return std::string(out, n);
    }
    std::string finish() {
        const char *out;
        size_t n;
        vlm_stop_text_finish(s, &out, &n);
        shown.append(out, n);
        return std::string(out, n);
    }
    std::string text(int visible_only) { return vlm_stop_text_get(s, visible_only, nullptr); }
};

}  // namespace

TEST(StopText, WithoutStopsEverythingPassesAtOnce)
{
    Stop st({});
    EXPECT_EQ(st.push("Hello"), "Hello");
    EXPECT_EQ(st.push("<|ref|>", 0), "");
    EXPECT_EQ(st.push(" world"), " world");
    EXPECT_EQ(st.finish(), "");
    EXPECT_EQ(st.text(0), "Hello<|ref|> world");
    EXPECT_EQ(st.text(1), "Hello world");
}

TEST(StopText, CutsAtAStopStringSpanningPieces)
{
    Stop st({"o W"});
    int hit;
    EXPECT_EQ(st.push("Hel", 1, &hit), "Hel");
    EXPECT_EQ(hit, 0);
    EXPECT_EQ(st.push("lo Wo", 1, &hit), "l");  // "Hello Wo" holds "o W" at 4: the answer is "Hell"
    EXPECT_EQ(hit, 1);
    EXPECT_TRUE(vlm_stop_text_stopped(st.s));
    EXPECT_EQ(st.push("rld", 1, &hit), "");
    EXPECT_EQ(hit, 1);
    EXPECT_EQ(st.finish(), "");
    EXPECT_EQ(st.shown, "Hell");
    EXPECT_EQ(st.text(0), "Hell");
    vlm_stop_text_reset(st.s);  // next answer
    EXPECT_FALSE(vlm_stop_text_stopped(st.s));
    EXPECT_EQ(st.push("xyz"), "xyz");
}

TEST(StopText, HoldsBackWhatMayStartAStopString)
{
    Stop st({"END"});
    EXPECT_EQ(st.push("abcE"), "abc");  // "E" may begin "END"
    EXPECT_EQ(st.push("x"), "Ex");      // it did not
    EXPECT_EQ(st.push("EN"), "");       // "EN" held
    EXPECT_EQ(st.finish(), "EN");       // the answer ended first: nothing was a stop
    EXPECT_EQ(st.shown, "abcExEN");
    EXPECT_FALSE(vlm_stop_text_stopped(st.s));
}

// Stop strings match the text the user sees: a hidden special token's text never matches one.
TEST(StopText, HiddenSpecialTokensNeverMatch)
{
    Stop st({"<|/ref|>", "|>"});
    int hit;
    EXPECT_EQ(st.push("<|ref|>", 0, &hit), "");
    EXPECT_EQ(hit, 0);
    EXPECT_EQ(st.push("cat"), "cat");
    EXPECT_EQ(st.push("<|/ref|>", 0, &hit), "");
    EXPECT_EQ(hit, 0);
    EXPECT_FALSE(vlm_stop_text_stopped(st.s));
    EXPECT_EQ(st.push(" and"), " and");
    EXPECT_EQ(st.finish(), "");
    EXPECT_EQ(st.text(0), "<|ref|>cat<|/ref|> and");
    EXPECT_EQ(st.text(1), "cat and");
}

// Written out as visible text, the same characters do stop.
TEST(StopText, VisibleTextOfASpecialTokenStops)
{
    Stop st({"<|/det|>"});
    int hit;
    EXPECT_EQ(st.push("<|det|>", 0), "");
    EXPECT_EQ(st.push("a <|/de", 1, &hit), "a ");  // "<|/de" may begin the stop string
    EXPECT_EQ(st.push("t|> b", 1, &hit), "");
    EXPECT_EQ(hit, 1);
    EXPECT_EQ(st.shown, "a ");
    EXPECT_EQ(st.text(0), "<|det|>a ");
}

// A hidden piece between the visible bytes does not split a stop string.
TEST(StopText, StopStringSplitByAHiddenTokenStillStops)
{
    {
        Stop st({"Hello"});
        int hit;
        EXPECT_EQ(st.push("Hel", 1, &hit), "");  // may begin "Hello": held
        EXPECT_EQ(st.push("<|ref|>", 0, &hit), "");
        EXPECT_EQ(hit, 0);
        EXPECT_EQ(st.push("lo world", 1, &hit), "");
        EXPECT_EQ(hit, 1);
        EXPECT_EQ(st.finish(), "");
        EXPECT_EQ(st.shown, "");
        EXPECT_EQ(st.text(0), "");
        EXPECT_EQ(st.text(1), "");
    }
    {
        Stop st({"lo w"});
        int hit;
        EXPECT_EQ(st.push("Hel", 1, &hit), "He");  // "l" may begin "lo w": held
        EXPECT_EQ(st.push("<|ref|>", 0, &hit), "");
        EXPECT_EQ(st.push("l", 1, &hit), "l");  // the first "l" did not; the new one is held
        EXPECT_EQ(st.push("<|/ref|>", 0, &hit), "");
        EXPECT_EQ(st.push("o", 1, &hit), "");
        EXPECT_EQ(st.push("<|det|>", 0, &hit), "");
        EXPECT_EQ(st.push(" world", 1, &hit), "");
        EXPECT_EQ(hit, 1);
        EXPECT_EQ(st.shown, "Hel");
        EXPECT_EQ(st.text(1), "Hel");
        EXPECT_EQ(st.text(0), "Hel<|ref|>");  // cut before the stop string's first visible byte
    }
    {
        Stop st({"ab"});  // the held byte is released once the next visible byte settles it
        EXPECT_EQ(st.push("xa"), "x");
        EXPECT_EQ(st.push("<|ref|>", 0), "");
        EXPECT_EQ(st.push("c"), "ac");
        EXPECT_EQ(st.finish(), "");
        EXPECT_EQ(st.text(0), "xa<|ref|>c");
        EXPECT_EQ(st.text(1), "xac");
    }
}

TEST(StopText, EarliestStopWinsAndEmptyIsRefused)
{
    Stop st({"bc", "ab"});
    int hit;
    EXPECT_EQ(st.push("xabcd", 1, &hit), "x");
    EXPECT_EQ(hit, 1);
    vlm_stop_text *s = nullptr;
    const char *bad[] = {"ok", ""};
    EXPECT_EQ(vlm_stop_text_new(bad, 2, &s), VLM_ERR_INVALID);
    EXPECT_EQ(s, nullptr);
}
