/* Small helpers of caption/: hashing, atomic writes, folders, times. */
#include "caption/caption_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

uint64_t vlm_cap_fnv1a64(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

char *vlm_cap_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

int vlm_cap_mkdirs(const char *path, int last_is_file)
{
    char *p = vlm_cap_strdup(path);
    if (!p) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    size_t n = strlen(p);
    if (last_is_file) {
        char *slash = strrchr(p, '/');
        if (!slash) {
            free(p);
            return VLM_OK;
        }
        *slash = '\0';
        n = strlen(p);
    }
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int rc = vlm_errorf(VLM_ERR_IO, "cannot create folder '%s': %s", p, strerror(errno));
            free(p);
            return rc;
        }
        p[i] = c;
    }
    struct stat st;
    int rc = n && (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) ? vlm_errorf(VLM_ERR_IO, "'%s' is not a folder", p)
                                                              : VLM_OK;
    free(p);
    return rc;
}

int vlm_cap_write_atomic(const char *path, const void *data, size_t n)
{
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    /* a fixed name: one left by a process killed while writing is overwritten (and renamed away) next time */
    snprintf(tmp, len, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = vlm_errorf(VLM_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    const char *p = data;
    size_t left = n;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int rc = vlm_errorf(VLM_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return rc;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int rc = vlm_errorf(VLM_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int rc = vlm_errorf(VLM_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    return VLM_OK;
}

int vlm_cap_read_whole(const char *path, char **data, size_t *n)
{
    *data = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
        }
        size_t got = fread(b + len, 1, cap - len - 1, f);
        len += got;
        if (len + 1 < cap) break;
        char *nb = realloc(b, cap * 2);
        if (!nb) free(b);
        b = nb;
        cap *= 2;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return vlm_errorf(VLM_ERR_IO, "read error on '%s'", path);
    }
    b[len] = '\0';
    *data = b;
    *n = len;
    return VLM_OK;
}

void vlm_cap_format_time(int64_t ms, char sep, char *buf)
{
    if (ms < 0) ms = 0;
    int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, f = ms % 1000;
    snprintf(buf, 24, "%02lld:%02lld:%02lld%c%03lld", (long long)h, (long long)m, (long long)s, sep, (long long)f);
}
