#include "core/file.h"
#include "core/error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

int vlm_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int vlm_dir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int vlm_read_file(const char *path, size_t max_bytes, char **out, size_t *len)
{
    *out = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vlm_errorf(VLM_ERR_IO, "'%s' %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return vlm_errorf(VLM_ERR_LIMIT, "'%s' is %lld bytes, more than the %zu allowed", path, (long long)st.st_size,
                          max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    if (fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return vlm_errorf(VLM_ERR_IO, "cannot read '%s'", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return VLM_OK;
}

static const char *mode_problem(mode_t m)
{
    if (S_ISREG(m) || S_ISFIFO(m)) return NULL;
    if (S_ISDIR(m)) return "is a directory";
    if (S_ISCHR(m) || S_ISBLK(m)) return "is a device, not a file";
    return "is not a regular file";
}

const char *vlm_file_kind_problem(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) return NULL;
    return mode_problem(st.st_mode);
}

int vlm_read_bytes(const char *path, size_t max_bytes, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (max_bytes > SIZE_MAX / 2) max_bytes = SIZE_MAX / 2; /* max_bytes + 1 below must not wrap */
    /* what it is, before opening it (opening some devices has effects; a FIFO waits for its writer) */
    struct stat st;
    if (stat(path, &st) == 0 && mode_problem(st.st_mode))
        return vlm_errorf(VLM_ERR_INVALID, "'%s' %s", path, mode_problem(st.st_mode));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return vlm_errorf(VLM_ERR_IO, "cannot read '%s': %s", path, strerror(e));
    }
    const char *problem = mode_problem(st.st_mode);
    if (problem) {
        close(fd);
        return vlm_errorf(VLM_ERR_INVALID, "'%s' %s", path, problem);
    }
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return vlm_errorf(VLM_ERR_LIMIT, "'%s' is %lld bytes, more than the limit of %zu", path, (long long)st.st_size,
                          max_bytes);
    }
    /* a regular file: its size (+1 to see it grew past the cap); a pipe: grow as it comes */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : (max_bytes < 65536 ? max_bytes + 1 : 65536);
    unsigned char *b = malloc(cap);
    if (!b) {
        close(fd);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    size_t n = 0;
    for (;;) {
        if (n == cap) {
            if (cap > max_bytes) break; /* read max_bytes + 1: over the cap */
            size_t ncap = cap <= max_bytes / 2 ? cap * 2 : max_bytes + 1;
            unsigned char *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                close(fd);
                return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
            }
            b = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(b);
            close(fd);
            return vlm_errorf(VLM_ERR_IO, "cannot read '%s': %s", path, strerror(e));
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    if (n > max_bytes) {
        free(b);
        return vlm_errorf(VLM_ERR_LIMIT, "'%s' is more than the limit of %zu bytes", path, max_bytes);
    }
    if (n == 0) {
        free(b);
        b = NULL;
    }
    *out = b;
    *len = n;
    return VLM_OK;
}
