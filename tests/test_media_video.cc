// Video sampling (media/video.h) on small videos the test encodes itself (tests/video_util.h): each
// frame is flat grey at a level that encodes its index, so every sampled frame can be identified from
// its pixels, independently of the timestamps the library reports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>

#include "core/error.h"
#include "media/video.h"
}

#include "golden_util.h"
#include "video_util.h"

namespace {

bool ErrorHas(const char *needle) { return std::strstr(vlm_last_error(), needle) != nullptr; }

using namespace videotest;

struct Sampled {
    std::vector<double> pts;
    std::vector<int> index;
    vlm_video_stats stats;
};

Sampled Sample(vlm_video *v, const char *spec, bool pixels = true)
{
    Sampled r;
    vlm_video_sampling s;
    EXPECT_EQ(vlm_video_sampling_parse(spec, &s), VLM_OK) << vlm_last_error();
    EXPECT_EQ(vlm_video_start(v, &s), VLM_OK) << vlm_last_error();
    double pts;
    vlm_image img;
    int rc;
    while ((rc = vlm_video_next(v, pixels ? &img : nullptr, &pts)) == 1) {
        r.pts.push_back(pts);
        if (pixels) {
            r.index.push_back(FrameIndex(img));
            vlm_image_free(&img);
        }
    }
    EXPECT_EQ(rc, 0) << vlm_last_error();
    vlm_video_get_stats(v, &r.stats);
    return r;
}

std::vector<double> Seconds(std::initializer_list<double> l) { return std::vector<double>(l); }

void ExpectPts(const std::vector<double> &got, const std::vector<double> &want)
{
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
}

class MediaVideo : public ::testing::Test {
  protected:
    void TearDown() override
    {
        if (!getenv("VLM_KEEP")) for (auto &p : files_) unlink(p.c_str());
    }
    std::string Make(const VideoSpec &s, const std::string &name)
    {
        std::string p = WriteVideo(s, name);
        files_.push_back(p);
        return p;
    }
    std::vector<std::string> files_;
};

// ---------------------------------------------------------------------------

TEST_F(MediaVideo, InfoOfAnMp4)
{
    VideoSpec s;
    std::string p = Make(s, "info.mp4");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
    const vlm_video_info *in = vlm_video_get_info(v);
    EXPECT_NE(std::strstr(in->container, "mp4"), nullptr) << in->container;
    EXPECT_STREQ(in->codec, "mpeg4");
    EXPECT_EQ(in->width, 64);
    EXPECT_EQ(in->height, 48);
    EXPECT_EQ(in->rotation, 0);
    EXPECT_NEAR(in->duration, 3.0, 1e-6);
    EXPECT_NEAR(in->fps, 10.0, 1e-6);
    EXPECT_EQ(in->frames, 30);
    EXPECT_EQ(in->frames_estimated, 0);
    vlm_video_close(v);
}

TEST_F(MediaVideo, FpsEveryAndCountPickTheFrameOnScreen)
{
    VideoSpec s; // 30 frames at 10 fps: frame i shows from i/10 s
    std::string p = Make(s, "cfr.mp4");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();

    Sampled r = Sample(v, "fps=2");
    ExpectPts(r.pts, Seconds({0, 0.5, 1.0, 1.5, 2.0, 2.5}));
    EXPECT_EQ(r.index, std::vector<int>({0, 5, 10, 15, 20, 25}));

    r = Sample(v, "every=1.25s"); // 0, 1.25, 2.5 -> frames 0, 12 (on screen 1.2..1.3), 25
    ExpectPts(r.pts, Seconds({0, 1.2, 2.5}));
    EXPECT_EQ(r.index, std::vector<int>({0, 12, 25}));

    r = Sample(v, "n=3"); // centres of thirds: 0.5, 1.5, 2.5
    ExpectPts(r.pts, Seconds({0.5, 1.5, 2.5}));
    EXPECT_EQ(r.index, std::vector<int>({5, 15, 25}));

    // Faster than the video: each frame at most once.
    r = Sample(v, "fps=25");
    EXPECT_EQ(r.pts.size(), 30u);
    for (int i = 0; i < 30; i++) EXPECT_EQ(r.index[i], i);

    // Timestamps only (no pixels) give the same times.
    Sampled t = Sample(v, "n=3", false);
    ExpectPts(t.pts, Seconds({0.5, 1.5, 2.5}));
    vlm_video_close(v);
}

TEST_F(MediaVideo, SparseSamplingSeeksInsteadOfDecodingEverything)
{
    VideoSpec s;
    s.frames = 300; // 30 s, a keyframe every second
    std::string p = Make(s, "long.mp4");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
    Sampled r = Sample(v, "n=3"); // 5, 15, 25 s
    ExpectPts(r.pts, Seconds({5, 15, 25}));
    EXPECT_EQ(r.index, std::vector<int>({50, 150, 250}));
    EXPECT_EQ(r.stats.seeks, 3);
    EXPECT_LE(r.stats.decoded, 3 * 11); // from each keyframe to the frame after the target
    // Dense sampling does not seek.
    r = Sample(v, "fps=2");
    EXPECT_EQ(r.pts.size(), 60u);
    EXPECT_EQ(r.index[59], 295);
    vlm_video_get_stats(v, &r.stats);
    EXPECT_EQ(r.stats.seeks, 3); // unchanged
    vlm_video_close(v);
}

TEST_F(MediaVideo, VariableFrameRate)
{
    VideoSpec s;
    s.tb = AVRational{1, 1000};
    s.pts = {0, 100, 150, 400, 410, 1000, 1500, 1510, 1520, 2600};
    s.frames = int(s.pts.size());
    for (const char *fmt : {"mp4", "matroska"}) {
        SCOPED_TRACE(fmt);
        s.format = fmt;
        std::string p = Make(s, std::string("vfr.") + fmt);
        vlm_video *v = nullptr;
        ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
        // fps=4: t = 0, .25, .5, .75, 1, 1.25, 1.5, ..., on screen: f0, f2, f4, (f4), f5, (f5), f6, ...
        Sampled r = Sample(v, "fps=4");
        ASSERT_GE(r.pts.size(), 6u);
        ExpectPts(std::vector<double>(r.pts.begin(), r.pts.begin() + 5), Seconds({0, 0.15, 0.41, 1.0, 1.5}));
        EXPECT_EQ(std::vector<int>(r.index.begin(), r.index.begin() + 5), std::vector<int>({0, 2, 4, 5, 6}));
        // t = 1.75 .. 2.5 fall on f8 (1.52); 2.6 is the last frame.
        EXPECT_NEAR(r.pts[5], 1.52, 1e-6);
        EXPECT_EQ(r.index[5], 8);
        if (r.pts.size() > 6) {
            EXPECT_EQ(r.index[6], 9);
        }
        vlm_video_close(v);
    }
}

// A frame stamped 1e15 s in, in a stream that does not state its length, sampled at
// 5000 fps: 5e18 wanted times lie before it (fps=5 and a frame 1e18 s in, as the fuzzer
// made it, is the same walk). Found by fuzz_video as a hang: the wanted-time
// counter then crept up one at a time towards INT64_MAX. The pass must end after the
// frames before it.
TEST_F(MediaVideo, AbsurdTimestampEndsThePass)
{
    VideoSpec s;
    s.format = "matroska";
    s.mux_options = "live=1"; // no duration, no cues
    s.tb = AVRational{1, 1000};
    s.pts = {0, 1000, 2000, 3000};
    s.mux_pts = {0, 1000, 2000, int64_t(1e18)}; // the encoder itself refuses such a jump
    s.frames = int(s.pts.size());
    std::string p = Make(s, "absurd.mkv");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
    ASSERT_LT(vlm_video_get_info(v)->duration, 0); // unknown
    // 5000 fps is past what the spec parser takes (1000), not what the API takes.
    vlm_video_sampling fps{};
    fps.mode = VLM_VIDEO_FPS;
    fps.value = 5000;
    ASSERT_EQ(vlm_video_start(v, &fps), VLM_OK) << vlm_last_error();
    std::vector<int> index;
    vlm_image img;
    double pts;
    int rc;
    while ((rc = vlm_video_next(v, &img, &pts)) == 1) {
        index.push_back(FrameIndex(img));
        vlm_image_free(&img);
    }
    EXPECT_EQ(rc, 0) << vlm_last_error();
    EXPECT_EQ(index, std::vector<int>({0, 1, 2}));
    vlm_video_close(v);
}

TEST_F(MediaVideo, MissingTimestampsAreSynthesised)
{
    VideoSpec s;
    s.format = "m4v"; // a raw MPEG-4 elementary stream: no container timestamps at all
    s.frames = 20;
    std::string p = Make(s, "raw.m4v");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
    Sampled r = Sample(v, "fps=1000"); // every frame
    ASSERT_EQ(r.pts.size(), 20u);
    EXPECT_NEAR(r.pts[0], 0.0, 1e-9);
    for (int i = 0; i < 20; i++) EXPECT_EQ(r.index[i], i);
    double step = r.pts[1] - r.pts[0];
    EXPECT_GT(step, 0.0);
    for (int i = 1; i < 20; i++) EXPECT_NEAR(r.pts[i] - r.pts[i - 1], step, 1e-6) << i;
    // The length is read from the packets when the container does not say it.
    ASSERT_EQ(vlm_video_scan(v), VLM_OK);
    EXPECT_EQ(vlm_video_get_info(v)->frames, 20);
    r = Sample(v, "n=2");
    EXPECT_EQ(r.index, std::vector<int>({5, 15}));
    vlm_video_close(v);
}

TEST_F(MediaVideo, RotationIsApplied)
{
    VideoSpec s;
    s.frames = 3;
    s.paint = [](int, AVFrame *f) { // top-left quadrant white, the rest black
        for (int y = 0; y < f->height; y++)
            for (int x = 0; x < f->width; x++)
                f->data[0][y * f->linesize[0] + x] = (x < f->width / 2 && y < f->height / 2) ? 235 : 16;
        for (int p = 1; p < 3; p++)
            for (int y = 0; y < f->height / 2; y++) std::memset(f->data[p] + y * f->linesize[p], 128, f->width / 2);
    };
    struct {
        int rot;
        int w, h;
        bool tl, tr, bl, br; // which quadrant is white after rotation
    } cases[] = {
        {0, 64, 48, true, false, false, false},
        {90, 48, 64, false, true, false, false},  // clockwise: top-left -> top-right
        {180, 64, 48, false, false, false, true},
        {270, 48, 64, false, false, true, false},
    };
    for (auto &c : cases) {
        SCOPED_TRACE(c.rot);
        s.rotation = c.rot;
        std::string p = Make(s, "rot" + std::to_string(c.rot) + ".mp4");
        vlm_video *v = nullptr;
        ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
        const vlm_video_info *in = vlm_video_get_info(v);
        EXPECT_EQ(in->rotation, c.rot);
        EXPECT_EQ(in->width, c.w);
        EXPECT_EQ(in->height, c.h);
        EXPECT_EQ(in->coded_width, 64);
        vlm_video_sampling sm;
        ASSERT_EQ(vlm_video_sampling_parse("n=1", &sm), VLM_OK);
        ASSERT_EQ(vlm_video_start(v, &sm), VLM_OK);
        vlm_image img;
        double pts;
        ASSERT_EQ(vlm_video_next(v, &img, &pts), 1) << vlm_last_error();
        ASSERT_EQ(img.width, c.w);
        ASSERT_EQ(img.height, c.h);
        auto white = [&](int qx, int qy) {
            int x = qx * img.width / 2 + img.width / 4, y = qy * img.height / 2 + img.height / 4;
            return img.rgb[(size_t(y) * img.width + x) * 3] > 128;
        };
        EXPECT_EQ(white(0, 0), c.tl);
        EXPECT_EQ(white(1, 0), c.tr);
        EXPECT_EQ(white(0, 1), c.bl);
        EXPECT_EQ(white(1, 1), c.br);
        vlm_image_free(&img);
        vlm_video_close(v);
    }
}

TEST_F(MediaVideo, SceneChanges)
{
    VideoSpec s;
    s.frames = 30;
    s.paint = [](int i, AVFrame *f) { // cuts at frames 10 and 20, slow drift inside a scene
        int level = (i < 10 ? 60 : i < 20 ? 200 : 100) + (i % 10);
        for (int y = 0; y < f->height; y++) std::memset(f->data[0] + y * f->linesize[0], level, f->width);
        for (int p = 1; p < 3; p++)
            for (int y = 0; y < f->height / 2; y++) std::memset(f->data[p] + y * f->linesize[p], 128, f->width / 2);
    };
    std::string p = Make(s, "scene.mp4");
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_file(p.c_str(), nullptr, &v), VLM_OK) << vlm_last_error();
    Sampled r = Sample(v, "scene", false);
    ExpectPts(r.pts, Seconds({0, 1.0, 2.0}));
    r = Sample(v, "scene=0.9", false); // no cut is that strong: only the first frame
    ExpectPts(r.pts, Seconds({0}));
    vlm_video_close(v);
}

TEST_F(MediaVideo, LimitsAndMemoryInput)
{
    VideoSpec s;
    std::string p = Make(s, "mem.mp4");
    std::vector<uint8_t> bytes = ReadBytes(p);
    vlm_video_limits lim = {0, 4, 1};
    vlm_video *v = nullptr;
    ASSERT_EQ(vlm_video_open_memory(bytes.data(), bytes.size(), &lim, &v), VLM_OK) << vlm_last_error();
    Sampled r = Sample(v, "fps=10");
    EXPECT_EQ(r.index, std::vector<int>({0, 1, 2, 3})); // max_frames = 4
    vlm_video_close(v);
    // 64 x 48 = 3072 pixels: a budget of 3000 refuses it at open, from the bitstream header
    // (MPEG-4 part 2 in MP4 carries its size in the VOL header; no frame is decoded).
    lim.max_pixels = 3000;
    EXPECT_EQ(vlm_video_open_memory(bytes.data(), bytes.size(), &lim, &v), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("64x48 = 3072 pixels")) << vlm_last_error();
    EXPECT_EQ(v, nullptr);
}

TEST_F(MediaVideo, BrokenInputs)
{
    VideoSpec s;
    std::string p = Make(s, "broken.mp4");
    std::vector<uint8_t> good = ReadBytes(p);
    vlm_video *v = nullptr;
    uint8_t zero = 0;
    EXPECT_EQ(vlm_video_open_memory(&zero, 0, nullptr, &v), VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("empty")) << vlm_last_error();
    EXPECT_EQ(vlm_video_open_file("/nonexistent/v.mp4", nullptr, &v), VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("/nonexistent/v.mp4")) << vlm_last_error();

    std::string text = "this is not a video at all, just some words in a file.\n";
    EXPECT_EQ(vlm_video_open_memory(text.data(), text.size(), nullptr, &v), VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(ErrorHas("not a supported video container")) << vlm_last_error();

    // A playlist is not opened (its demuxer is not on the list), so nothing it names is read.
    std::string m3u8 = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n";
    EXPECT_NE(vlm_video_open_memory(m3u8.data(), m3u8.size(), nullptr, &v), VLM_OK);
    EXPECT_EQ(v, nullptr);

    // Huge frame size in the stream header (a YUV4MPEG2 stream claiming 10000 x 8000 with
    // one tiny frame): refused before any decoder runs.
    std::string y4m = "YUV4MPEG2 W10000 H8000 F10:1 Ip A1:1 C420jpeg\nFRAME\n" + std::string(64, 'x');
    EXPECT_EQ(vlm_video_open_memory(y4m.data(), y4m.size(), nullptr, &v), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("video is 10000x8000 = 80000000 pixels per frame")) << vlm_last_error();

    // Truncated: whatever opens must end cleanly, with an error or fewer frames, never a crash.
    for (size_t cut : {good.size() / 3, good.size() / 2, good.size() - 10}) {
        SCOPED_TRACE(cut);
        if (vlm_video_open_memory(good.data(), cut, nullptr, &v) != VLM_OK) continue;
        vlm_video_sampling sm;
        ASSERT_EQ(vlm_video_sampling_parse("fps=10", &sm), VLM_OK);
        ASSERT_EQ(vlm_video_start(v, &sm), VLM_OK);
        vlm_image img;
        double pts;
        int n = 0, rc;
        while ((rc = vlm_video_next(v, &img, &pts)) == 1) {
            vlm_image_free(&img);
            n++;
        }
        EXPECT_LE(n, 30);
        vlm_video_close(v);
    }
}

TEST(MediaVideoSpec, Parse)
{
    vlm_video_sampling s;
    ASSERT_EQ(vlm_video_sampling_parse("fps=2.5", &s), VLM_OK);
    EXPECT_EQ(s.mode, VLM_VIDEO_FPS);
    EXPECT_DOUBLE_EQ(s.value, 2.5);
    ASSERT_EQ(vlm_video_sampling_parse("every=3s", &s), VLM_OK);
    EXPECT_EQ(s.mode, VLM_VIDEO_EVERY);
    EXPECT_DOUBLE_EQ(s.value, 3.0);
    ASSERT_EQ(vlm_video_sampling_parse("n=16", &s), VLM_OK);
    EXPECT_EQ(s.mode, VLM_VIDEO_COUNT);
    EXPECT_EQ(s.count, 16);
    ASSERT_EQ(vlm_video_sampling_parse("scene", &s), VLM_OK);
    EXPECT_EQ(s.mode, VLM_VIDEO_SCENE);
    EXPECT_DOUBLE_EQ(s.value, VLM_VIDEO_DEFAULT_SCENE_THRESHOLD);
    for (const char *bad : {"", "fps=0", "fps=-1", "fps=abc", "every=0", "n=0", "n=1.5", "n=", "scene=2", "frames=3",
                            "fps=nan", "every=1m"}) {
        SCOPED_TRACE(bad);
        EXPECT_EQ(vlm_video_sampling_parse(bad, &s), VLM_ERR_INVALID);
        EXPECT_TRUE(ErrorHas("frames:")) << vlm_last_error();
    }
}

// `vlm media` on a video: the facts, the sampled timestamps, a dump, and one-line errors.
TEST_F(MediaVideo, CliPrintsWhatItSees)
{
    VideoSpec s;
    std::string p = Make(s, "cli.mp4");
    std::string out = TmpPath("cli.out"), err = TmpPath("cli.err"), png = TmpPath("cli.png");
    files_.insert(files_.end(), {out, err, png});
    auto run = [&](const std::string &args) {
        std::string cmd = golden::vlm_bin() + " media " + args + " > " + out + " 2> " + err;
        int st = std::system(cmd.c_str());
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    };
    auto slurp = [](const std::string &f) {
        std::ifstream in(f);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    };
    ASSERT_EQ(run(p + " --frames n=3 --dump " + png), 0) << slurp(err);
    std::string o = slurp(out);
    EXPECT_NE(o.find("kind: video"), std::string::npos) << o;
    EXPECT_NE(o.find("codec: mpeg4"), std::string::npos) << o;
    EXPECT_NE(o.find("size: 64x48"), std::string::npos) << o;
    EXPECT_NE(o.find("duration: 3.000 s"), std::string::npos) << o;
    EXPECT_NE(o.find("frame rate: 10.000 fps"), std::string::npos) << o;
    EXPECT_NE(o.find("frames: 30"), std::string::npos) << o;
    EXPECT_NE(o.find("  0.500\n  1.500\n  2.500\n"), std::string::npos) << o;
    EXPECT_EQ(slurp(err), "");
    vlm_image img;
    ASSERT_EQ(vlm_image_decode_file(png.c_str(), nullptr, &img), VLM_OK) << vlm_last_error();
    EXPECT_EQ(img.width, 64);
    EXPECT_EQ(FrameIndex(img), 5);
    vlm_image_free(&img);

    EXPECT_EQ(run(p + " --frames fps=0"), 1);
    std::string e = slurp(err);
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    EXPECT_EQ(e.rfind("vlm media: ", 0), 0u) << e;
    EXPECT_EQ(run("/nonexistent/x.mp4"), 1);
    e = slurp(err);
    EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
    EXPECT_NE(e.find("/nonexistent/x.mp4"), std::string::npos) << e;
    EXPECT_EQ(run("--bogus " + p), 2);
}

} // namespace
