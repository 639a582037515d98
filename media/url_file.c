/* file:// URLs, confined to the policy's media directory. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "media/url_internal.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src into dst (cap bytes); refuses %00 and malformed escapes. */
static int percent_decode(const char *src, char *dst, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; src[i]; i++) {
        char c = src[i];
        if (c == '%') {
            int h = hexval(src[i + 1]), l = h >= 0 ? hexval(src[i + 2]) : -1;
            if (h < 0 || l < 0) return vlm_errorf(VLM_ERR_FORMAT, "file URL has a malformed %%-escape");
            c = (char)(h * 16 + l);
            if (c == '\0') return vlm_errorf(VLM_ERR_INVALID, "file URL contains %%00");
            i += 2;
        } else if (c == '?' || c == '#') {
            break; /* query and fragment are not part of the path */
        }
        if (o + 1 >= cap) return vlm_errorf(VLM_ERR_INVALID, "file URL path is too long");
        dst[o++] = c;
    }
    dst[o] = '\0';
    return VLM_OK;
}

int vlm_url_fetch_file(const char *url, const vlm_url_eff *e, vlm_url_blob *out)
{
    if (!e->p.media_dir || !e->p.media_dir[0])
        return vlm_errorf(VLM_ERR_INVALID, "file:// URLs are not allowed (no media directory is configured)");
    const char *p = url + 5; /* after "file:" */
    if (strncmp(p, "//", 2) != 0) return vlm_errorf(VLM_ERR_FORMAT, "file URL must start with file://");
    p += 2;
    if (!strncasecmp(p, "localhost/", 10)) p += 9;
    if (*p != '/') return vlm_errorf(VLM_ERR_INVALID, "file URL must name an absolute path on this host");
    char path[PATH_MAX];
    int rc = percent_decode(p, path, sizeof path);
    if (rc) return rc;
    /* No "." or ".." segment at all, whatever the directories would resolve to. */
    for (const char *s = path; *s;) {
        while (*s == '/') s++;
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return vlm_errorf(VLM_ERR_INVALID, "file URL path may not contain '.' or '..' segments");
        s += len;
    }
    char root[PATH_MAX], real[PATH_MAX];
    if (!realpath(e->p.media_dir, root))
        return vlm_errorf(VLM_ERR_IO, "media directory '%s': %s", e->p.media_dir, strerror(errno));
    if (!realpath(path, real)) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t rl = strlen(root);
    int inside = rl == 1 ? real[0] == '/' && real[1] != '\0'
                         : strncmp(real, root, rl) == 0 && real[rl] == '/' && real[rl + 1] != '\0';
    if (!inside)
        return vlm_errorf(VLM_ERR_INVALID, "'%s' is outside the media directory (it resolves to '%s')", path, real);
    /* The resolved path has no symlinks left; O_NOFOLLOW refuses one swapped in since. */
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return vlm_errorf(VLM_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return vlm_errorf(VLM_ERR_INVALID, "'%s' %s", path, S_ISDIR(st.st_mode) ? "is a directory" : "is not a regular file");
    }
    if ((uint64_t)st.st_size > e->max_bytes) {
        close(fd);
        return vlm_errorf(VLM_ERR_LIMIT, "'%s' has %lld bytes, more than the limit of %zu", path,
                          (long long)st.st_size, e->max_bytes);
    }
    size_t size = (size_t)st.st_size;
    uint8_t *buf = (uint8_t *)malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return vlm_errorf(VLM_ERR_NOMEM, "out of memory reading '%s'", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got == 0) {
        free(buf);
        return vlm_errorf(VLM_ERR_FORMAT, "'%s' is empty", path);
    }
    out->data = buf;
    out->size = got;
    char what[PATH_MAX + 8];
    snprintf(what, sizeof what, "'%s'", path);
    rc = vlm_url_check_type(NULL, what, e, out);
    if (rc) vlm_url_blob_free(out);
    return rc;
}
