// `make install` into a temporary PREFIX from the build folder this binary was built from, then what a user
// of the installed library sees: the README's build line compiles, links and runs a program against it, the
// shared library has its SONAME and exports only vlm_* symbols, the man page is there, and `vlm --version`
// says what it is.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "golden_util.h"

extern "C" {
#include "core/version.h"
}

#ifndef VLM_SOURCE_DIR
#error "the Makefile defines VLM_SOURCE_DIR, VLM_BUILD_OPT, VLM_BUILD_SAN and VLM_BUILD_CUDA for this file"
#endif

namespace {

struct Cmd {
    int status;
    std::string out;  // stdout and stderr together
};

std::string slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

// Runs cmd with bash in dir, stdout and stderr into one string.
Cmd sh(const std::string &dir, const std::string &cmd)
{
    const std::string log = dir + "/.cmd.log";
    std::string quoted;  // cmd inside single quotes: each ' becomes '\''
    for (char c : cmd) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    const std::string full = "cd '" + dir + "' && bash -c '" + quoted + "' > '" + log + "' 2>&1";
    const int st = std::system(full.c_str());
    Cmd r{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(log)};
    remove(log.c_str());
    return r;
}

bool is_symlink_to(const std::string &path, const std::string &target)
{
    char buf[4096];
    const ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
    if (n < 0) return false;
    buf[n] = 0;
    return target == buf;
}

bool is_file(const std::string &path)
{
    struct stat st;
    return lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool have(const char *tool) { return std::system((std::string("command -v ") + tool + " > /dev/null 2>&1").c_str()) == 0; }

// The installed tree, made once for all the tests here.
class Install : public ::testing::Test {
  protected:
    static std::string prefix_, work_;
    static Cmd install_;

    static void SetUpTestSuite()
    {
        char p[] = "/tmp/vlm_install_XXXXXX";
        prefix_ = mkdtemp(p);
        work_ = prefix_ + "/work";
        mkdir(work_.c_str(), 0755);
        // The same variables the build folder was built with, so that nothing is rebuilt differently; without
        // the calling make's jobserver (this may run under `make unit-test`).
        install_ = sh(prefix_, std::string("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make --no-print-directory -C '") +
                                   VLM_SOURCE_DIR + "' BUILD='" + VLM_BUILD_DIR + "' OPT='" + VLM_BUILD_OPT +
                                   "' SAN='" + VLM_BUILD_SAN + "' CUDA='" + VLM_BUILD_CUDA + "' PREFIX='" + prefix_ +
                                   "' install");
    }
    static void TearDownTestSuite() { (void)!std::system(("rm -rf '" + prefix_ + "'").c_str()); }

    void SetUp() override { ASSERT_EQ(install_.status, 0) << "make install failed:\n" << install_.out; }

    static std::string lib(const std::string &name) { return prefix_ + "/lib/" + name; }
    static std::string real_so() { return std::string("libvlm.so.") + vlm_version(); }
    static std::string major() { return std::string(vlm_version()).substr(0, std::string(vlm_version()).find('.')); }

    // The small program users write: it opens a model folder that is not there and prints the error.
    static void write_app()
    {
        std::ofstream(work_ + "/app.c") << "#include <vlm.h>\n"
                                           "#include <stdio.h>\n"
                                           "int main(void)\n"
                                           "{\n"
                                           "    vlm_engine *e;\n"
                                           "    if (vlm_engine_open(\"/nonexistent/vlm-model\", NULL, &e) != 0) {\n"
                                           "        printf(\"error: %s\\n\", vlm_last_error());\n"
                                           "        return 3;\n"
                                           "    }\n"
                                           "    vlm_engine_close(e);\n"
                                           "    return 0;\n"
                                           "}\n";
    }
    // A library built with sanitizers needs their run time in the program too.
    static std::string san() { return std::string(VLM_BUILD_SAN).empty() ? "" : std::string(" ") + VLM_BUILD_SAN; }
    static std::string pkg_env() { return "export PKG_CONFIG_PATH='" + prefix_ + "/lib/pkgconfig'; "; }
};
std::string Install::prefix_, Install::work_;
Cmd Install::install_;

TEST_F(Install, PutsEveryPieceInPlace)
{
    for (const char *f : {"/bin/vlm", "/include/vlm.h", "/lib/libvlm.a", "/lib/pkgconfig/vlm.pc",
                          "/share/man/man1/vlm.1"})
        EXPECT_TRUE(is_file(prefix_ + f)) << f;
    EXPECT_TRUE(is_file(lib(real_so())));
    EXPECT_TRUE(is_symlink_to(lib("libvlm.so." + major()), real_so()));
    EXPECT_TRUE(is_symlink_to(lib("libvlm.so"), real_so()));
    EXPECT_NE(slurp(lib("pkgconfig/vlm.pc")).find(std::string("Version: ") + vlm_version() + "\n"), std::string::npos)
        << slurp(lib("pkgconfig/vlm.pc"));
}

TEST_F(Install, SharedLibraryHasItsSonameAndExportsOnlyVlmSymbols)
{
    Cmd r = sh(work_, "readelf -d '" + lib(real_so()) + "'");
    ASSERT_EQ(r.status, 0) << r.out;
    EXPECT_NE(r.out.find("Library soname: [libvlm.so." + major() + "]"), std::string::npos) << r.out;

    r = sh(work_, "nm -D --defined-only '" + lib(real_so()) + "'");
    ASSERT_EQ(r.status, 0) << r.out;
    std::istringstream lines(r.out);
    int n_vlm = 0;
    std::vector<std::string> others;
    for (std::string line; std::getline(lines, line);) {
        std::istringstream w(line);
        std::string addr, type, name;
        if (!(w >> addr >> type >> name)) continue;
        if (name.rfind("vlm_", 0) == 0) n_vlm++;
        else others.push_back(name);
    }
    EXPECT_GT(n_vlm, 20);
    EXPECT_TRUE(others.empty()) << others.size() << " exported symbols outside vlm_*, e.g. " << others[0];
    for (const char *name : {"vlm_engine_open", "vlm_engine_ask", "vlm_engine_close", "vlm_last_error", "vlm_version"})
        EXPECT_NE(r.out.find(std::string(" ") + name + "\n"), std::string::npos) << name;
}

// The README's line, exactly as printed there: the program links against the installed library and runs from
// wherever it was built, finding libvlm.so.MAJOR through the run-time path vlm.pc adds.
TEST_F(Install, ReadmeBuildLineCompilesLinksAndRuns)
{
    const std::string readme = slurp(std::string(VLM_SOURCE_DIR) + "/README.md");
    const std::string line = "cc app.c $(pkg-config --cflags --libs --static vlm)";
    ASSERT_NE(readme.find(line), std::string::npos) << "the README no longer shows: " << line;
    write_app();
    Cmd r = sh(work_, pkg_env() + line + san());
    ASSERT_EQ(r.status, 0) << r.out;
    r = sh(work_, "env -u LD_LIBRARY_PATH ./a.out");
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_NE(r.out.find("error: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("/nonexistent/vlm-model"), std::string::npos) << r.out;

    r = sh(work_, "readelf -d a.out");
    EXPECT_NE(r.out.find("Shared library: [libvlm.so." + major() + "]"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("[" + prefix_ + "/lib]"), std::string::npos) << r.out;  // RUNPATH
}

// A dynamic link by hand (no pkg-config, so no run-time path): the program needs LD_LIBRARY_PATH (or an
// rpath, or ldconfig for a system prefix) to find the library, as the README says.
TEST_F(Install, HandLinkedProgramNeedsTheLibraryPath)
{
    write_app();
    Cmd r = sh(work_, "cc app.c -o hand -I'" + prefix_ + "/include' -L'" + prefix_ + "/lib' -lvlm" + san());
    ASSERT_EQ(r.status, 0) << r.out;
    r = sh(work_, "env -u LD_LIBRARY_PATH ./hand");
    EXPECT_EQ(r.status, 127) << r.out;
    EXPECT_NE(r.out.find("libvlm.so." + major()), std::string::npos) << r.out;
    r = sh(work_, "LD_LIBRARY_PATH='" + prefix_ + "/lib' ./hand");
    EXPECT_EQ(r.status, 3) << r.out;
    EXPECT_NE(r.out.find("/nonexistent/vlm-model"), std::string::npos) << r.out;
}

TEST_F(Install, ManPageIsInstalled)
{
    const std::string page = prefix_ + "/share/man/man1/vlm.1";
    const std::string text = slurp(page);
    EXPECT_NE(text.find(".TH VLM 1"), std::string::npos);
    EXPECT_NE(text.find(std::string("vlm ") + vlm_version()), std::string::npos);
    EXPECT_EQ(text.find("@VERSION@"), std::string::npos);
    if (!have("man") || !have("groff")) GTEST_SKIP() << "man or groff not installed: only the file was checked";
    Cmd r = sh(work_, "MANWIDTH=100 man -l '" + page + "'");
    ASSERT_EQ(r.status, 0) << r.out;
    for (const char *s : {"SYNOPSIS", "vlm ask", "--max-tokens", "vlm media", "--frames", "vlm quantize", "--version"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s << " not in\n" << r.out;
}

// The rest of the line "\n<name>: ..." in out ("" when there is none).
std::string Field(const std::string &out, const std::string &name)
{
    const size_t at = out.find("\n" + name + ": ");
    if (at == std::string::npos) return "";
    const size_t b = at + name.size() + 3, e = out.find('\n', b);
    return out.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// 12 lowercase hex digits, optionally "-dirty", or "unknown".
bool IsCommit(const std::string &c)
{
    if (c == "unknown") return true;
    if (c.size() != 12 && c != c.substr(0, 12) + "-dirty") return false;
    for (size_t i = 0; i < 12; i++)
        if (!((c[i] >= '0' && c[i] <= '9') || (c[i] >= 'a' && c[i] <= 'f'))) return false;
    return c.size() >= 12;
}

TEST_F(Install, VersionSaysVersionCommitBuildAndSimd)
{
    for (const std::string &bin : {prefix_ + "/bin/vlm", golden::vlm_bin()}) {
        for (const char *arg : {"--version", "version"}) {
            Cmd r = sh(work_, "'" + bin + "' " + arg);
            ASSERT_EQ(r.status, 0) << bin << " " << arg << ": " << r.out;
            EXPECT_EQ(r.out.rfind(std::string("vlm ") + vlm_version() + "\n", 0), 0u) << r.out;
            EXPECT_TRUE(IsCommit(Field(r.out, "commit"))) << r.out;
            const std::string build = Field(r.out, "build"), simd = Field(r.out, "simd");
            EXPECT_TRUE(build == "CUDA" || build == "no CUDA") << r.out;
            EXPECT_TRUE(simd.rfind("avx2 ", 0) == 0 || simd.rfind("scalar ", 0) == 0) << r.out;
        }
    }
    EXPECT_EQ(std::string(vlm_build_options()), std::string(VLM_BUILD_CUDA) == "1" ? "CUDA" : "no CUDA");
}

}  // namespace
