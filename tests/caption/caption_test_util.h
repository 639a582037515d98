// Helpers shared by the caption tests (test_caption.cc, test_caption_cli.cc): files read whole, lines,
// and a fresh folder under /tmp removed with the object.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace captest {

inline std::string Slurp(const std::string &path)
{
    std::ifstream f(path, std::ios::binary);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

inline std::vector<std::string> Lines(const std::string &s)
{
    std::vector<std::string> v;
    std::stringstream ss(s);
    for (std::string l; std::getline(ss, l);) v.push_back(l);
    return v;
}

// /tmp/<prefix><pid>_<name>, emptied when made and removed with the object.
struct TmpDir {
    std::string path;
    explicit TmpDir(const std::string &name, const char *prefix = "vlm_cap_")
    {
        path = "/tmp/" + std::string(prefix) + std::to_string(getpid()) + "_" + name;
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TmpDir() { std::filesystem::remove_all(path); }
    std::string operator/(const std::string &n) const { return path + "/" + n; }
};

} // namespace captest
