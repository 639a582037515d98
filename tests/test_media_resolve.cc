// The media front door (media/resolve.h) and what `vlm media` adds on top of it: file reads bounded by
// their cap (directories and devices refused unread), sampling plans that say when --max-frames cut them,
// dumps in the format the extension names (one file or one per frame), and the EXIF orientation
// reported but not applied.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <csignal>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

extern "C" {
#include "core/error.h"
#include "core/file.h"
#include "media/exif.h"
#include "media/image.h"
#include "media/image_write.h"
#include "media/resolve.h"
#include "media/url.h"
#include "media/video.h"
}

#include "golden_util.h"
#include "video_util.h"

using namespace videotest;

namespace {

bool Has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }
std::string Err() { return vlm_last_error(); }

std::string Slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

void WriteFile(const std::string &path, const std::string &data) { std::ofstream(path, std::ios::binary) << data; }

// A w x h picture whose pixel (x, y) is (x * 7, y * 11, x + y), mod 256.
struct Pic {
    vlm_image im{};
    Pic(int w, int h)
    {
        im.width = w;
        im.height = h;
        im.rgb = (uint8_t *)malloc(size_t(w) * h * 3);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = im.rgb + (size_t(y) * w + x) * 3;
                p[0] = uint8_t(x * 7), p[1] = uint8_t(y * 11), p[2] = uint8_t(x + y);
            }
    }
    ~Pic() { free(im.rgb); }
    std::string Png() const
    {
        void *d;
        size_t n;
        EXPECT_EQ(vlm_image_encode_png(&im, &d, &n), VLM_OK) << Err();
        std::string s((char *)d, n);
        free(d);
        return s;
    }
    std::string Jpeg() const
    {
        void *d;
        size_t n;
        EXPECT_EQ(vlm_image_encode_jpeg(&im, 90, &d, &n), VLM_OK) << Err();
        std::string s((char *)d, n);
        free(d);
        return s;
    }
};

// A TIFF structure holding one IFD entry: the orientation (SHORT), in either byte order.
std::string TiffWithOrientation(int orientation, bool big_endian)
{
    auto u16 = [&](unsigned v) {
        return big_endian ? std::string{char(v >> 8), char(v & 255)} : std::string{char(v & 255), char(v >> 8)};
    };
    auto u32 = [&](uint32_t v) { return u16(big_endian ? v >> 16 : v & 0xffff) + u16(big_endian ? v & 0xffff : v >> 16); };
    std::string t = big_endian ? "MM" : "II";
    t += u16(42) + u32(8);
    t += u16(2);                                                        // two entries
    t += u16(0x010f) + u16(2) + u32(4) + std::string("ACME", 4);        // Make (ASCII, in place)
    t += u16(0x0112) + u16(3) + u32(1) + u16(unsigned(orientation)) + u16(0);  // Orientation
    t += u32(0);                                                        // no next IFD
    return t;
}

// jpeg with an APP1 "Exif" segment (holding tiff) right after its SOI.
std::string WithExif(const std::string &jpeg, const std::string &tiff)
{
    const size_t len = 2 + 6 + tiff.size();
    std::string app1 = std::string("\xFF\xE1", 2) + char(len >> 8) + char(len & 255) + std::string("Exif\0\0", 6) + tiff;
    return jpeg.substr(0, 2) + app1 + jpeg.substr(2);
}

std::string Base64(const std::string &in)
{
    static const char *k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        for (int j = 3; j >= 0; j--) out += k[(v >> (6 * j)) & 63];
    }
    if (i + 1 == in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        out += std::string{k[v >> 18], k[(v >> 12) & 63], '=', '='};
    } else if (i + 2 == in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
        out += std::string{k[v >> 18], k[(v >> 12) & 63], k[(v >> 6) & 63], '='};
    }
    return out;
}

// One HTTP server on 127.0.0.1 answering every request with the same body.
class OneBodyServer {
  public:
    OneBodyServer(std::string ctype, std::string body) : ctype_(std::move(ctype)), body_(std::move(body))
    {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(bind(fd_, (sockaddr *)&a, sizeof a), 0);
        EXPECT_EQ(listen(fd_, 8), 0);
        socklen_t len = sizeof a;
        getsockname(fd_, (sockaddr *)&a, &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { Loop(); });
    }
    ~OneBodyServer()
    {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    std::string url(const std::string &path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  private:
    void Loop()
    {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) continue;
            int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            std::string req;
            char buf[4096];
            while (req.find("\r\n\r\n") == std::string::npos) {
                pollfd q{c, POLLIN, 0};
                if (poll(&q, 1, 2000) <= 0) break;
                ssize_t n = recv(c, buf, sizeof buf, 0);
                if (n <= 0) break;
                req.append(buf, size_t(n));
            }
            std::string r = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: " + ctype_ +
                            "\r\nContent-Length: " + std::to_string(body_.size()) + "\r\n\r\n" + body_;
            for (size_t off = 0; off < r.size();) {
                ssize_t n = send(c, r.data() + off, r.size() - off, MSG_NOSIGNAL);
                if (n <= 0) break;
                off += size_t(n);
            }
            close(c);
        }
    }
    std::string ctype_, body_;
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

class MediaResolve : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char d[] = "/tmp/vlm_resolve_XXXXXX";
        dir_ = mkdtemp(d);
        vlm_resolve_options_default(&o_);
    }
    void TearDown() override { (void)!std::system(("rm -rf '" + dir_ + "'").c_str()); }
    std::string Path(const std::string &name) const { return dir_ + "/" + name; }
    // a 30-frame, 10 fps MPEG-4 video (3 s), frame i painted with index i
    std::string Video(const std::string &name)
    {
        VideoSpec s;
        std::string made = WriteVideo(s, "resolve_" + name);
        std::string to = Path(name);
        EXPECT_EQ(rename(made.c_str(), to.c_str()), 0);
        return to;
    }
    int Resolve(const std::string &input) { return vlm_media_resolve(input.c_str(), &o_, &r_); }

    std::string dir_;
    vlm_resolve_options o_;
    vlm_resolved r_{};
};

// ---- file reads -----------------------------------------------------------------------

TEST_F(MediaResolve, FileReadsStopAtTheCapAndRefuseDirectoriesAndDevices)
{
    unsigned char *b;
    size_t n;
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(vlm_read_bytes("/dev/zero", 1 << 20, &b, &n), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "'/dev/zero' is a device, not a file")) << Err();
    EXPECT_EQ(vlm_read_bytes(dir_.c_str(), 1 << 20, &b, &n), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "is a directory")) << Err();
    // a 4 GiB file (sparse): refused from its size, nothing read
    const std::string huge = Path("huge.png");
    {
        Pic p(8, 8);
        WriteFile(huge, p.Png());
        ASSERT_EQ(truncate(huge.c_str(), 4LL << 30), 0);
    }
    EXPECT_EQ(vlm_read_bytes(huge.c_str(), 1 << 20, &b, &n), VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), "is 4294967296 bytes, more than the limit of 1048576")) << Err();
    vlm_image img;
    EXPECT_EQ(vlm_image_decode_file(huge.c_str(), nullptr, &img), VLM_ERR_LIMIT);  // 4 GiB > the 1 GiB default
    EXPECT_EQ(vlm_image_decode_file("/dev/zero", nullptr, &img), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "is a device")) << Err();
    EXPECT_EQ(vlm_image_decode_file(dir_.c_str(), nullptr, &img), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "is a directory")) << Err();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
    // a pipe is read until it passes the cap, then refused (the writer then gets EPIPE)
    signal(SIGPIPE, SIG_IGN);
    const std::string fifo = Path("fifo");
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::thread writer([&] {
        int fd = open(fifo.c_str(), O_WRONLY);
        std::string chunk(65536, 'x');
        for (int i = 0; i < 64 && fd >= 0; i++)
            if (write(fd, chunk.data(), chunk.size()) < 0) break;
        if (fd >= 0) close(fd);
    });
    int rc = vlm_read_bytes(fifo.c_str(), 100000, &b, &n);
    writer.join();
    EXPECT_EQ(rc, VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), "more than the limit of 100000 bytes")) << Err();
    // and the same through the resolver
    EXPECT_EQ(Resolve("/dev/zero"), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "is a device")) << Err();
    EXPECT_EQ(Resolve(dir_), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "is a directory")) << Err();
    o_.max_file_bytes = 1000;
    EXPECT_EQ(Resolve(huge), VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), "more than the limit of 1000")) << Err();
}

// ---- the resolver ------------------------------------------------------------------------

TEST_F(MediaResolve, StillImageFromAPath)
{
    Pic p(40, 30);
    WriteFile(Path("a.png"), p.Png());
    ASSERT_EQ(Resolve(Path("a.png")), VLM_OK) << Err();
    ASSERT_EQ(r_.n, 1);
    EXPECT_EQ(r_.kind, VLM_MEDIA_IMAGE);
    EXPECT_STREQ(r_.format, "png");
    EXPECT_EQ(r_.items[0].pts, -1.0);
    EXPECT_EQ(r_.items[0].from_video, 0);
    EXPECT_EQ(r_.items[0].exif_orientation, 0);
    EXPECT_EQ(r_.items[0].image.width, 40);
    EXPECT_EQ(0, memcmp(r_.items[0].image.rgb, p.im.rgb, 40 * 30 * 3));
    vlm_resolved_free(&r_);
    EXPECT_EQ(r_.n, 0);
}

TEST_F(MediaResolve, VideoFromAPathGivesSampledFramesWithTimes)
{
    const std::string v = Video("clip.mp4");
    o_.sampling = "n=3";
    ASSERT_EQ(Resolve(v), VLM_OK) << Err();
    EXPECT_EQ(r_.kind, VLM_MEDIA_VIDEO);
    EXPECT_STREQ(r_.format, "mpeg4");
    EXPECT_STREQ(r_.sampling, "n=3");
    EXPECT_EQ(r_.planned, 3);
    EXPECT_EQ(r_.cut, 0);
    EXPECT_NEAR(r_.duration, 3.0, 1e-6);
    ASSERT_EQ(r_.n, 3);
    const double want[] = {0.5, 1.5, 2.5};
    for (int i = 0; i < 3; i++) {
        EXPECT_NEAR(r_.items[i].pts, want[i], 1e-6);
        EXPECT_EQ(r_.items[i].from_video, 1);
        EXPECT_EQ(FrameIndex(r_.items[i].image), 5 + 10 * i);
    }
    vlm_resolved_free(&r_);
    // the default rule is n=8; the name does not matter, the bytes do
    const std::string disguised = Path("not-a-picture.png");
    ASSERT_EQ(rename(v.c_str(), disguised.c_str()), 0);
    o_.sampling = nullptr;
    ASSERT_EQ(Resolve(disguised), VLM_OK) << Err();
    EXPECT_EQ(r_.kind, VLM_MEDIA_VIDEO);
    EXPECT_EQ(r_.n, 8);
    vlm_resolved_free(&r_);
}

TEST_F(MediaResolve, MaxFramesCutIsReported)
{
    const std::string v = Video("cut.mp4");
    o_.sampling = "fps=10";
    o_.max_frames = 4;
    ASSERT_EQ(Resolve(v), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 4);
    EXPECT_EQ(r_.planned, 30);
    EXPECT_EQ(r_.cut, 1);
    vlm_resolved_free(&r_);
    o_.max_frames = 30;  // exactly the plan: not cut
    ASSERT_EQ(Resolve(v), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 30);
    EXPECT_EQ(r_.cut, 0);
    vlm_resolved_free(&r_);
    // scene changes (every frame here: black and white in turn); how many would follow is not known
    VideoSpec flicker;
    flicker.paint = [](int i, AVFrame *f) {
        for (int y = 0; y < f->height; y++) memset(f->data[0] + y * f->linesize[0], i % 2 ? 220 : 20, f->width);
        for (int p = 1; p < 3; p++)
            for (int y = 0; y < f->height / 2; y++) memset(f->data[p] + y * f->linesize[p], 128, f->width / 2);
    };
    const std::string fl = WriteVideo(flicker, "resolve_flicker.mp4");
    o_.sampling = "scene";
    o_.max_frames = 2;
    ASSERT_EQ(Resolve(fl), VLM_OK) << Err();
    remove(fl.c_str());
    EXPECT_EQ(r_.n, 2);
    EXPECT_EQ(r_.planned, -1);
    EXPECT_EQ(r_.cut, 1);
    vlm_resolved_free(&r_);
}

TEST_F(MediaResolve, MemoryVariant)
{
    const std::string v = Video("m.mp4");
    const std::string bytes = Slurp(v);
    o_.sampling = "n=2";
    ASSERT_EQ(vlm_media_resolve_memory(bytes.data(), bytes.size(), "upload 1", &o_, &r_), VLM_OK) << Err();
    EXPECT_EQ(r_.kind, VLM_MEDIA_VIDEO);
    ASSERT_EQ(r_.n, 2);
    EXPECT_NEAR(r_.items[1].pts, 2.2, 1e-6);  // the frame on screen at 2.25 s
    EXPECT_EQ(FrameIndex(r_.items[1].image), 22);
    vlm_resolved_free(&r_);
    Pic p(9, 7);
    const std::string png = p.Png();
    ASSERT_EQ(vlm_media_resolve_memory(png.data(), png.size(), "upload 2", &o_, &r_), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 1);
    EXPECT_EQ(r_.items[0].pts, -1.0);
    vlm_resolved_free(&r_);
    const std::string junk = "this is neither an image nor a video, just words";
    EXPECT_EQ(vlm_media_resolve_memory(junk.data(), junk.size(), "upload 3", &o_, &r_), VLM_ERR_UNSUPPORTED);
    EXPECT_EQ(Err().rfind("upload 3: not a supported image or video", 0), 0u) << Err();
    EXPECT_EQ(r_.items, nullptr);
    EXPECT_EQ(vlm_media_resolve_memory(junk.data(), 0, nullptr, &o_, &r_), VLM_ERR_FORMAT);
    EXPECT_EQ(Err(), "the media: empty (0 bytes)");
}

TEST_F(MediaResolve, UrlsOfEveryScheme)
{
    Pic p(12, 10);
    const std::string png = p.Png();
    // data:
    const std::string data = "data:image/png;base64," + Base64(png);
    ASSERT_EQ(Resolve(data), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 1);
    EXPECT_EQ(r_.items[0].image.width, 12);
    vlm_resolved_free(&r_);
    // a video in a data: URL
    const std::string clip = Slurp(Video("d.mp4"));
    o_.sampling = "n=1";
    ASSERT_EQ(Resolve("data:video/mp4;base64," + Base64(clip)), VLM_OK) << Err();
    EXPECT_EQ(r_.kind, VLM_MEDIA_VIDEO);
    EXPECT_EQ(r_.n, 1);
    vlm_resolved_free(&r_);
    // a long input is named by its start and length
    vlm_url_policy pol;
    vlm_url_policy_default(&pol);
    pol.max_bytes = 20;
    o_.url = &pol;
    EXPECT_EQ(Resolve(data), VLM_ERR_LIMIT);
    EXPECT_EQ(Err().rfind("'data:image/png;base64,", 0), 0u) << Err();
    EXPECT_TRUE(Has(Err(), "characters)")) << Err();
    EXPECT_EQ(Err().find('\n'), std::string::npos);
    // file:// only below the media directory
    WriteFile(Path("f.png"), png);
    vlm_url_policy_default(&pol);
    EXPECT_EQ(Resolve("file://" + Path("f.png")), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "file:// URLs are not allowed")) << Err();
    EXPECT_TRUE(Has(Err(), Path("f.png"))) << Err();
    pol.media_dir = dir_.c_str();
    ASSERT_EQ(Resolve("file://" + Path("f.png")), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 1);
    vlm_resolved_free(&r_);
    // http: the policy's address rules apply (loopback only when admitted)
    OneBodyServer srv("image/png", png);
    EXPECT_EQ(Resolve(srv.url("/a.png")), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), srv.url("/a.png"))) << Err();
    pol.allow_private = 1;
    ASSERT_EQ(Resolve(srv.url("/a.png")), VLM_OK) << Err();
    EXPECT_EQ(r_.n, 1);
    EXPECT_EQ(0, memcmp(r_.items[0].image.rgb, p.im.rgb, 12 * 10 * 3));
    vlm_resolved_free(&r_);
}

TEST_F(MediaResolve, VideoUrlOverHttp)
{
    OneBodyServer srv("video/mp4", Slurp(Video("h.mp4")));
    vlm_url_policy pol;
    vlm_url_policy_default(&pol);
    pol.allow_private = 1;
    o_.url = &pol;  // images only (accept 0): a video URL is refused
    EXPECT_NE(Resolve(srv.url("/v.mp4")), VLM_OK);
    EXPECT_TRUE(Has(Err(), srv.url("/v.mp4"))) << Err();
    pol.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
    o_.sampling = "every=1";
    ASSERT_EQ(Resolve(srv.url("/v.mp4")), VLM_OK) << Err();
    EXPECT_EQ(r_.kind, VLM_MEDIA_VIDEO);
    ASSERT_EQ(r_.n, 3);
    EXPECT_EQ(FrameIndex(r_.items[2].image), 20);
    vlm_resolved_free(&r_);
}

TEST_F(MediaResolve, BoundsAndErrorsNameTheInput)
{
    Pic p(64, 48);
    WriteFile(Path("big.png"), p.Png());
    const std::string v = Video("b.mp4");
    vlm_image_limits lim;
    vlm_image_limits_default(&lim);
    lim.max_pixels = 1000;
    o_.image = &lim;
    EXPECT_EQ(Resolve(Path("big.png")), VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), Path("big.png"))) << Err();
    EXPECT_TRUE(Has(Err(), "more than the limit of 1000 pixels")) << Err();
    EXPECT_EQ(Resolve(v), VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), v)) << Err();
    o_.image = nullptr;
    o_.max_total_bytes = 64 * 48 * 3 * 2;  // room for two frames of the eight
    EXPECT_EQ(Resolve(v), VLM_ERR_LIMIT);
    EXPECT_TRUE(Has(Err(), "3 pictures of 64x48 need more than the limit of 18432 bytes")) << Err();
    EXPECT_EQ(r_.n, 0);
    o_.max_total_bytes = 0;
    o_.sampling = "fps=-1";
    EXPECT_EQ(Resolve(v), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), v) && Has(Err(), "fps")) << Err();
    o_.sampling = nullptr;
    WriteFile(Path("empty.png"), "");
    EXPECT_EQ(Resolve(Path("empty.png")), VLM_ERR_FORMAT);
    EXPECT_TRUE(Has(Err(), "is empty (0 bytes)")) << Err();
    WriteFile(Path("words.txt"), "just some words, not media at all........................");
    EXPECT_EQ(Resolve(Path("words.txt")), VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(Has(Err(), "is not a supported image or video")) << Err();
    EXPECT_NE(Resolve(Path("missing.png")), VLM_OK);
    EXPECT_TRUE(Has(Err(), "cannot open") && Has(Err(), Path("missing.png"))) << Err();
    EXPECT_EQ(Resolve(""), VLM_ERR_INVALID);
    o_.allow_paths = 0;
    EXPECT_EQ(Resolve(Path("big.png")), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "local paths are not accepted here")) << Err();
    EXPECT_TRUE(Has(Err(), Path("big.png"))) << Err();
    // a pipe holding a picture is read whole (within the cap)
    o_.allow_paths = 1;
    const std::string fifo = Path("pic.fifo"), png = p.Png();
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    std::thread writer([&] {
        int fd = open(fifo.c_str(), O_WRONLY);
        if (fd >= 0) {
            (void)!write(fd, png.data(), png.size());
            close(fd);
        }
    });
    int rc = Resolve(fifo);
    writer.join();
    ASSERT_EQ(rc, VLM_OK) << Err();
    EXPECT_EQ(r_.n, 1);
    vlm_resolved_free(&r_);
}

// ---- EXIF orientation -----------------------------------------------------------------------

TEST(MediaExif, OrientationFromJpegApp1AndTiff)
{
    Pic p(24, 16);
    const std::string jpeg = p.Jpeg();
    EXPECT_EQ(vlm_exif_orientation(jpeg.data(), jpeg.size()), 0);
    for (bool be : {false, true})
        for (int o = 1; o <= 8; o++) {
            const std::string j = WithExif(jpeg, TiffWithOrientation(o, be));
            EXPECT_EQ(vlm_exif_orientation(j.data(), j.size()), o) << o << " " << be;
            const std::string t = TiffWithOrientation(o, be);
            EXPECT_EQ(vlm_exif_orientation(t.data(), t.size()), o);
        }
    EXPECT_STREQ(vlm_exif_orientation_name(6), "rotate 90 clockwise");
    EXPECT_STREQ(vlm_exif_orientation_name(0), "none");
    // out of range, or cut anywhere: 0, never a read past the end
    const std::string j9 = WithExif(jpeg, TiffWithOrientation(9, false));
    EXPECT_EQ(vlm_exif_orientation(j9.data(), j9.size()), 0);
    const std::string j6 = WithExif(jpeg, TiffWithOrientation(6, true));
    for (size_t n = 0; n < 60; n++) {
        std::vector<char> cut(j6.begin(), j6.begin() + long(n));  // exactly n bytes: ASan sees an overread
        const int o = vlm_exif_orientation(cut.data(), n);
        EXPECT_TRUE(o == 0 || o == 6) << n;
    }
    // the orientation is reported, not applied: the resolver's pixels are the stored ones
    const std::string path = "/tmp/vlm_exif_" + std::to_string(getpid()) + ".jpg";
    WriteFile(path, j6);
    vlm_resolved r;
    ASSERT_EQ(vlm_media_resolve(path.c_str(), nullptr, &r), VLM_OK) << Err();
    EXPECT_EQ(r.items[0].exif_orientation, 6);
    EXPECT_EQ(r.items[0].image.width, 24);
    EXPECT_EQ(r.items[0].image.height, 16);
    vlm_image plain;
    ASSERT_EQ(vlm_image_decode_memory(jpeg.data(), jpeg.size(), nullptr, &plain), VLM_OK);
    EXPECT_EQ(0, memcmp(plain.rgb, r.items[0].image.rgb, 24 * 16 * 3));
    vlm_image_free(&plain);
    vlm_resolved_free(&r);
    remove(path.c_str());
}

// ---- writing ----------------------------------------------------------------------------------

TEST(MediaWrite, FormatFromTheExtensionAndPatterns)
{
    EXPECT_EQ(vlm_image_format_for_path("a/b.PNG"), VLM_IMAGE_PNG);
    EXPECT_EQ(vlm_image_format_for_path("x.jpeg"), VLM_IMAGE_JPEG);
    EXPECT_EQ(vlm_image_format_for_path("x.JPG"), VLM_IMAGE_JPEG);
    EXPECT_EQ(vlm_image_format_for_path("x.gif"), VLM_IMAGE_UNKNOWN);
    EXPECT_EQ(vlm_image_format_for_path("dir.png/x"), VLM_IMAGE_UNKNOWN);
    EXPECT_EQ(vlm_image_format_for_path("noext"), VLM_IMAGE_UNKNOWN);
    Pic p(33, 17);
    const std::string base = "/tmp/vlm_write_" + std::to_string(getpid());
    ASSERT_EQ(vlm_image_write((base + ".jpg").c_str(), &p.im), VLM_OK) << Err();
    const std::string j = Slurp(base + ".jpg");
    ASSERT_GE(j.size(), 3u);
    EXPECT_EQ(j.substr(0, 3), std::string("\xFF\xD8\xFF", 3));
    vlm_image back;
    ASSERT_EQ(vlm_image_decode_file((base + ".jpg").c_str(), nullptr, &back), VLM_OK) << Err();
    EXPECT_EQ(back.width, 33);
    EXPECT_EQ(back.height, 17);
    double err = 0;
    for (size_t i = 0; i < 33 * 17 * 3; i++) err += std::abs(int(back.rgb[i]) - int(p.im.rgb[i]));
    EXPECT_LT(err / (33 * 17 * 3), 12.0);  // lossy, but the same picture
    vlm_image_free(&back);
    ASSERT_EQ(vlm_image_write((base + ".png").c_str(), &p.im), VLM_OK) << Err();
    ASSERT_EQ(vlm_image_decode_file((base + ".png").c_str(), nullptr, &back), VLM_OK);
    EXPECT_EQ(0, memcmp(back.rgb, p.im.rgb, 33 * 17 * 3));  // exact
    vlm_image_free(&back);
    EXPECT_EQ(vlm_image_write((base + ".gif").c_str(), &p.im), VLM_ERR_INVALID);
    EXPECT_TRUE(Has(Err(), "use .png, .jpg or .jpeg")) << Err();
    EXPECT_NE(access((base + ".gif").c_str(), F_OK), 0);
    remove((base + ".jpg").c_str());
    remove((base + ".png").c_str());

    int n;
    for (const char *ok : {"plain.png", "f_%04d.png", "%d.jpg", "a%%b_%3u.png", "%-5i.png", "100%%.png"}) {
        EXPECT_EQ(vlm_image_path_pattern(ok, &n), VLM_OK) << ok << ": " << Err();
    }
    EXPECT_EQ(vlm_image_path_pattern("plain.png", &n), VLM_OK);
    EXPECT_EQ(n, 0);
    EXPECT_EQ(vlm_image_path_pattern("f_%04d.png", &n), VLM_OK);
    EXPECT_EQ(n, 1);
    for (const char *bad : {"%d_%d.png", "%s.png", "%n.png", "a%.png", "%5.2d.png", "%ld.png", "%x.png", "end%",
                            "%1234d.png", ""}) {
        EXPECT_EQ(vlm_image_path_pattern(bad, &n), VLM_ERR_INVALID) << bad;
    }
    char out[64];
    ASSERT_EQ(vlm_image_path_format("f_%04d.png", 7, out, sizeof out), VLM_OK);
    EXPECT_STREQ(out, "f_0007.png");
    ASSERT_EQ(vlm_image_path_format("100%%_%d.png", 12, out, sizeof out), VLM_OK);
    EXPECT_STREQ(out, "100%_12.png");
    ASSERT_EQ(vlm_image_path_format("one.png", 3, out, sizeof out), VLM_OK);
    EXPECT_STREQ(out, "one.png");
    EXPECT_EQ(vlm_image_path_format("%s.png", 1, out, sizeof out), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_image_path_format("%0100d.png", 1, out, 8), VLM_ERR_INVALID);
}

// ---- vlm media ----------------------------------------------------------------------------------

struct Cli {
    int status;
    std::string out, err;
};

class MediaCli : public MediaResolve {
  protected:
    Cli Run(const std::string &args)
    {
        const std::string out = Path("cli.out"), err = Path("cli.err");
        const int st = std::system((golden::vlm_bin() + " media " + args + " > " + out + " 2> " + err).c_str());
        return Cli{WIFEXITED(st) ? WEXITSTATUS(st) : -1, Slurp(out), Slurp(err)};
    }
};

TEST_F(MediaCli, DirectoriesAndDevicesAreNamed)
{
    Cli r = Run("'" + dir_ + "'");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err, "vlm media: '" + dir_ + "' is a directory\n");
    r = Run("/dev/zero");
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err, "vlm media: '/dev/zero' is a device, not a file\n");
}

TEST_F(MediaCli, MaxFramesCutIsSaidOnStderrAndInJson)
{
    const std::string v = Video("c.mp4");
    Cli r = Run(v + " --frames fps=10 --max-frames 4");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "vlm media: --max-frames 4 cut the sampling: fps=10 plans 30 frames, the first 4 were kept\n");
    EXPECT_TRUE(Has(r.out, "sampled: 4 frames")) << r.out;
    r = Run(v + " --frames fps=10 --max-frames 4 --json");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(Has(r.err, "cut the sampling")) << r.err;
    cJSON *j = cJSON_Parse(r.out.c_str());
    ASSERT_NE(j, nullptr) << r.out;
    cJSON *s = cJSON_GetObjectItem(j, "sampling");
    ASSERT_NE(s, nullptr) << r.out;
    EXPECT_EQ(cJSON_GetObjectItem(s, "planned")->valuedouble, 30);
    EXPECT_EQ(cJSON_GetObjectItem(s, "kept")->valuedouble, 4);
    EXPECT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(s, "cut")));
    EXPECT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(s, "timestamps")), 4);
    EXPECT_STREQ(cJSON_GetObjectItem(j, "kind")->valuestring, "video");
    EXPECT_EQ(cJSON_GetObjectItem(j, "frames")->valuedouble, 30);
    cJSON_Delete(j);
    // a plan that fits says nothing on stderr
    r = Run(v + " --frames n=3 --json");
    EXPECT_EQ(r.status, 0);
    EXPECT_EQ(r.err, "");
    j = cJSON_Parse(r.out.c_str());
    ASSERT_NE(j, nullptr) << r.out;
    EXPECT_TRUE(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "sampling"), "cut")));
    cJSON_Delete(j);
}

TEST_F(MediaCli, DumpWritesTheFormatTheExtensionNamesAndEveryFrameWithAPattern)
{
    const std::string v = Video("d.mp4");
    Cli r = Run(v + " --dump '" + Path("first.jpg") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(Slurp(Path("first.jpg")).substr(0, 3), std::string("\xFF\xD8\xFF", 3));
    vlm_image img;
    ASSERT_EQ(vlm_image_decode_file(Path("first.jpg").c_str(), nullptr, &img), VLM_OK) << Err();
    EXPECT_EQ(FrameIndex(img), 0);
    vlm_image_free(&img);
    r = Run(v + " --frames n=3 --dump '" + Path("f_%02d.png") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    for (int i = 1; i <= 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "f_%02d.png", i);
        ASSERT_EQ(vlm_image_decode_file(Path(name).c_str(), nullptr, &img), VLM_OK) << name << ": " << Err();
        EXPECT_EQ(FrameIndex(img), 5 + 10 * (i - 1)) << name;
        vlm_image_free(&img);
        EXPECT_TRUE(Has(r.out, "dumped: " + Path(name))) << r.out;
    }
    EXPECT_NE(access(Path("f_04.png").c_str(), F_OK), 0);
    // the pattern alone samples n=8
    r = Run(v + " --dump '" + Path("g_%d.jpeg") + "' --json");
    ASSERT_EQ(r.status, 0) << r.err;
    cJSON *j = cJSON_Parse(r.out.c_str());
    ASSERT_NE(j, nullptr) << r.out;
    EXPECT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "dumped")), 8);
    cJSON_Delete(j);
    EXPECT_EQ(access(Path("g_8.jpeg").c_str(), F_OK), 0);
    // an image: one file, numbered 1 by a pattern
    Pic p(10, 10);
    WriteFile(Path("p.png"), p.Png());
    r = Run(Path("p.png") + " --dump '" + Path("one_%d.png") + "'");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(access(Path("one_1.png").c_str(), F_OK), 0);
    // refused before any work, nothing written
    for (const char *bad : {"out.gif", "out", "a_%d_%d.png", "a_%s.png", "a_%n.png"}) {
        r = Run(v + " --dump '" + Path(bad) + "'");
        EXPECT_EQ(r.status, 2) << bad;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_EQ(r.err.rfind("vlm media: ", 0), 0u) << r.err;
        EXPECT_EQ(r.out, "") << bad;
    }
}

TEST_F(MediaCli, ExifOrientationIsReportedNotApplied)
{
    Pic p(24, 16);
    WriteFile(Path("o.jpg"), WithExif(p.Jpeg(), TiffWithOrientation(6, false)));
    Cli r = Run(Path("o.jpg"));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(Has(r.out, "size: 24x16\n")) << r.out;
    EXPECT_TRUE(Has(r.out, "exif orientation: 6 (rotate 90 clockwise to display; not applied")) << r.out;
    r = Run(Path("o.jpg") + " --json");
    cJSON *j = cJSON_Parse(r.out.c_str());
    ASSERT_NE(j, nullptr) << r.out;
    EXPECT_EQ(cJSON_GetObjectItem(j, "exif_orientation")->valuedouble, 6);
    EXPECT_TRUE(cJSON_IsFalse(cJSON_GetObjectItem(j, "exif_orientation_applied")));
    EXPECT_EQ(cJSON_GetObjectItem(j, "width")->valuedouble, 24);
    cJSON_Delete(j);
    WriteFile(Path("plain.jpg"), p.Jpeg());
    r = Run(Path("plain.jpg"));
    EXPECT_FALSE(Has(r.out, "orientation")) << r.out;
}

}  // namespace
