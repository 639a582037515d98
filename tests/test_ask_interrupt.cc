// vlm ask's chat under Ctrl-C, through the real binary: SIGINT during an answer stops that answer
// and the chat goes on with the next question; SIGINT at the prompt leaves, with status 0.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "golden_util.h"

namespace {

// Reads what is available from fd within ms milliseconds.
std::string ReadFor(int fd, int ms)
{
    std::string out;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, (size_t)n);
    }
    return out;
}

TEST(AskInterrupt, CtrlCStopsTheAnswerThenLeavesAtThePrompt)
{
    int in[2], out[2];
    ASSERT_EQ(pipe(in), 0);
    ASSERT_EQ(pipe(out), 0);
    const std::string bin = golden::vlm_bin(), model = golden::model_dir("tiny-mha");
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(bin.c_str(), bin.c_str(), "ask", "-m", model.c_str(), "--ignore-eos", "--max-tokens", "100000",
              "--quant", "ref", (char *)nullptr);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    const char q1[] = "Tell me a long story.\n";
    ASSERT_EQ(write(in[1], q1, sizeof q1 - 1), (ssize_t)sizeof q1 - 1);
    // the answer streams; Ctrl-C stops it long before the context is full
    std::string first;
    for (int i = 0; i < 300 && first.size() < 8; i++) first += ReadFor(out[0], 100);
    ASSERT_GE(first.size(), 8u) << "no answer streamed";
    kill(pid, SIGINT);
    first += ReadFor(out[0], 500);
    ASSERT_NE(first.find('\n'), std::string::npos) << "the stopped answer ends its line";
    // the chat goes on: a second question is answered (stopped the same way)
    const char q2[] = "And another.\n";
    ASSERT_EQ(write(in[1], q2, sizeof q2 - 1), (ssize_t)sizeof q2 - 1);
    std::string second;
    for (int i = 0; i < 300 && second.size() < 8; i++) second += ReadFor(out[0], 100);
    EXPECT_GE(second.size(), 8u) << "the chat did not answer after the interrupt";
    kill(pid, SIGINT);
    ReadFor(out[0], 500);
    // at the prompt, Ctrl-C leaves
    kill(pid, SIGINT);
    int status = -1;
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!WIFEXITED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        FAIL() << "vlm ask did not leave on Ctrl-C at the prompt";
    }
    EXPECT_EQ(WEXITSTATUS(status), 0);
    close(in[1]);
    close(out[0]);
}

} // namespace
