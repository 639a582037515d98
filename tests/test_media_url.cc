// image_url resolution (media/url.h): data: URLs and strict base64, the address
// policy, file:// confinement, and http:// against a real server this test runs on
// 127.0.0.1 (slow responses, endless bodies, redirects to private addresses, wrong
// content types). The server is reachable only because each test allowlists
// 127.0.0.1; the default policy must refuse it without connecting. No other
// address is ever contacted (redirect targets elsewhere are refused before any
// connection, and "localhost" comes from /etc/hosts).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include "core/error.h"
#include "media/image.h"
#include "media/url.h"
}

#include "golden_util.h"

namespace {

const std::string kImage = std::string(VLM_TEST_DATA) + "/image/";

bool ErrorHas(const char *needle) { return std::strstr(vlm_last_error(), needle) != nullptr; }

std::string ReadStr(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string Base64(const std::string &in)
{
    static const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    size_t i = 0;
    for (; i + 3 <= in.size(); i += 3) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        for (int k = 3; k >= 0; k--) out += a[(v >> (6 * k)) & 63];
    }
    if (in.size() - i == 1) {
        uint32_t v = uint8_t(in[i]) << 16;
        out += a[v >> 18], out += a[(v >> 12) & 63], out += "==";
    } else if (in.size() - i == 2) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out += a[v >> 18], out += a[(v >> 12) & 63], out += a[(v >> 6) & 63], out += '=';
    }
    return out;
}

vlm_url_policy Policy()
{
    vlm_url_policy p;
    vlm_url_policy_default(&p);
    return p;
}

// ---- a small HTTP server on 127.0.0.1 ------------------------------------------

bool SendAll(int fd, const std::string &s)
{
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += size_t(n);
    }
    return true;
}

class TestServer {
  public:
    using Handler = std::function<void(int fd, const std::string &path, TestServer &)>;

    explicit TestServer(Handler h) : handler_(std::move(h))
    {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        EXPECT_EQ(bind(fd_, (sockaddr *)&a, sizeof a), 0);
        EXPECT_EQ(listen(fd_, 16), 0);
        socklen_t len = sizeof a;
        getsockname(fd_, (sockaddr *)&a, &len);
        port_ = ntohs(a.sin_port);
        accept_thread_ = std::thread([this] { AcceptLoop(); });
    }
    ~TestServer()
    {
        stop_ = true;
        accept_thread_.join();
        std::vector<std::thread> t;
        {
            std::lock_guard<std::mutex> g(mu_);
            t.swap(workers_);
        }
        for (auto &w : t) w.join();
        close(fd_);
    }
    int port() const { return port_; }
    int connections() const { return connections_; }
    bool stopping() const { return stop_; }
    std::string url(const std::string &path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  private:
    void AcceptLoop()
    {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) continue;
            int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            connections_++;
            std::lock_guard<std::mutex> g(mu_);
            workers_.emplace_back([this, c] { Serve(c); });
        }
    }
    void Serve(int c)
    {
        std::string req;
        char buf[4096];
        auto t0 = std::chrono::steady_clock::now();
        while (req.find("\r\n\r\n") == std::string::npos && !stop_ &&
               std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3)) {
            pollfd p{c, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) continue;
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            req.append(buf, size_t(n));
        }
        size_t sp1 = req.find(' '), sp2 = req.find(' ', sp1 + 1);
        if (sp1 != std::string::npos && sp2 != std::string::npos) handler_(c, req.substr(sp1 + 1, sp2 - sp1 - 1), *this);
        close(c);
    }

    Handler handler_;
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> connections_{0};
    std::thread accept_thread_;
    std::mutex mu_;
    std::vector<std::thread> workers_;
};

std::string Response(int code, const std::string &ctype, const std::string &body, const std::string &extra = "")
{
    std::string r = "HTTP/1.1 " + std::to_string(code) + " X\r\nConnection: close\r\n";
    if (!ctype.empty()) r += "Content-Type: " + ctype + "\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n";
    return r + body;
}

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Every behaviour the tests need, by path.
void Handle(int fd, const std::string &path, TestServer &srv)
{
    static const std::string png = ReadStr(kImage + "rgb8.png");
    std::string host = "http://127.0.0.1:" + std::to_string(srv.port());
    if (path == "/png") {
        SendAll(fd, Response(200, "image/png", png));
    } else if (path == "/png-typed-jpeg") {
        SendAll(fd, Response(200, "image/jpeg", png));
    } else if (path == "/html") {
        SendAll(fd, Response(200, "text/html; charset=utf-8", "<html><body>hello</body></html>"));
    } else if (path == "/octet") {
        SendAll(fd, Response(200, "application/octet-stream", png));
    } else if (path == "/untyped") {
        SendAll(fd, Response(200, "", png));
    } else if (path == "/404") {
        SendAll(fd, Response(404, "text/plain", "no"));
    } else if (path == "/big-declared") {
        SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000000\r\n\r\n" + png);
    } else if (path == "/endless") { // no length, bytes until the client gives up (bounded here too)
        SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n" + png);
        std::string chunk(65536, 'x');
        for (int i = 0; i < 1024 && !srv.stopping(); i++)
            if (!SendAll(fd, chunk)) break;
    } else if (path == "/slow-body") { // one byte every 100 ms
        SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n");
        for (int i = 0; i < 40 && !srv.stopping(); i++) {
            if (!SendAll(fd, png.substr(i % png.size(), 1))) break;
            Sleep(100);
        }
    } else if (path == "/silent") { // accepts, says nothing
        for (int i = 0; i < 40 && !srv.stopping(); i++) Sleep(100);
    } else if (path == "/to-private") {
        SendAll(fd, Response(302, "text/plain", "", "Location: http://10.1.2.3/x.png\r\n"));
    } else if (path == "/to-metadata") {
        SendAll(fd, Response(301, "text/plain", "", "Location: http://169.254.169.254/latest/meta-data/\r\n"));
    } else if (path == "/to-file") {
        SendAll(fd, Response(302, "text/plain", "", "Location: file:///etc/passwd\r\n"));
    } else if (path == "/to-localhost") {
        SendAll(fd, Response(307, "text/plain", "",
                             "Location: http://localhost:" + std::to_string(srv.port()) + "/png\r\n"));
    } else if (path == "/relative") {
        SendAll(fd, Response(302, "text/plain", "", "Location: /png\r\n"));
    } else if (path.rfind("/chain/", 0) == 0) { // /chain/N: N more redirects, then the image
        int n = std::atoi(path.c_str() + 7);
        std::string next = n > 0 ? "/chain/" + std::to_string(n - 1) : "/png";
        SendAll(fd, Response(302, "text/plain", "", "Location: " + host + next + "\r\n"));
    } else {
        SendAll(fd, Response(404, "text/plain", "unknown"));
    }
}

struct Fetch {
    int rc;
    vlm_url_blob blob;
    double ms;
};

Fetch Get(const std::string &url, const vlm_url_policy &p)
{
    Fetch f;
    auto t0 = std::chrono::steady_clock::now();
    f.rc = vlm_url_fetch(url.c_str(), &p, &f.blob);
    f.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return f;
}

const char *kLoopback[] = {"127.0.0.1"};

vlm_url_policy LoopbackPolicy()
{
    vlm_url_policy p = Policy();
    p.allow_addrs = kLoopback;
    p.n_allow_addrs = 1;
    return p;
}

// ---------------------------------------------------------------------------

TEST(MediaUrlHttp, DefaultPolicyRefusesLoopbackWithoutConnecting)
{
    TestServer srv(Handle);
    vlm_url_policy p = Policy();
    Fetch f = Get(srv.url("/png"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("address 127.0.0.1 is loopback and not allowed")) << vlm_last_error();
    f = Get("http://localhost:" + std::to_string(srv.port()) + "/png", p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("resolves to")) << vlm_last_error();
    EXPECT_TRUE(ErrorHas("loopback")) << vlm_last_error();
    EXPECT_EQ(srv.connections(), 0);
}

TEST(MediaUrlHttp, FetchesWhenAllowlistedAndChecksTheType)
{
    TestServer srv(Handle);
    vlm_url_policy p = LoopbackPolicy();
    std::string png = ReadStr(kImage + "rgb8.png");
    Fetch f = Get(srv.url("/png"), p);
    ASSERT_EQ(f.rc, VLM_OK) << vlm_last_error();
    EXPECT_EQ(std::string((char *)f.blob.data, f.blob.size), png);
    EXPECT_EQ(f.blob.kind, VLM_MEDIA_IMAGE);
    EXPECT_EQ(f.blob.format, VLM_IMAGE_PNG);
    EXPECT_STREQ(f.blob.mime, "image/png");
    vlm_url_blob_free(&f.blob);

    for (const char *ok : {"/octet", "/untyped", "/relative"}) {
        SCOPED_TRACE(ok);
        f = Get(srv.url(ok), p);
        ASSERT_EQ(f.rc, VLM_OK) << vlm_last_error();
        EXPECT_EQ(f.blob.size, png.size());
        vlm_url_blob_free(&f.blob);
    }
    f = Get(srv.url("/png-typed-jpeg"), p);
    EXPECT_EQ(f.rc, VLM_ERR_FORMAT);
    EXPECT_TRUE(ErrorHas("says image/jpeg but the data is png")) << vlm_last_error();
    EXPECT_EQ(f.blob.data, nullptr);
    f = Get(srv.url("/html"), p);
    EXPECT_EQ(f.rc, VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(ErrorHas("has type 'text/html', not an image")) << vlm_last_error();
    f = Get(srv.url("/404"), p);
    EXPECT_EQ(f.rc, VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("HTTP 404")) << vlm_last_error();

    // The image decodes from the URL like from the file.
    vlm_image a, b;
    ASSERT_EQ(vlm_url_load_image(srv.url("/png").c_str(), &p, nullptr, &a), VLM_OK) << vlm_last_error();
    ASSERT_EQ(vlm_image_decode_file((kImage + "rgb8.png").c_str(), nullptr, &b), VLM_OK);
    ASSERT_EQ(a.width, b.width);
    EXPECT_EQ(std::memcmp(a.rgb, b.rgb, size_t(a.width) * a.height * 3), 0);
    vlm_image_free(&a);
    vlm_image_free(&b);

    // Other switches: allow_private admits it too; a domain allowlist refuses the literal.
    vlm_url_policy q = Policy();
    q.allow_private = 1;
    f = Get(srv.url("/png"), q);
    EXPECT_EQ(f.rc, VLM_OK) << vlm_last_error();
    vlm_url_blob_free(&f.blob);
    const char *dom[] = {"example.com"};
    p.allow_domains = dom;
    p.n_allow_domains = 1;
    f = Get(srv.url("/png"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("host '127.0.0.1' is not in the allowed domains")) << vlm_last_error();
    p.allow_http = 0;
    f = Get(srv.url("/png"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("plain http:// is not allowed")) << vlm_last_error();
}

TEST(MediaUrlHttp, RedirectsAreRecheckedAndCounted)
{
    TestServer srv(Handle);
    vlm_url_policy p = LoopbackPolicy();
    Fetch f = Get(srv.url("/to-private"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("redirect 1: address 10.1.2.3 is private and not allowed")) << vlm_last_error();
    f = Get(srv.url("/to-metadata"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("169.254.169.254 is link-local (cloud metadata)")) << vlm_last_error();
    f = Get(srv.url("/to-file"), p);
    EXPECT_EQ(f.rc, VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(ErrorHas("redirect 1: URL scheme 'file' is not allowed here")) << vlm_last_error();
    // localhost resolves (from /etc/hosts) to 127.0.0.1, and maybe ::1, which is dropped.
    f = Get(srv.url("/to-localhost"), p);
    EXPECT_EQ(f.rc, VLM_OK) << vlm_last_error();
    vlm_url_blob_free(&f.blob);
    // 3 redirects are allowed, a 4th is not; fewer when the policy says so.
    f = Get(srv.url("/chain/2"), p);
    EXPECT_EQ(f.rc, VLM_OK) << vlm_last_error();
    vlm_url_blob_free(&f.blob);
    int before = srv.connections();
    f = Get(srv.url("/chain/3"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("too many redirects (more than 3)")) << vlm_last_error();
    EXPECT_EQ(srv.connections() - before, 4);
    p.max_redirects = 0;
    f = Get(srv.url("/relative"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("too many redirects (more than 0)")) << vlm_last_error();
    p.max_redirects = 99; // more than 3 is treated as 3
    f = Get(srv.url("/chain/3"), p);
    EXPECT_EQ(f.rc, VLM_ERR_INVALID);
}

TEST(MediaUrlHttp, SizeCapsAndTimeouts)
{
    TestServer srv(Handle);
    vlm_url_policy p = LoopbackPolicy();
    p.max_bytes = 1 << 20;
    Fetch f = Get(srv.url("/big-declared"), p);
    EXPECT_EQ(f.rc, VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("larger than the limit of 1048576 bytes")) << vlm_last_error();
    f = Get(srv.url("/endless"), p);
    EXPECT_EQ(f.rc, VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("larger than the limit of 1048576 bytes")) << vlm_last_error();
    EXPECT_EQ(f.blob.data, nullptr);
    // A server that drips or says nothing hits the time limit.
    p.timeout_ms = 500;
    f = Get(srv.url("/slow-body"), p);
    EXPECT_EQ(f.rc, VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("timed out")) << vlm_last_error();
    EXPECT_LT(f.ms, 2000.0);
    f = Get(srv.url("/silent"), p);
    EXPECT_EQ(f.rc, VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("timed out")) << vlm_last_error();
    EXPECT_LT(f.ms, 2000.0);
    // ... and so does one slower than the minimum speed over its window.
    p.timeout_ms = 10000;
    p.min_speed_bps = 100;
    p.min_speed_window_s = 1;
    f = Get(srv.url("/slow-body"), p);
    EXPECT_EQ(f.rc, VLM_ERR_IO);
    EXPECT_TRUE(ErrorHas("timed out")) << vlm_last_error();
    EXPECT_LT(f.ms, 3000.0);
}

TEST(MediaUrlHttp, CliUsesTheSamePolicy)
{
    TestServer srv(Handle);
    std::string out = "/tmp/vlm_url_cli_" + std::to_string(getpid()) + ".out";
    std::string err = "/tmp/vlm_url_cli_" + std::to_string(getpid()) + ".err";
    auto run = [&](const std::string &args) {
        std::string cmd = golden::vlm_bin() + " media " + args + " > " + out + " 2> " + err;
        int st = std::system(cmd.c_str());
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    };
    EXPECT_EQ(run(srv.url("/png")), 1);
    std::string e = ReadStr(err);
    EXPECT_EQ(e, "vlm media: address 127.0.0.1 is loopback and not allowed\n");
    EXPECT_EQ(srv.connections(), 0);
    EXPECT_EQ(run("--allow-addr 127.0.0.1 " + srv.url("/png")), 0) << ReadStr(err);
    EXPECT_NE(ReadStr(out).find("format: png\nsize: 13x7\n"), std::string::npos) << ReadStr(out);
    EXPECT_EQ(run("--allow-addr 127.0.0.1 " + srv.url("/to-private")), 1);
    EXPECT_EQ(ReadStr(err), "vlm media: redirect 1: address 10.1.2.3 is private and not allowed\n");
    EXPECT_EQ(run("--allow-private " + srv.url("/png")), 0) << ReadStr(err);
    unlink(out.c_str());
    unlink(err.c_str());
}

// ---- data: URLs ---------------------------------------------------------------

TEST(MediaUrlData, DecodesAndChecksTheDeclaredType)
{
    std::string png = ReadStr(kImage + "rgb8.png");
    std::string jpg = ReadStr(kImage + "rgb420.jpg");
    vlm_url_blob b;
    std::string u = "data:image/png;base64," + Base64(png);
    ASSERT_EQ(vlm_url_fetch(u.c_str(), nullptr, &b), VLM_OK) << vlm_last_error();
    EXPECT_EQ(std::string((char *)b.data, b.size), png);
    EXPECT_EQ(b.format, VLM_IMAGE_PNG);
    EXPECT_STREQ(b.mime, "image/png");
    vlm_url_blob_free(&b);
    u = "DATA:Image/JPEG;name=x.jpg;BASE64," + Base64(jpg); // case-insensitive, parameters allowed
    ASSERT_EQ(vlm_url_decode_data(u.c_str(), nullptr, &b), VLM_OK) << vlm_last_error();
    EXPECT_EQ(b.format, VLM_IMAGE_JPEG);
    vlm_url_blob_free(&b);

    struct {
        std::string url;
        int code;
        const char *msg;
    } bad[] = {
        {"data:image/jpeg;base64," + Base64(png), VLM_ERR_FORMAT, "data URL says image/jpeg but the data is png"},
        {"data:image/png;base64," + Base64("GIF89a not really"), VLM_ERR_FORMAT, "says image/png but the data is"},
        {"data:image/png;base64," + Base64("hello world!"), VLM_ERR_FORMAT, "but the data is not an image"},
        {"data:image/png,%89PNG", VLM_ERR_UNSUPPORTED, "only ';base64,' data URLs"},
        {"data:text/plain;base64," + Base64("hello"), VLM_ERR_UNSUPPORTED, "has type 'text/plain'"},
        {"data:image/svg+xml;base64," + Base64("<svg/>"), VLM_ERR_UNSUPPORTED, "image/svg+xml, not an image type"},
        {"data:video/mp4;base64," + Base64(std::string("\0\0\0\x18" "ftypisom", 12)), VLM_ERR_UNSUPPORTED,
         "only images are accepted"},
        {"data:;base64," + Base64(png), VLM_ERR_FORMAT, "no valid media type"},
        {"data:image/png;base64", VLM_ERR_FORMAT, "without ','"},
        {"data:image/png;base64,", VLM_ERR_FORMAT, "base64: no data"},
        {"data:image/png;base64," + Base64(png).replace(8, 1, " "), VLM_ERR_FORMAT, "invalid character ' ' at offset 8"},
        {"data:image/png;base64," + Base64(png).replace(8, 1, "\n"), VLM_ERR_FORMAT, "invalid byte 0x0a"},
        {"data:image/png;base64," + Base64(png).replace(4, 1, "-"), VLM_ERR_FORMAT, "invalid character '-'"},
        {"data:image/png;base64," + Base64(png).substr(1), VLM_ERR_FORMAT, "is not a multiple of 4"},
        {"data:image/png;base64,iVBO=RwK", VLM_ERR_FORMAT, "'=' before the end"},
    };
    for (auto &c : bad) {
        SCOPED_TRACE(c.url.substr(0, 60));
        EXPECT_EQ(vlm_url_fetch(c.url.c_str(), nullptr, &b), c.code) << vlm_last_error();
        EXPECT_TRUE(ErrorHas(c.msg)) << vlm_last_error();
        EXPECT_EQ(b.data, nullptr);
    }
    // The cap applies to the encoded length, before anything is decoded.
    vlm_url_policy p = Policy();
    p.max_bytes = 100;
    u = "data:image/png;base64," + Base64(png);
    EXPECT_EQ(vlm_url_fetch(u.c_str(), &p, &b), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("more than the limit of 100")) << vlm_last_error();
    // Videos pass when the policy accepts them.
    p = Policy();
    p.accept = VLM_URL_ACCEPT_VIDEO;
    u = "data:video/mp4;base64," + Base64(std::string("\0\0\0\x18" "ftypisom\0\0\0\0isom", 20));
    ASSERT_EQ(vlm_url_fetch(u.c_str(), &p, &b), VLM_OK) << vlm_last_error();
    EXPECT_EQ(b.kind, VLM_MEDIA_VIDEO);
    vlm_url_blob_free(&b);
}

TEST(MediaUrlData, StrictBase64)
{
    uint8_t out[16];
    size_t n;
    struct {
        const char *in, *out;
    } good[] = {{"Zg==", "f"}, {"Zm8=", "fo"}, {"Zm9v", "foo"}, {"Zm9vYg==", "foob"}, {"Zm9vYmFy", "foobar"}};
    for (auto &g : good) {
        ASSERT_EQ(vlm_base64_decode(g.in, std::strlen(g.in), out, sizeof out, &n), VLM_OK) << g.in;
        EXPECT_EQ(std::string((char *)out, n), g.out);
    }
    for (const char *b : {"Zh==", "Zm9=", "Z===", "====", "Zm9v====", "Zm 9", "Zm9\x80", "Zg=A"}) {
        SCOPED_TRACE(b);
        EXPECT_EQ(vlm_base64_decode(b, std::strlen(b), out, sizeof out, &n), VLM_ERR_FORMAT) << vlm_last_error();
    }
    EXPECT_EQ(vlm_base64_decode("Zm9vYmFy", 8, out, 5, &n), VLM_ERR_LIMIT);
}

// ---- addresses and URL checks (no network) ---------------------------------------

TEST(MediaUrlPolicy, AddressKinds)
{
    struct {
        const char *ip, *kind; // nullptr: public
    } cases[] = {
        {"8.8.8.8", nullptr},
        {"1.1.1.1", nullptr},
        {"172.32.0.1", nullptr},
        {"100.128.0.1", nullptr},
        {"2606:4700::1111", nullptr},
        {"::ffff:8.8.8.8", nullptr},
        {"127.0.0.1", "loopback"},
        {"127.255.0.9", "loopback"},
        {"10.0.0.1", "private"},
        {"172.16.5.4", "private"},
        {"192.168.1.1", "private"},
        {"100.64.0.1", "shared (CGNAT)"},
        {"100.100.100.200", "shared (CGNAT)"},
        {"169.254.169.254", "link-local (cloud metadata)"},
        {"168.63.129.16", "cloud metadata"},
        {"0.0.0.0", "this-network"},
        {"224.0.0.1", "multicast"},
        {"255.255.255.255", "reserved"},
        {"198.18.0.1", "benchmarking"},
        {"::1", "loopback"},
        {"::", "unspecified"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::ffff:169.254.169.254", "link-local (cloud metadata)"},
        {"64:ff9b::a00:1", "private"},
        {"2002:7f00:1::", "loopback"},
        {"fe80::1", "link-local"},
        {"fd00:ec2::254", "unique local (private)"},
        {"fc00::1", "unique local (private)"},
        {"2001:db8::1", "documentation"},
        {"2001::1", "IETF protocol assignments"},
        {"ff02::1", "multicast"},
        {"::7f00:1", "IPv4-compatible (deprecated)"},
        {"example.com", "not an IP address"},
    };
    for (auto &c : cases) {
        SCOPED_TRACE(c.ip);
        const char *k = vlm_url_address_kind(c.ip);
        if (!c.kind)
            EXPECT_EQ(k, nullptr) << k;
        else {
            ASSERT_NE(k, nullptr);
            EXPECT_STREQ(k, c.kind);
        }
    }
}

TEST(MediaUrlPolicy, AllowlistsOfAddressesAndDomains)
{
    vlm_url_policy p = Policy();
    const char *addrs[] = {"10.0.0.0/8", "not a cidr", "fd00::/8", "192.168.7.7"};
    p.allow_addrs = addrs;
    p.n_allow_addrs = 4;
    EXPECT_EQ(vlm_url_address_allowed("10.200.3.4", &p), VLM_OK);
    EXPECT_EQ(vlm_url_address_allowed("::ffff:10.0.0.1", &p), VLM_OK);
    EXPECT_EQ(vlm_url_address_allowed("fd12::1", &p), VLM_OK);
    EXPECT_EQ(vlm_url_address_allowed("192.168.7.7", &p), VLM_OK);
    EXPECT_EQ(vlm_url_address_allowed("8.8.8.8", &p), VLM_OK);
    EXPECT_EQ(vlm_url_address_allowed("192.168.7.8", &p), VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("192.168.7.8 is private")) << vlm_last_error();
    EXPECT_EQ(vlm_url_address_allowed("127.0.0.1", &p), VLM_ERR_INVALID);
    EXPECT_EQ(vlm_url_address_allowed("127.0.0.1", nullptr), VLM_ERR_INVALID);

    vlm_url_policy d = Policy();
    const char *doms[] = {"example.com", ".cdn.example.org"};
    d.allow_domains = doms;
    d.n_allow_domains = 2;
    for (const char *ok : {"https://example.com/a.png", "https://img.EXAMPLE.com./a.png", "http://x.cdn.example.org/i"})
        EXPECT_EQ(vlm_url_check(ok, &d), VLM_OK) << ok << ": " << vlm_last_error();
    for (const char *no : {"https://badexample.com/a.png", "https://example.com.evil.net/", "https://cdn.example.org/",
                           "http://8.8.8.8/x.png"}) {
        EXPECT_EQ(vlm_url_check(no, &d), VLM_ERR_INVALID) << no;
        EXPECT_TRUE(ErrorHas("is not in the allowed domains")) << vlm_last_error();
    }
}

TEST(MediaUrlPolicy, UrlChecksWithoutNetwork)
{
    vlm_url_policy p = Policy();
    struct {
        const char *url;
        int code;
        const char *msg;
    } cases[] = {
        {"https://example.com/cat.png", VLM_OK, ""},
        {"https://user:pw@example.com/cat.png", VLM_ERR_INVALID, "credentials in URLs are not allowed"},
        {"http://127.0.0.1/x", VLM_ERR_INVALID, "127.0.0.1 is loopback"},
        {"http://[::1]:8080/x", VLM_ERR_INVALID, "::1 is loopback"},
        {"http://[::ffff:10.0.0.1]/x", VLM_ERR_INVALID, "is private"},
        {"http://0x7f000001/x", VLM_ERR_INVALID, "127.0.0.1 is loopback"}, // normalised by libcurl
        {"http://2130706433/x", VLM_ERR_INVALID, "127.0.0.1 is loopback"},
        {"http://169.254.169.254/latest/meta-data/", VLM_ERR_INVALID, "cloud metadata"},
        {"http://:80/x", VLM_ERR_FORMAT, "malformed URL"},
        {"http://exa mple.com/", VLM_ERR_FORMAT, "malformed URL"},
        {"ftp://example.com/x.png", VLM_ERR_UNSUPPORTED, "not an http(s) URL"},
    };
    for (auto &c : cases) {
        SCOPED_TRACE(c.url);
        EXPECT_EQ(vlm_url_check(c.url, &p), c.code) << vlm_last_error();
        if (c.code) {
            EXPECT_TRUE(ErrorHas(c.msg)) << vlm_last_error();
        }
    }
    vlm_url_blob b;
    EXPECT_EQ(vlm_url_fetch("gopher://example.com/", &p, &b), VLM_ERR_UNSUPPORTED);
    EXPECT_TRUE(ErrorHas("URL scheme 'gopher' is not supported")) << vlm_last_error();
    EXPECT_EQ(vlm_url_fetch("/etc/passwd", &p, &b), VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("is not a URL")) << vlm_last_error();
    EXPECT_TRUE(vlm_url_is_url("HTTPS://x"));
    EXPECT_TRUE(vlm_url_is_url("data:image/png;base64,"));
    EXPECT_FALSE(vlm_url_is_url("photo.jpg"));
}

// ---- file:// ---------------------------------------------------------------------

class MediaUrlFile : public ::testing::Test {
  protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/vlm_url_file_XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        root_ = tmpl;
        media_ = root_ + "/media";
        mkdir(media_.c_str(), 0755);
        mkdir((media_ + "/sub").c_str(), 0755);
        png_ = ReadStr(kImage + "rgb8.png");
        Write(media_ + "/a.png", png_);
        Write(media_ + "/sub/b c.png", png_);
        Write(media_ + "/notes.txt", "just text");
        Write(root_ + "/secret.png", png_);
        ASSERT_EQ(symlink((root_ + "/secret.png").c_str(), (media_ + "/escape.png").c_str()), 0);
        ASSERT_EQ(symlink((media_ + "/a.png").c_str(), (media_ + "/inside.png").c_str()), 0);
        ASSERT_EQ(symlink(root_.c_str(), (media_ + "/up").c_str()), 0);
        p_ = Policy();
        p_.media_dir = media_.c_str();
    }
    void TearDown() override { std::system(("rm -rf " + root_).c_str()); }
    static void Write(const std::string &path, const std::string &data) { std::ofstream(path, std::ios::binary) << data; }
    int Fetch(const std::string &url, vlm_url_blob *b) { return vlm_url_fetch(url.c_str(), &p_, b); }

    std::string root_, media_, png_;
    vlm_url_policy p_;
};

TEST_F(MediaUrlFile, OnlyRegularFilesBelowTheMediaDirectory)
{
    vlm_url_blob b;
    ASSERT_EQ(Fetch("file://" + media_ + "/a.png", &b), VLM_OK) << vlm_last_error();
    EXPECT_EQ(std::string((char *)b.data, b.size), png_);
    EXPECT_EQ(b.format, VLM_IMAGE_PNG);
    vlm_url_blob_free(&b);
    ASSERT_EQ(Fetch("file://localhost" + media_ + "/sub/b%20c.png", &b), VLM_OK) << vlm_last_error();
    vlm_url_blob_free(&b);
    ASSERT_EQ(Fetch("file://" + media_ + "/inside.png", &b), VLM_OK) << vlm_last_error(); // symlink staying inside
    vlm_url_blob_free(&b);

    struct {
        std::string url;
        int code;
        const char *msg;
    } bad[] = {
        {"file://" + media_ + "/../secret.png", VLM_ERR_INVALID, "may not contain '.' or '..' segments"},
        {"file://" + media_ + "/%2e%2e/secret.png", VLM_ERR_INVALID, "'.' or '..' segments"},
        {"file://" + media_ + "/./a.png", VLM_ERR_INVALID, "'.' or '..' segments"},
        {"file://" + media_ + "/escape.png", VLM_ERR_INVALID, "is outside the media directory"},
        {"file://" + media_ + "/up/secret.png", VLM_ERR_INVALID, "is outside the media directory"},
        {"file://" + root_ + "/secret.png", VLM_ERR_INVALID, "is outside the media directory"},
        {"file://" + media_ + "x/a.png", VLM_ERR_IO, "cannot open"},
        {"file://" + media_ + "/sub", VLM_ERR_INVALID, "is a directory"},
        {"file://" + media_ + "/missing.png", VLM_ERR_IO, "No such file"},
        {"file://" + media_ + "/a.png%00.txt", VLM_ERR_INVALID, "%00"},
        {"file://" + media_ + "/notes.txt", VLM_ERR_UNSUPPORTED, "is not an image vlm decodes"},
        {"file://otherhost" + media_ + "/a.png", VLM_ERR_INVALID, "absolute path on this host"},
        {"file:" + media_ + "/a.png", VLM_ERR_FORMAT, "must start with file://"},
    };
    for (auto &c : bad) {
        SCOPED_TRACE(c.url);
        EXPECT_EQ(Fetch(c.url, &b), c.code) << vlm_last_error();
        EXPECT_TRUE(ErrorHas(c.msg)) << vlm_last_error();
        EXPECT_EQ(b.data, nullptr);
    }
    p_.max_bytes = 100;
    EXPECT_EQ(Fetch("file://" + media_ + "/a.png", &b), VLM_ERR_LIMIT);
    EXPECT_TRUE(ErrorHas("more than the limit of 100")) << vlm_last_error();
    p_.media_dir = nullptr;
    EXPECT_EQ(Fetch("file://" + media_ + "/a.png", &b), VLM_ERR_INVALID);
    EXPECT_TRUE(ErrorHas("file:// URLs are not allowed")) << vlm_last_error();
}

} // namespace
