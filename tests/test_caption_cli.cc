// `vlm caption` end to end: the real program ($VLM_BIN) on the tiny golden checkpoint (random weights, so the
// captions are noise, but deterministic) and small clips the test encodes. Checks: a caption equals what
// `vlm ask` answers about the same frame; outputs parse (FFmpeg, srt, webvtt-py); answers do not depend on how
// many segments run together; SIGKILL mid-run then rerun equals one uninterrupted run with each segment
// journaled once; 3 shards + --merge equal one run; bad inputs are reported and the exit status says so.
#include <gtest/gtest.h>

#include <cjson/cJSON.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caption/caption_test_util.h"
#include "caption/video_util.h"
#include "golden_util.h"

namespace fs = std::filesystem;

namespace {

using captest::Lines;
using captest::Slurp;

std::string Bin()
{
    const char *b = std::getenv("VLM_BIN");
    return b ? b : std::string(VLM_BUILD_DIR) + "/vlm";
}

std::string Model() { return golden::model_dir("tiny-mha"); }

// the CLI tests' folders apart from the library tests' (one test binary, one pid)
struct TmpDir : captest::TmpDir {
    explicit TmpDir(const std::string &name) : captest::TmpDir(name, "vlm_capcli_") {}
};

struct Result {
    int status;
    std::string out, err;
};

// Runs the program with args (already quoted where needed), stdout and stderr apart.
Result RunVlm(const std::string &args, const std::string &tmp)
{
    std::string out = tmp + "/.stdout", err = tmp + "/.stderr";
    std::string cmd = Bin() + " " + args + " > " + out + " 2> " + err;
    int st = std::system(cmd.c_str());
    Result r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, Slurp(out), Slurp(err)};
    fs::remove(out);
    fs::remove(err);
    return r;
}

// The common generation settings: few tokens, so the tiny model answers fast.
const char *kGen = " --max-tokens 4 --threads 2 ";

// Clips of n seconds at 10 fps, 64x48, each with its own colours.
std::vector<std::string> Clips(const TmpDir &d, int n, int seconds = 3)
{
    fs::create_directories(d / "vids");
    std::vector<std::string> v;
    for (int i = 0; i < n; i++) {
        capvid::Spec s;
        s.frames = seconds * 10 + 10 * (i % 2);
        s.offset = 11 * i;
        std::string p = d / ("vids/c" + std::to_string(i) + ".mp4");
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
        if (rel.find(".journal") != std::string::npos || rel[0] == '.') continue;
        m[rel] = Slurp(e.path().string());
    }
    return m;
}

std::string Field(const std::string &json_line, const char *name)
{
    cJSON *o = cJSON_Parse(json_line.c_str());
    std::string s;
    const cJSON *it = o ? cJSON_GetObjectItem(o, name) : nullptr;
    if (cJSON_IsString(it)) s = it->valuestring;
    cJSON_Delete(o);
    return s;
}

TEST(CaptionCli, CaptionEqualsVlmAskOnTheSameFrame)
{
    TmpDir d("ask");
    auto clips = Clips(d, 1);
    Result r = RunVlm("caption -m " + Model() + kGen + "--frames every=1 --out-dir " + (d / "out") + " " + clips[0],
                   d.path);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("1 videos captioned, 0 failed, 3 segments in"), std::string::npos) << r.err;
    auto recs = Lines(Slurp(d / "out/c0.jsonl"));
    ASSERT_EQ(recs.size(), 3u);
    // the first frame as a PNG, asked the same question through vlm ask
    Result m = RunVlm("media " + clips[0] + " --frames every=1 --dump " + (d / "f0.png"), d.path);
    ASSERT_EQ(m.status, 0) << m.err;
    Result a = RunVlm("ask -m " + Model() + kGen + "-i " + (d / "f0.png") +
                       " \"Describe what happens in this video frame in one sentence.\"",
                   d.path);
    ASSERT_EQ(a.status, 0) << a.err;
    std::string answer = a.out;
    while (!answer.empty() && (answer.back() == '\n' || answer.back() == ' ')) answer.pop_back();
    size_t b = answer.find_first_not_of(" \n");
    answer = b == std::string::npos ? "" : answer.substr(b);
    EXPECT_EQ(Field(recs[0], "caption"), answer);
    EXPECT_NE(Slurp(d / "out/c0.srt").find("00:00:02,000 --> 00:00:03,000"), std::string::npos);
    // the PyPI parsers agree with the JSONL
    std::string cmd = "python3 " + std::string(VLM_TEST_DATA) + "/../caption/check_subs.py " + (d / "out/c0") + " 3";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}

TEST(CaptionCli, AnswersDoNotDependOnHowManyRunTogether)
{
    TmpDir d("parallel");
    auto clips = Clips(d, 2);
    std::string common = "caption -m " + Model() + kGen + "--frames every=0.5 --quiet ";
    auto t0 = std::chrono::steady_clock::now();
    Result one = RunVlm(common + "--parallel 1 --out-dir " + (d / "p1") + " " + (d / "vids"), d.path);
    auto t1 = std::chrono::steady_clock::now();
    Result many = RunVlm(common + "--parallel 8 --out-dir " + (d / "p8") + " " + (d / "vids"), d.path);
    auto t2 = std::chrono::steady_clock::now();
    ASSERT_EQ(one.status, 0) << one.err;
    ASSERT_EQ(many.status, 0) << many.err;
    EXPECT_EQ(one.err, "");
    EXPECT_EQ(OutputFiles(d / "p1"), OutputFiles(d / "p8"));
    double s1 = std::chrono::duration<double>(t1 - t0).count(), s8 = std::chrono::duration<double>(t2 - t1).count();
    std::printf("[ caption  ] 14 segments: --parallel 1 %.2f s, --parallel 8 %.2f s (%.2fx)\n", s1, s8, s1 / s8);
}

// Starts the program in the background (stdout and stderr to files); returns its pid.
pid_t Spawn(const std::vector<std::string> &args, const std::string &log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        std::vector<char *> argv;
        std::string bin = Bin();
        argv.push_back(const_cast<char *>(bin.c_str()));
        for (auto &a : args) argv.push_back(const_cast<char *>(a.c_str()));
        argv.push_back(nullptr);
        execv(bin.c_str(), argv.data());
        _exit(127);
    }
    return pid;
}

int SegmentLines(const std::string &journal)
{
    int n = 0;
    for (auto &l : Lines(Slurp(journal))) n += l.find("\"type\":\"segment\"") != std::string::npos;
    return n;
}

TEST(CaptionCli, KilledWithSigkillThenRerunEqualsOneRun)
{
    TmpDir d("kill");
    Clips(d, 2);
    auto args = [&](const std::string &out) {
        return std::vector<std::string>{"caption", "-m", Model(), "--max-tokens", "4", "--threads", "2",
                                        "--frames", "every=0.5", "--parallel", "2", "--quiet", "--out-dir", out,
                                        d / "vids"};
    };
    {
        pid_t p = Spawn(args(d / "one"), d / "one.log");
        int st;
        waitpid(p, &st, 0);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << Slurp(d / "one.log");
    }
    auto want = OutputFiles(d / "one");
    const int total = SegmentLines(d / "one/captions.journal");
    ASSERT_EQ(total, 14);
    std::mt19937 rng((unsigned)getpid());
    int trials = std::getenv("VLM_CAPTION_KILL_TRIALS") ? std::atoi(std::getenv("VLM_CAPTION_KILL_TRIALS")) : 3;
    int landed = 0;
    for (int t = 0; t < trials; t++) {
        std::string out = d / ("k" + std::to_string(t));
        int kill_after = 1 + (int)(rng() % (total - 3)); // segments journaled before the kill
        SCOPED_TRACE("trial " + std::to_string(t) + ", kill after " + std::to_string(kill_after) + " segments");
        pid_t p = Spawn(args(out), out + ".log");
        for (int i = 0; i < 60000 && SegmentLines(out + "/captions.journal") < kill_after; i++) usleep(1000);
        usleep((useconds_t)(rng() % 20000)); // somewhere between two results, or inside a write
        kill(p, SIGKILL);
        int st;
        waitpid(p, &st, 0);
        landed += WIFSIGNALED(st); // a run that finished first still has to rerun to the same files
        pid_t p2 = Spawn(args(out), out + ".log2");
        waitpid(p2, &st, 0);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << Slurp(out + ".log2");
        std::map<std::string, int> seen;
        for (auto &l : Lines(Slurp(out + "/captions.journal")))
            if (l.find("\"type\":\"segment\"") != std::string::npos) {
                cJSON *o = cJSON_Parse(l.c_str());
                ASSERT_TRUE(o) << l;
                seen[std::string(cJSON_GetObjectItem(o, "video")->valuestring) + "#" +
                     std::to_string(cJSON_GetObjectItem(o, "segment")->valueint)]++;
                cJSON_Delete(o);
            }
        EXPECT_EQ((int)seen.size(), total);
        for (auto &kv : seen) EXPECT_EQ(kv.second, 1) << kv.first;
        EXPECT_EQ(OutputFiles(out), want);
    }
    EXPECT_GE(landed * 2, trials) << "most kills should land mid-run";
}

TEST(CaptionCli, ThreeShardsThenMergeEqualOneRun)
{
    TmpDir d("shards");
    Clips(d, 5, 1);
    std::string common = "caption -m " + Model() + kGen + "--frames every=0.5 --quiet ";
    Result one = RunVlm(common + "--out-dir " + (d / "one") + " " + (d / "vids"), d.path);
    ASSERT_EQ(one.status, 0) << one.err;
    std::string dirs;
    for (int k = 0; k < 3; k++) {
        std::string out = d / ("s" + std::to_string(k));
        Result r = RunVlm(common + "--shard " + std::to_string(k) + "/3 --out-dir " + out + " " + (d / "vids"), d.path);
        ASSERT_EQ(r.status, 0) << r.err;
        dirs += " " + out;
    }
    Result m = RunVlm("caption --merge" + dirs + " --out-dir " + (d / "merged"), d.path);
    ASSERT_EQ(m.status, 0) << m.err;
    EXPECT_NE(m.err.find("merged"), std::string::npos);
    EXPECT_EQ(Slurp(d / "merged/captions.jsonl"), Slurp(d / "one/captions.jsonl"));
    EXPECT_EQ(Lines(Slurp(d / "one/captions.jsonl")).size(), 5u * 2 + 2 * 2); // 1 s and 2 s clips, every=0.5
}

TEST(CaptionCli, BadInputsAreReportedAndTheExitStatusSaysSo)
{
    TmpDir d("bad");
    auto clips = Clips(d, 1, 1);
    std::ofstream(d / "broken.mp4") << std::string("\0\0\0\x18" "ftypmp42", 12) << std::string(300, 'z');
    Result r = RunVlm("caption -m " + Model() + kGen + "--out-dir " + (d / "out") + " " + clips[0] + " " +
                       (d / "broken.mp4") + " " + (d / "nothing.mp4"),
                   d.path);
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("1 videos captioned, 2 failed"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("broken.mp4: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("nothing.mp4: "), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(d / "out/c0.srt"));
    auto all = Slurp(d / "out/captions.jsonl");
    EXPECT_NE(all.find("broken.mp4\",\"error\":"), std::string::npos) << all;
    // usage errors: status 2
    EXPECT_EQ(RunVlm("caption -m " + Model() + " --shard 3/3 x.mp4", d.path).status, 2);
    EXPECT_EQ(RunVlm("caption x.mp4", d.path).status, 2);
    EXPECT_EQ(RunVlm("caption -m " + Model() + " --format doc x.mp4", d.path).status, 2);
}

} // namespace
