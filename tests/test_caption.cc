// vlm caption's library part without a model: the segment plan, the SRT/VTT/JSONL writers, the journal,
// input discovery and shards, merge, and whole runs on a stand-in engine (tests/caption/ has the videos'
// helper and the PyPI-parser check). The runs with the real engine are in test_caption_cli.cc.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <cjson/cJSON.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caption/caption_test_util.h"
#include "caption/video_util.h"

extern "C" {
#include <libavformat/avformat.h>

#include "caption/caption_internal.h"
#include "core/error.h"
}

namespace fs = std::filesystem;

namespace {

using captest::Lines;
using captest::Slurp;
using captest::TmpDir;

// ---- the plan ----

std::vector<vlm_cap_segment> Plan(const std::vector<double> &ts, double dur, int window = 1, int stride = 0,
                                  int centered = 0, double frame_s = 0.04)
{
    vlm_cap_segment *s = nullptr;
    int n = 0;
    EXPECT_EQ(vlm_cap_plan(ts.data(), (int)ts.size(), dur, frame_s, window, stride, centered, &s, &n), VLM_OK);
    std::vector<vlm_cap_segment> v(s, s + n);
    free(s);
    return v;
}

// Segments never overlap, never have zero length, never pass the end, are numbered 0.., and their frames
// go forward and exist.
void ExpectSound(const std::vector<vlm_cap_segment> &v, int64_t dur_ms, int n_frames)
{
    for (size_t i = 0; i < v.size(); i++) {
        SCOPED_TRACE("segment " + std::to_string(i));
        EXPECT_EQ(v[i].index, (int)i);
        EXPECT_LT(v[i].start_ms, v[i].end_ms);
        EXPECT_LE(v[i].end_ms, dur_ms);
        EXPECT_GE(v[i].n_frames, 1);
        EXPECT_LE(v[i].first_frame + v[i].n_frames, n_frames);
        if (i) {
            EXPECT_EQ(v[i].start_ms, v[i - 1].end_ms); // back to back: the video is covered
            EXPECT_GT(v[i].first_frame, v[i - 1].first_frame);
        } else {
            EXPECT_EQ(v[i].start_ms, 0);
        }
    }
    if (!v.empty()) {
        EXPECT_EQ(v.back().end_ms, dur_ms);
    }
}

TEST(CaptionPlan, EveryTwoSeconds)
{
    auto v = Plan({0, 2, 4, 6, 8}, 9.5);
    ASSERT_EQ(v.size(), 5u);
    int64_t want[][2] = {{0, 2000}, {2000, 4000}, {4000, 6000}, {6000, 8000}, {8000, 9500}};
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(v[i].start_ms, want[i][0]);
        EXPECT_EQ(v[i].end_ms, want[i][1]);
        EXPECT_EQ(v[i].first_frame, i);
        EXPECT_EQ(v[i].n_frames, 1);
    }
    ExpectSound(v, 9500, 5);
}

TEST(CaptionPlan, FirstFrameLateStillStartsAtZero)
{
    auto v = Plan({0.48, 2.48, 4.48}, 5.0);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0].start_ms, 0);
    EXPECT_EQ(v[1].start_ms, 2480);
    EXPECT_EQ(v[2].start_ms, 4480);
    ExpectSound(v, 5000, 3);
}

TEST(CaptionPlan, WindowGroupsFrames)
{
    std::vector<double> ts;
    for (int i = 0; i < 9; i++) ts.push_back(i);
    auto v = Plan(ts, 9.0, 2);
    ASSERT_EQ(v.size(), 5u);
    for (int i = 0; i < 4; i++) {
        EXPECT_EQ(v[i].first_frame, 2 * i);
        EXPECT_EQ(v[i].n_frames, 2);
        EXPECT_EQ(v[i].start_ms, 2000 * i);
    }
    EXPECT_EQ(v[4].n_frames, 1); // what is left
    ExpectSound(v, 9000, 9);
}

TEST(CaptionPlan, OverlappingWindowsKeepTimesApart)
{
    std::vector<double> ts;
    for (int i = 0; i < 6; i++) ts.push_back(i);
    auto v = Plan(ts, 6.0, 3, 1);
    ASSERT_EQ(v.size(), 6u);
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(v[i].first_frame, i);
        EXPECT_EQ(v[i].n_frames, std::min(3, 6 - i));
        EXPECT_EQ(v[i].start_ms, 1000 * i);
    }
    ExpectSound(v, 6000, 6);
}

TEST(CaptionPlan, CenteredFramesCoverTheirSlices)
{
    auto v = Plan({1, 3, 5, 7}, 8.0, 1, 0, 1);
    ASSERT_EQ(v.size(), 4u);
    for (int i = 0; i < 4; i++) EXPECT_EQ(v[i].start_ms, 2000 * i);
    ExpectSound(v, 8000, 4);
}

TEST(CaptionPlan, FramesPastTheDurationFoldIntoTheLastSegment)
{
    auto v = Plan({0, 2, 4, 6, 8}, 5.0);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[2].start_ms, 4000);
    EXPECT_EQ(v[2].end_ms, 5000);
    ExpectSound(v, 5000, 5);
    // a frame exactly at the end starts nothing either
    v = Plan({0, 2, 4}, 4.0);
    ASSERT_EQ(v.size(), 2u);
    ExpectSound(v, 4000, 3);
}

TEST(CaptionPlan, FramesUnderAMillisecondApartFold)
{
    auto v = Plan({0, 1.0, 1.0004, 2.0}, 3.0);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[1].start_ms, 1000);
    EXPECT_EQ(v[1].first_frame, 1);
    EXPECT_EQ(v[2].first_frame, 3);
    ExpectSound(v, 3000, 4);
}

TEST(CaptionPlan, UnknownDurationEndsOneFrameAfterTheLast)
{
    auto v = Plan({0, 2, 4}, -1, 1, 0, 0, 0.5);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[2].end_ms, 4500);
    ExpectSound(v, 4500, 3);
}

TEST(CaptionPlan, StreamingEmitsAsSoonAsTheNextStartIsKnown)
{
    vlm_cap_planner p;
    vlm_cap_planner_init(&p, 1, 1, 0, 10.0);
    vlm_cap_segment s;
    ASSERT_EQ(vlm_cap_planner_push(&p, 0.0), VLM_OK);
    EXPECT_EQ(vlm_cap_planner_next(&p, &s), 0); // its end is not known yet
    ASSERT_EQ(vlm_cap_planner_push(&p, 2.0), VLM_OK);
    ASSERT_EQ(vlm_cap_planner_next(&p, &s), 1);
    EXPECT_EQ(s.end_ms, 2000);
    EXPECT_EQ(vlm_cap_planner_next(&p, &s), 0);
    EXPECT_NE(vlm_cap_planner_push(&p, 1.0), VLM_OK); // backwards
    vlm_cap_planner_finish(&p, 0.04);
    ASSERT_EQ(vlm_cap_planner_next(&p, &s), 1);
    EXPECT_EQ(s.start_ms, 2000);
    EXPECT_EQ(s.end_ms, 10000);
    EXPECT_EQ(vlm_cap_planner_next(&p, &s), 0);
    vlm_cap_planner_free(&p);
}

TEST(CaptionPlan, RandomTimestampsAlwaysSound)
{
    std::mt19937 rng(7);
    for (int trial = 0; trial < 500; trial++) {
        int n = 1 + (int)(rng() % 40);
        std::vector<double> ts;
        double t = (rng() % 3) * 0.3;
        for (int i = 0; i < n; i++) {
            ts.push_back(t);
            t += (rng() % 4 == 0) ? 0.0001 * (1 + rng() % 5) : 0.01 * (1 + rng() % 300); // VFR, near-duplicates
        }
        double dur = rng() % 3 == 0 ? -1 : ts.back() * (0.5 + (rng() % 100) / 80.0) + 0.001;
        int window = 1 + (int)(rng() % 4), stride = 1 + (int)(rng() % window);
        double frame_s = 0.04;
        auto v = Plan(ts, dur, window, stride, (int)(rng() % 2), frame_s);
        SCOPED_TRACE("trial " + std::to_string(trial));
        ASSERT_FALSE(v.empty());
        int64_t dur_ms = dur > 0 ? (int64_t)std::floor(dur * 1000 + 1e-6)
                                 : std::max((int64_t)std::floor((ts.back() + frame_s) * 1000 + 1e-6),
                                            (int64_t)std::llround(ts.back() * 1000) + 1);
        if (dur_ms == 0) dur_ms = 1;
        ExpectSound(v, dur_ms, n);
        if (HasFailure()) break;
    }
}

// ---- writers ----

vlm_cap_record Rec(int i, int64_t s, int64_t e, const char *caption)
{
    vlm_cap_record r{};
    r.index = i;
    r.start_ms = s;
    r.end_ms = e;
    r.caption = const_cast<char *>(caption);
    static double frames[1] = {0};
    frames[0] = s / 1000.0;
    r.frames = frames;
    r.n_frames = 1;
    snprintf(r.finish, sizeof r.finish, "stop");
    return r;
}

TEST(CaptionWriters, SrtAndVtt)
{
    vlm_cap_record r[3] = {Rec(0, 0, 2000, "A dog runs.\n\nOn grass."), Rec(1, 2000, 3723004, "1\n00:00 --> x <b>&"),
                           Rec(2, 3723004, 3723500, "  \t ")};
    char *srt = vlm_cap_srt(r, 3);
    EXPECT_STREQ(srt, "1\n00:00:00,000 --> 00:00:02,000\nA dog runs. On grass.\n\n"
                      "2\n00:00:02,000 --> 01:02:03,004\n1 00:00 --> x <b>&\n\n"
                      "3\n01:02:03,004 --> 01:02:03,500\n(no caption)\n\n");
    free(srt);
    char *vtt = vlm_cap_vtt(r, 3);
    EXPECT_STREQ(vtt, "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nA dog runs. On grass.\n\n"
                      "00:00:02.000 --> 01:02:03.004\n1 00:00 --&gt; x &lt;b&gt;&amp;\n\n"
                      "01:02:03.004 --> 01:02:03.500\n(no caption)\n\n");
    free(vtt);
}

TEST(CaptionWriters, OneLineRepairsText)
{
    char *s = vlm_cap_one_line("caf\xC3\xA9 \xFF\xFE ok\xE2\x80\xA8next\r\n");
    EXPECT_STREQ(s, "caf\xC3\xA9 \xEF\xBF\xBD\xEF\xBF\xBD ok next");
    free(s);
}

TEST(CaptionWriters, JsonlRecord)
{
    vlm_cap_record r = Rec(3, 6000, 8000, "say \"hi\"\n");
    double fr[2] = {6.0, 7.0004};
    r.frames = fr;
    r.n_frames = 2;
    vlm_strbuf b{};
    vlm_cap_jsonl_record(&b, "dir/a.mp4", &r, "{\"x\":1}");
    EXPECT_STREQ(b.s, "{\"video\":\"dir/a.mp4\",\"segment\":3,\"start\":6.000,\"end\":8.000,\"frames\":[6.000,7.000],"
                      "\"caption\":\"say \\\"hi\\\"\\n\",\"finish\":\"stop\",\"settings\":{\"x\":1}}\n");
    vlm_strbuf_free(&b);
}

TEST(CaptionWriters, AtomicRewriteLeavesNoTemporaryFile)
{
    TmpDir d("atomic");
    vlm_cap_record r[1] = {Rec(0, 0, 1000, "one")};
    ASSERT_EQ(vlm_cap_write_video((d / "sub/v").c_str(), 0, "v.mp4", r, 1, nullptr, "{}"), VLM_OK)
        << vlm_last_error();
    r[0].caption = const_cast<char *>("two");
    ASSERT_EQ(vlm_cap_write_video((d / "sub/v").c_str(), 0, "v.mp4", r, 1, nullptr, "{}"), VLM_OK);
    EXPECT_NE(Slurp(d / "sub/v.srt").find("two"), std::string::npos);
    int n = 0;
    for (auto &e : fs::directory_iterator(d / "sub")) {
        n++;
        EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
    }
    EXPECT_EQ(n, 3);
}

// ---- journal ----

TEST(CaptionJournal, RecordsComeBackAndTornLinesAreCut)
{
    TmpDir d("journal");
    std::string path = d / "j";
    vlm_cap_journal j;
    ASSERT_EQ(vlm_cap_journal_open(path.c_str(), 42, 0, &j), VLM_OK) << vlm_last_error();
    vlm_cap_record r0 = Rec(0, 0, 2000, "first \"one\"\n"), r1 = Rec(1, 2000, 4000, "second");
    ASSERT_EQ(vlm_cap_journal_segment(&j, "a.mp4", &r0), VLM_OK);
    ASSERT_EQ(vlm_cap_journal_segment(&j, "a.mp4", &r1), VLM_OK);
    ASSERT_EQ(vlm_cap_journal_error(&j, "b.mp4", "broken"), VLM_OK);
    vlm_cap_journal_close(&j);
    // another key's records, a duplicate, and a torn last line
    {
        std::ofstream f(path, std::ios::app);
        f << "{\"type\":\"segment\",\"key\":\"0000000000000099\",\"video\":\"a.mp4\",\"segment\":5,\"start_ms\":0,"
             "\"end_ms\":1,\"frames\":[0],\"caption\":\"x\",\"finish\":\"stop\"}\n";
        f << "{\"type\":\"segment\",\"key\":\"000000000000002a\",\"video\":\"a.mp4\",\"segment\":0,\"start_ms\":0,"
             "\"end_ms\":2000,\"frames\":[0],\"caption\":\"dup\",\"finish\":\"stop\"}\n";
        f << "{\"type\":\"segment\",\"key\":\"000000000000002a\",\"vid";
    }
    ASSERT_EQ(vlm_cap_journal_open(path.c_str(), 42, 0, &j), VLM_OK);
    vlm_cap_jvideo *a = vlm_cap_journal_find(&j, "a.mp4");
    ASSERT_TRUE(a);
    ASSERT_GE(a->cap, 2);
    EXPECT_STREQ(a->segs[0].caption, "first \"one\"\n");
    EXPECT_STREQ(a->segs[1].caption, "second");
    EXPECT_EQ(a->segs[1].start_ms, 2000);
    EXPECT_TRUE(a->cap <= 5 || !a->segs[5].caption);
    vlm_cap_jvideo *b = vlm_cap_journal_find(&j, "b.mp4");
    ASSERT_TRUE(b);
    EXPECT_STREQ(b->error, "broken");
    ASSERT_EQ(vlm_cap_journal_video(&j, "a.mp4", 2), VLM_OK);
    vlm_cap_journal_close(&j);
    std::string text = Slurp(path);
    EXPECT_EQ(text.find("\"vid{"), std::string::npos);
    for (auto &l : Lines(text)) {
        cJSON *o = cJSON_Parse(l.c_str());
        EXPECT_TRUE(o) << l;
        cJSON_Delete(o);
    }
    ASSERT_EQ(vlm_cap_journal_open(path.c_str(), 42, 0, &j), VLM_OK);
    a = vlm_cap_journal_find(&j, "a.mp4");
    ASSERT_TRUE(a);
    EXPECT_TRUE(a->complete);
    EXPECT_EQ(a->n_segments, 2);
    vlm_cap_journal_close(&j);
    ASSERT_EQ(vlm_cap_journal_open(path.c_str(), 42, 1, &j), VLM_OK); // --force
    EXPECT_EQ(j.n, 0);
    vlm_cap_journal_close(&j);
    EXPECT_EQ(Slurp(path), "");
}

TEST(CaptionJournal, ManyVideos)
{
    TmpDir d("journal_many");
    vlm_cap_journal j;
    ASSERT_EQ(vlm_cap_journal_open((d / "j").c_str(), 1, 0, &j), VLM_OK);
    for (int i = 0; i < 300; i++) {
        vlm_cap_record r = Rec(i % 7, 0, 1, "c");
        ASSERT_EQ(vlm_cap_journal_segment(&j, ("v" + std::to_string(i)).c_str(), &r), VLM_OK);
    }
    vlm_cap_journal_close(&j);
    ASSERT_EQ(vlm_cap_journal_open((d / "j").c_str(), 1, 0, &j), VLM_OK);
    EXPECT_EQ(j.n, 300);
    for (int i = 0; i < 300; i++) {
        vlm_cap_jvideo *v = vlm_cap_journal_find(&j, ("v" + std::to_string(i)).c_str());
        ASSERT_TRUE(v);
        EXPECT_TRUE(v->segs[i % 7].caption);
    }
    vlm_cap_journal_close(&j);
}

// ---- inputs ----

std::vector<std::string> Paths(const vlm_cap_inputs &in)
{
    std::vector<std::string> v;
    for (int i = 0; i < in.n; i++) v.push_back(in.v[i].path);
    return v;
}

TEST(CaptionInputs, FoldersByContentListsAndUrls)
{
    TmpDir d("inputs");
    capvid::Spec s;
    s.frames = 3;
    fs::create_directories(d / "vids/sub");
    ASSERT_TRUE(capvid::Write(s, d / "vids/b.mp4"));
    ASSERT_TRUE(capvid::Write(s, d / "vids/sub/a.mp4"));
    fs::copy_file(d / "vids/b.mp4", d / "vids/no_extension");
    std::ofstream(d / "vids/notes.mp4") << "not a video";
    std::ofstream(d / "vids/sub/readme.txt") << "hello";
    std::ofstream(d / "list.txt") << "# my videos\n" << (d / "vids/b.mp4") << "\n\n  " << (d / "missing.mp4")
                                  << "  \r\nhttps://example.com/path/clip.webm?x=1\n";
    std::string folder = d / "vids", list = "@" + (d / "list.txt");
    const char *inputs[] = {folder.c_str(), list.c_str()};
    vlm_cap_inputs in;
    ASSERT_EQ(vlm_cap_inputs_expand(inputs, 2, nullptr, &in), VLM_OK);
    std::vector<std::string> want = {d / "vids/b.mp4", d / "vids/no_extension", d / "vids/sub/a.mp4",
                                     d / "missing.mp4", "https://example.com/path/clip.webm?x=1"};
    EXPECT_EQ(Paths(in), want);
    EXPECT_FALSE(in.v[0].error);
    EXPECT_TRUE(in.v[3].error);
    EXPECT_EQ(std::string(in.v[0].stem), d / "vids/b");
    EXPECT_EQ(std::string(in.v[1].stem), d / "vids/no_extension");
    EXPECT_TRUE(in.v[4].is_url);
    EXPECT_EQ(std::string(in.v[4].stem), "clip");
    vlm_cap_inputs_free(&in);
    // under --out-dir: a folder's videos keep their place in it, others their name; clashes get the hash
    std::string b2 = d / "b.mp4";
    fs::copy_file(d / "vids/b.mp4", b2);
    const char *inputs2[] = {folder.c_str(), b2.c_str()};
    ASSERT_EQ(vlm_cap_inputs_expand(inputs2, 2, "out", &in), VLM_OK);
    ASSERT_EQ(in.n, 4);
    EXPECT_EQ(std::string(in.v[2].stem), "out/sub/a");
    EXPECT_EQ(std::string(in.v[0].stem).substr(0, 6), "out/b-");
    EXPECT_EQ(std::string(in.v[3].stem).substr(0, 6), "out/b-");
    EXPECT_NE(std::string(in.v[0].stem), std::string(in.v[3].stem));
    vlm_cap_inputs_free(&in);
}

TEST(CaptionInputs, ShardsSplitStablyAndCompletely)
{
    std::vector<std::string> names;
    for (int i = 0; i < 100; i++) names.push_back("https://h/v" + std::to_string(i) + ".mp4");
    std::vector<const char *> p;
    for (auto &s : names) p.push_back(s.c_str());
    std::multiset<std::string> all;
    for (int k = 0; k < 3; k++) {
        vlm_cap_inputs in;
        ASSERT_EQ(vlm_cap_inputs_expand(p.data(), (int)p.size(), nullptr, &in), VLM_OK);
        vlm_cap_inputs_shard(&in, k, 3);
        EXPECT_GT(in.n, 15);
        for (auto &s : Paths(in)) all.insert(s);
        // the same share however the list is ordered
        std::vector<const char *> rev(p.rbegin(), p.rend());
        vlm_cap_inputs in2;
        ASSERT_EQ(vlm_cap_inputs_expand(rev.data(), (int)rev.size(), nullptr, &in2), VLM_OK);
        vlm_cap_inputs_shard(&in2, k, 3);
        auto a = Paths(in), b = Paths(in2);
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        EXPECT_EQ(a, b);
        vlm_cap_inputs_free(&in);
        vlm_cap_inputs_free(&in2);
    }
    EXPECT_EQ(all, std::multiset<std::string>(names.begin(), names.end()));
}

// ---- whole runs on a stand-in engine ----

// Answers each request after delay_ms on its own thread, with a caption made from the prompt and the frames'
// colours (so it changes when the frames or the previous caption do), some with characters the formats escape.
struct FakeEngine {
    struct Req {
        std::string prompt;
        std::vector<int> means;
        vlm_cap_done_fn done;
        void *user;
    };
    std::mutex m;
    std::condition_variable cv;
    std::deque<Req> q;
    std::vector<std::thread> workers;
    bool quit = false;
    int delay_ms = 1;
    int capacity = 1000; // more requests than this waiting: VLM_ERR_BUSY
    std::atomic<int> in_engine{0}, max_in_engine{0}, answered{0}, busy_refusals{0};
    std::vector<std::string> prompts;
    volatile int *stop_flag = nullptr;
    int stop_after = -1;
    int fail_colour = -1; // a frame whose mean luma byte is this fails

    explicit FakeEngine(int threads = 4)
    {
        for (int i = 0; i < threads; i++) workers.emplace_back([this] { Work(); });
    }
    ~FakeEngine()
    {
        {
            std::lock_guard<std::mutex> l(m);
            quit = true;
        }
        cv.notify_all();
        for (auto &t : workers) t.join();
    }
    void Work()
    {
        for (;;) {
            Req r;
            {
                std::unique_lock<std::mutex> l(m);
                cv.wait(l, [&] { return quit || !q.empty(); });
                if (q.empty()) return;
                r = q.front();
                q.pop_front();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
            std::string text = "p" + std::to_string(std::hash<std::string>()(r.prompt) % 1000) + " rgb";
            bool fail = false;
            for (int v : r.means) {
                text += " " + std::to_string(v);
                if (v == fail_colour) fail = true;
            }
            if (r.means.size() % 2 == 0) text += " <i>&</i> -->\nnext line ";
            vlm_cap_answer a{};
            a.ok = !fail;
            a.text = text.c_str();
            a.finish = "stop";
            a.error = "stand-in failure";
            in_engine--;
            int n = ++answered;
            if (stop_flag && n == stop_after) __atomic_store_n(stop_flag, 1, __ATOMIC_RELAXED);
            r.done(r.user, &a);
        }
    }
    static int Submit(void *ctx, const char *prompt, const vlm_image_input *imgs, int n, const vlm_ask_options *gen,
                      vlm_cap_done_fn done, void *user, void **handle)
    {
        (void)gen;
        FakeEngine *f = (FakeEngine *)ctx;
        Req r;
        r.prompt = prompt;
        for (int i = 0; i < n; i++) {
            int64_t sum = 0;
            size_t bytes = (size_t)imgs[i].width * imgs[i].height * 3;
            for (size_t k = 0; k < bytes; k += 3) sum += imgs[i].rgb[k];
            r.means.push_back((int)(sum / (int64_t)(bytes / 3)));
        }
        r.done = done;
        r.user = user;
        {
            std::lock_guard<std::mutex> l(f->m);
            if ((int)f->q.size() >= f->capacity) {
                f->busy_refusals++;
                return vlm_errorf(VLM_ERR_BUSY, "busy");
            }
            f->prompts.push_back(r.prompt);
            f->q.push_back(r);
            int now = ++f->in_engine;
            int prev = f->max_in_engine.load();
            while (now > prev && !f->max_in_engine.compare_exchange_weak(prev, now)) {
            }
        }
        f->cv.notify_one();
        *handle = (void *)1;
        return VLM_OK;
    }
    static void Release(void *, void *) {}
    vlm_cap_backend Backend()
    {
        vlm_cap_backend b{};
        b.ctx = this;
        b.submit = Submit;
        b.release = Release;
        return b;
    }
};

struct RunResult {
    int rc;
    vlm_caption_stats st;
    std::vector<std::string> events;
};

void OnEvent(void *user, const vlm_caption_event *ev)
{
    auto *r = (RunResult *)user;
    if (ev->type == VLM_CAPTION_EV_VIDEO_DONE)
        r->events.push_back(std::string(ev->skipped ? "skipped " : "done ") + ev->video);
    else if (ev->type == VLM_CAPTION_EV_VIDEO_FAILED)
        r->events.push_back(std::string("failed ") + ev->video + ": " + ev->error);
}

RunResult RunFake(FakeEngine &f, const std::vector<std::string> &inputs, vlm_caption_options o)
{
    RunResult r{};
    std::vector<const char *> p;
    for (auto &s : inputs) p.push_back(s.c_str());
    o.on_event = OnEvent;
    o.user = &r;
    vlm_cap_backend b = f.Backend();
    r.rc = vlm_cap_run(&b, p.data(), (int)p.size(), &o, &r.st);
    return r;
}

vlm_caption_options Opts(const std::string &out)
{
    static std::string keep;
    keep = out;
    vlm_caption_options o;
    vlm_caption_options_default(&o);
    o.out_dir = keep.c_str();
    o.frames = "every=0.5";
    o.model_id = "fake";
    return o;
}

// Videos of 2 to 4 s (10 fps) in dir/vids.
std::vector<std::string> MakeVideos(const TmpDir &d, int n)
{
    fs::create_directories(d / "vids");
    std::vector<std::string> v;
    for (int i = 0; i < n; i++) {
        capvid::Spec s;
        s.frames = 20 + 10 * (i % 3);
        s.offset = 7 * i;
        std::string p = d / ("vids/v" + std::to_string(i) + ".mp4");
        EXPECT_TRUE(capvid::Write(s, p));
        v.push_back(p);
    }
    return v;
}

std::map<std::string, std::string> OutputFiles(const std::string &dir)
{
    std::map<std::string, std::string> m;
    for (auto &e : fs::recursive_directory_iterator(dir)) {
        if (!e.is_regular_file()) continue;
        std::string rel = fs::relative(e.path(), dir).string();
        if (rel.find(".journal") != std::string::npos) continue;
        m[rel] = Slurp(e.path().string());
    }
    return m;
}

TEST(CaptionRun, CaptionsVideosWithManyRequestsInFlight)
{
    TmpDir d("run");
    auto vids = MakeVideos(d, 3);
    FakeEngine f;
    f.delay_ms = 5;
    auto o = Opts(d / "out");
    auto r = RunFake(f, {d / "vids"}, o);
    ASSERT_EQ(r.rc, VLM_OK) << vlm_last_error();
    EXPECT_EQ(r.st.videos_total, 3);
    EXPECT_EQ(r.st.videos_done, 3);
    EXPECT_EQ(r.st.videos_failed, 0);
    EXPECT_EQ(r.st.segments_done, 4 + 6 + 8); // every=0.5 over 2, 3 and 4 s
    EXPECT_GT(f.max_in_engine.load(), 2);
    EXPECT_LE(f.max_in_engine.load(), o.max_in_flight);
    for (int i = 0; i < 3; i++) {
        std::string stem = d / ("out/v" + std::to_string(i));
        auto jl = Lines(Slurp(stem + ".jsonl"));
        EXPECT_EQ(jl.size(), size_t(4 + 2 * i));
        auto srt = Slurp(stem + ".srt");
        EXPECT_EQ(srt.substr(0, 32), "1\n00:00:00,000 --> 00:00:00,500\n");
        EXPECT_EQ(Slurp(stem + ".vtt").substr(0, 8), "WEBVTT\n\n");
    }
    auto all = Lines(Slurp(d / "out/captions.jsonl"));
    ASSERT_EQ(all.size(), 18u);
    cJSON *o0 = cJSON_Parse(all[0].c_str());
    ASSERT_TRUE(o0);
    EXPECT_STREQ(cJSON_GetObjectItem(o0, "video")->valuestring, vids[0].c_str());
    EXPECT_EQ(cJSON_GetObjectItem(o0, "segment")->valueint, 0);
    EXPECT_TRUE(cJSON_GetObjectItem(cJSON_GetObjectItem(o0, "settings"), "prompt"));
    cJSON_Delete(o0);
    // a rerun has nothing to do
    FakeEngine f2;
    auto r2 = RunFake(f2, {d / "vids"}, o);
    ASSERT_EQ(r2.rc, VLM_OK);
    EXPECT_EQ(r2.st.videos_skipped, 3);
    EXPECT_EQ(r2.st.segments_done, 0);
    EXPECT_EQ(f2.answered.load(), 0);
}

TEST(CaptionRun, BadInputsAreReportedAndTheRunGoesOn)
{
    TmpDir d("bad");
    auto vids = MakeVideos(d, 1);
    std::ofstream(d / "corrupt.mp4") << std::string("\0\0\0\x18" "ftypmp42", 12) << std::string(500, 'x');
    std::string trunc = d / "truncated.mp4";
    {
        std::string full = Slurp(vids[0]);
        std::ofstream(trunc, std::ios::binary) << full.substr(0, full.size() / 3);
    }
    FakeEngine f;
    auto o = Opts(d / "out");
    auto r = RunFake(f, {vids[0], d / "corrupt.mp4", d / "missing.mp4", trunc}, o);
    ASSERT_EQ(r.rc, VLM_OK) << vlm_last_error();
    EXPECT_EQ(r.st.videos_done + r.st.videos_failed, 4);
    EXPECT_GE(r.st.videos_failed, 2); // corrupt and missing; a truncated file may still give frames
    auto all = Slurp(d / "out/captions.jsonl");
    EXPECT_NE(all.find("\"video\":\"" + (d / "missing.mp4") + "\",\"error\":"), std::string::npos) << all;
    EXPECT_NE(all.find("\"video\":\"" + (d / "corrupt.mp4") + "\",\"error\":"), std::string::npos) << all;
    EXPECT_TRUE(fs::exists(d / "out/v0.srt"));
}

TEST(CaptionRun, ASegmentTheEngineRefusesFailsOnlyItsVideo)
{
    TmpDir d("segfail");
    auto vids = MakeVideos(d, 2);
    FakeEngine f;
    // frame 7 of v1 (every=0.5 at 10 fps: sampled frames 0, 5, 10, ...) has its own colour: fail frame 5's
    f.fail_colour = -2;
    auto o = Opts(d / "out");
    auto r0 = RunFake(f, {vids[1]}, o); // learn a colour of v1's second sample
    ASSERT_EQ(r0.rc, VLM_OK);
    auto line = Lines(Slurp(d / "out/v1.jsonl"))[1];
    int colour = -1;
    sscanf(line.substr(line.find("rgb ") + 4).c_str(), "%d", &colour);
    fs::remove_all(d / "out");
    FakeEngine f2;
    f2.fail_colour = colour;
    auto r = RunFake(f2, {vids[0], vids[1]}, o);
    ASSERT_EQ(r.rc, VLM_OK);
    EXPECT_EQ(r.st.videos_done, 1);
    EXPECT_EQ(r.st.videos_failed, 1);
    EXPECT_FALSE(fs::exists(d / "out/v1.srt"));
    auto all = Slurp(d / "out/captions.jsonl");
    EXPECT_NE(all.find("stand-in failure"), std::string::npos) << all;
}

TEST(CaptionRun, BusyEngineIsRetried)
{
    TmpDir d("busy");
    MakeVideos(d, 2);
    FakeEngine f(1);
    f.capacity = 2;
    f.delay_ms = 3;
    auto o = Opts(d / "out");
    auto r = RunFake(f, {d / "vids"}, o);
    ASSERT_EQ(r.rc, VLM_OK);
    EXPECT_EQ(r.st.videos_done, 2);
    EXPECT_GT(f.busy_refusals.load(), 0);
}

TEST(CaptionRun, WithPreviousPutsTheLastCaptionInThePrompt)
{
    TmpDir d("prev");
    MakeVideos(d, 2);
    FakeEngine f;
    auto o = Opts(d / "out");
    o.with_previous = 1;
    o.window = 2;
    auto r = RunFake(f, {d / "vids"}, o);
    ASSERT_EQ(r.rc, VLM_OK);
    auto jl = Lines(Slurp(d / "out/v0.jsonl"));
    ASSERT_EQ(jl.size(), 2u);
    cJSON *a = cJSON_Parse(jl[0].c_str());
    std::string first = cJSON_GetObjectItem(a, "caption")->valuestring;
    cJSON_Delete(a);
    char *one = vlm_cap_one_line(first.c_str());
    bool found = false;
    for (auto &p : f.prompts) found |= p.find(std::string("The previous part of the video: ") + one) == 0;
    free(one);
    EXPECT_TRUE(found);
    EXPECT_NE(f.prompts[0].find("These are 2 frames"), std::string::npos);
}

TEST(CaptionRun, StopThenRerunEqualsOneRun)
{
    TmpDir d("resume");
    MakeVideos(d, 3);
    FakeEngine f;
    auto o = Opts(d / "one");
    ASSERT_EQ(RunFake(f, {d / "vids"}, o).rc, VLM_OK);
    auto want = OutputFiles(d / "one");
    volatile int stop = 0;
    FakeEngine f2;
    f2.stop_flag = &stop;
    f2.stop_after = 7;
    auto o2 = Opts(d / "two");
    o2.stop = &stop;
    auto r = RunFake(f2, {d / "vids"}, o2);
    EXPECT_NE(r.rc, VLM_OK);
    EXPECT_LT(r.st.segments_done, 18);
    FakeEngine f3;
    o2.stop = nullptr;
    auto r3 = RunFake(f3, {d / "vids"}, o2);
    ASSERT_EQ(r3.rc, VLM_OK);
    EXPECT_EQ(r.st.segments_done + r3.st.segments_done, 18);
    EXPECT_EQ(r3.st.segments_resumed, r.st.segments_done);
    EXPECT_EQ(OutputFiles(d / "two"), want);
}

// The journal's segment records: (video, segment) -> count.
std::map<std::pair<std::string, int>, int> JournalSegments(const std::string &path)
{
    std::map<std::pair<std::string, int>, int> m;
    for (auto &l : Lines(Slurp(path))) {
        cJSON *o = cJSON_Parse(l.c_str());
        if (!o) continue;
        if (!strcmp(cJSON_GetObjectItem(o, "type")->valuestring, "segment"))
            m[{cJSON_GetObjectItem(o, "video")->valuestring, cJSON_GetObjectItem(o, "segment")->valueint}]++;
        cJSON_Delete(o);
    }
    return m;
}

TEST(CaptionRun, KilledMidRunThenRerunLosesAndRepeatsNothing)
{
    TmpDir d("kill");
    MakeVideos(d, 3);
    {
        FakeEngine f;
        ASSERT_EQ(RunFake(f, {d / "vids"}, Opts(d / "one")).rc, VLM_OK);
    }
    auto want = OutputFiles(d / "one");
    for (int trial = 0; trial < 6; trial++) {
        SCOPED_TRACE("trial " + std::to_string(trial));
        std::string out = d / ("k" + std::to_string(trial));
        size_t kill_at = 1 + (size_t)trial * 3; // journal lines written before the kill
        pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            FakeEngine f;
            f.delay_ms = 15;
            auto r = RunFake(f, {d / "vids"}, Opts(out));
            _exit(r.rc == VLM_OK ? 0 : 1);
        }
        std::string journal = out + "/captions.journal";
        for (int i = 0; i < 4000; i++) {
            if (Lines(Slurp(journal)).size() >= kill_at) break;
            usleep(1000);
        }
        kill(pid, SIGKILL);
        int st;
        waitpid(pid, &st, 0);
        FakeEngine f;
        auto r = RunFake(f, {d / "vids"}, Opts(out));
        ASSERT_EQ(r.rc, VLM_OK);
        auto segs = JournalSegments(journal);
        EXPECT_EQ(segs.size(), 18u);
        for (auto &kv : segs) EXPECT_EQ(kv.second, 1) << kv.first.first << " " << kv.first.second;
        EXPECT_EQ(OutputFiles(out), want);
    }
}

TEST(CaptionRun, ShardsThenMergeEqualOneRun)
{
    TmpDir d("shards");
    MakeVideos(d, 6);
    {
        FakeEngine f;
        ASSERT_EQ(RunFake(f, {d / "vids"}, Opts(d / "one")).rc, VLM_OK);
    }
    std::vector<std::string> dirs;
    int total = 0;
    for (int k = 0; k < 3; k++) {
        FakeEngine f;
        auto o = Opts(d / ("s" + std::to_string(k)));
        o.shard_index = k;
        o.shard_count = 3;
        auto r = RunFake(f, {d / "vids"}, o);
        ASSERT_EQ(r.rc, VLM_OK);
        total += r.st.videos_total;
        dirs.push_back(d / ("s" + std::to_string(k)));
        EXPECT_TRUE(fs::exists(dirs.back() + "/captions.shard-" + std::to_string(k) + "-of-3.jsonl"));
    }
    EXPECT_EQ(total, 6);
    std::vector<const char *> p;
    for (auto &s : dirs) p.push_back(s.c_str());
    int64_t n = 0;
    ASSERT_EQ(vlm_caption_merge(p.data(), 3, (d / "merged.jsonl").c_str(), &n), VLM_OK) << vlm_last_error();
    EXPECT_EQ(Slurp(d / "merged.jsonl"), Slurp(d / "one/captions.jsonl"));
    EXPECT_GT(n, 6);
}

TEST(CaptionRun, StartOffsetAndVariableFrameRateUseTheFramesOwnTimes)
{
    TmpDir d("vfr");
    fs::create_directories(d / "vids");
    capvid::Spec s;
    s.frames = 10;
    s.tb = {1, 100};
    s.pts = {0, 10, 20, 150, 160, 170, 290, 300, 310, 320}; // 0.1 s steps, then gaps of 1.3 and 1.2 s
    s.start = 500;                                 // the stream starts at 5 s
    ASSERT_TRUE(capvid::Write(s, d / "vids/vfr.mp4"));
    FakeEngine f;
    auto o = Opts(d / "out");
    o.frames = "every=1";
    ASSERT_EQ(RunFake(f, {d / "vids/vfr.mp4"}, o).rc, VLM_OK) << vlm_last_error();
    auto recs = Lines(Slurp(d / "out/vfr.jsonl"));
    // wanted 0, 1, 2, 3: the frames on screen then are 0.0, 0.2 (until 1.5), 1.7 (until 2.9) and 3.0
    std::vector<std::string> frames, spans;
    for (auto &l : recs) {
        cJSON *r = cJSON_Parse(l.c_str());
        char buf[64];
        snprintf(buf, sizeof buf, "%.3f-%.3f", cJSON_GetObjectItem(r, "start")->valuedouble,
                 cJSON_GetObjectItem(r, "end")->valuedouble);
        spans.push_back(buf);
        snprintf(buf, sizeof buf, "%.3f", cJSON_GetArrayItem(cJSON_GetObjectItem(r, "frames"), 0)->valuedouble);
        frames.push_back(buf);
        cJSON_Delete(r);
    }
    EXPECT_EQ(frames, (std::vector<std::string>{"0.000", "0.200", "1.700", "3.000"}));
    ASSERT_EQ(spans.size(), 4u);
    EXPECT_EQ(spans[0], "0.000-0.200");
    EXPECT_EQ(spans[1], "0.200-1.700");
    EXPECT_EQ(spans[2], "1.700-3.000");
    EXPECT_EQ(spans[3].substr(0, 6), "3.000-"); // to the container's duration
}

TEST(CaptionRun, SummaryIsOneTextOnlyRequestPerVideo)
{
    TmpDir d("summary");
    MakeVideos(d, 2);
    FakeEngine f;
    auto o = Opts(d / "out");
    o.summary = 1;
    auto r = RunFake(f, {d / "vids"}, o);
    ASSERT_EQ(r.rc, VLM_OK);
    EXPECT_EQ(f.answered.load(), 4 + 6 + 2);
    auto jl = Lines(Slurp(d / "out/v0.jsonl"));
    ASSERT_EQ(jl.size(), 5u);
    EXPECT_NE(jl[4].find("\"summary\":"), std::string::npos) << jl[4];
    int summaries = 0;
    for (auto &p : f.prompts)
        if (p.find("Here are timestamped captions of a video:\n[00:00:00.000] ") == 0) summaries++;
    EXPECT_EQ(summaries, 2);
    auto all = Slurp(d / "out/captions.jsonl");
    EXPECT_EQ(Lines(all).size(), 4u + 6u + 2u);
    // asking for summaries later does only them
    FakeEngine f2;
    o.summary = 0;
    fs::remove_all(d / "out2");
    auto o2 = Opts(d / "out2");
    ASSERT_EQ(RunFake(f2, {d / "vids"}, o2).rc, VLM_OK);
    FakeEngine f3;
    o2.summary = 1;
    ASSERT_EQ(RunFake(f3, {d / "vids"}, o2).rc, VLM_OK);
    EXPECT_EQ(f3.answered.load(), 2);
    EXPECT_EQ(Slurp(d / "out2/captions.jsonl"), all);
}

TEST(CaptionRun, FileUrlsBelowTheMediaFolder)
{
    TmpDir d("url");
    auto vids = MakeVideos(d, 1);
    FakeEngine f;
    auto o = Opts(d / "out");
    std::string media = d / "vids";
    o.media_dir = media.c_str();
    std::string url = "file://" + vids[0], outside = "file://" + (d / "elsewhere.mp4");
    fs::copy_file(vids[0], d / "elsewhere.mp4");
    auto r = RunFake(f, {url, outside}, o);
    ASSERT_EQ(r.rc, VLM_OK);
    EXPECT_EQ(r.st.videos_done, 1);
    EXPECT_EQ(r.st.videos_failed, 1);
    EXPECT_TRUE(fs::exists(d / "out/v0.srt"));
    EXPECT_EQ(Lines(Slurp(d / "out/v0.jsonl")).size(), 4u);
}

TEST(CaptionRun, OverlappingWindowsGiveEveryFrameItsOwnSegment)
{
    TmpDir d("overlap");
    MakeVideos(d, 1);
    FakeEngine f;
    auto o = Opts(d / "out");
    o.window = 3;
    o.stride = 1;
    ASSERT_EQ(RunFake(f, {d / "vids"}, o).rc, VLM_OK);
    auto jl = Lines(Slurp(d / "out/v0.jsonl"));
    ASSERT_EQ(jl.size(), 4u);
    EXPECT_NE(jl[0].find("\"frames\":[0.000,0.500,1.000]"), std::string::npos) << jl[0];
    EXPECT_NE(jl[3].find("\"frames\":[1.500]"), std::string::npos) << jl[3];
}

// The files a run writes, read back by FFmpeg's own SRT and WebVTT demuxers and by the PyPI parsers.
TEST(CaptionRun, SubtitlesReadBackByFfmpeg)
{
    TmpDir d("ffmpeg");
    MakeVideos(d, 1);
    FakeEngine f;
    auto o = Opts(d / "out");
    o.window = 2;
    ASSERT_EQ(RunFake(f, {d / "vids"}, o).rc, VLM_OK);
    auto recs = Lines(Slurp(d / "out/v0.jsonl"));
    for (const char *ext : {".srt", ".vtt"}) {
        SCOPED_TRACE(ext);
        AVFormatContext *fc = nullptr;
        ASSERT_EQ(avformat_open_input(&fc, (d / (std::string("out/v0") + ext)).c_str(), nullptr, nullptr), 0);
        ASSERT_EQ(avformat_find_stream_info(fc, nullptr), 0);
        EXPECT_EQ(fc->streams[0]->codecpar->codec_type, AVMEDIA_TYPE_SUBTITLE);
        AVPacket *pkt = av_packet_alloc();
        size_t i = 0;
        while (av_read_frame(fc, pkt) >= 0) {
            double tb = av_q2d(fc->streams[pkt->stream_index]->time_base);
            if (i < recs.size()) {
                cJSON *r = cJSON_Parse(recs[i].c_str());
                EXPECT_NEAR(pkt->pts * tb, cJSON_GetObjectItem(r, "start")->valuedouble, 1e-3);
                EXPECT_NEAR((pkt->pts + pkt->duration) * tb, cJSON_GetObjectItem(r, "end")->valuedouble, 1e-3);
                cJSON_Delete(r);
            }
            i++;
            av_packet_unref(pkt);
        }
        EXPECT_EQ(i, recs.size());
        av_packet_free(&pkt);
        avformat_close_input(&fc);
    }
}

std::string ScriptDir() { return std::string(VLM_TEST_DATA) + "/../caption"; }

// The srt and webvtt-py packages (PyPI): `make deps` installs them; installed here when missing.
bool PythonParsers()
{
    static int ok = -1;
    if (ok < 0) {
        ok = std::system("python3 -c 'import srt, webvtt' 2>/dev/null") == 0;
        if (!ok)
            ok = std::system("python3 -m pip install -q srt webvtt-py >/dev/null 2>&1 || python3 -m pip install -q "
                             "--break-system-packages srt webvtt-py >/dev/null 2>&1") == 0 &&
                 std::system("python3 -c 'import srt, webvtt'") == 0;
    }
    return ok == 1;
}

TEST(CaptionRun, SubtitlesParseWithSrtAndWebvttPackages)
{
    ASSERT_TRUE(PythonParsers()) << "python3 with the srt and webvtt-py packages is needed (make deps)";
    TmpDir d("pyparse");
    MakeVideos(d, 2);
    FakeEngine f;
    auto o = Opts(d / "out");
    o.frames = "every=0.3"; // odd times, and the last segment cut at the duration
    ASSERT_EQ(RunFake(f, {d / "vids"}, o).rc, VLM_OK);
    for (int i = 0; i < 2; i++) {
        std::string cmd = "python3 " + ScriptDir() + "/check_subs.py " + (d / ("out/v" + std::to_string(i))) + " " +
                          std::to_string(2.0 + i);
        EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    }
}

} // namespace
