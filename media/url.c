/* image_url entry points: policy defaults, scheme dispatch, data: URLs and the
 * declared-type check shared by every scheme. */
#include "media/url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/error.h"
#include "media/url_internal.h"

void vlm_url_policy_default(vlm_url_policy *p)
{
    memset(p, 0, sizeof *p);
    p->max_bytes = VLM_URL_DEFAULT_MAX_BYTES;
    p->connect_timeout_ms = 5000;
    p->timeout_ms = 30000;
    p->min_speed_bps = 1024;
    p->min_speed_window_s = 10;
    p->max_redirects = VLM_URL_MAX_REDIRECTS;
    p->allow_http = 1;
    p->accept = VLM_URL_ACCEPT_IMAGE;
}

void vlm_url_effective(const vlm_url_policy *pol, vlm_url_eff *e)
{
    if (pol)
        e->p = *pol;
    else
        vlm_url_policy_default(&e->p);
    e->max_bytes = e->p.max_bytes ? e->p.max_bytes : VLM_URL_DEFAULT_MAX_BYTES;
    e->connect_ms = e->p.connect_timeout_ms > 0 ? e->p.connect_timeout_ms : 5000;
    e->total_ms = e->p.timeout_ms > 0 ? e->p.timeout_ms : 30000;
    e->speed_bps = e->p.min_speed_bps > 0 ? e->p.min_speed_bps : 1024;
    e->speed_s = e->p.min_speed_window_s > 0 ? e->p.min_speed_window_s : 10;
    e->max_redirects = e->p.max_redirects < 0 ? 0
                       : e->p.max_redirects > VLM_URL_MAX_REDIRECTS ? VLM_URL_MAX_REDIRECTS
                                                                     : e->p.max_redirects;
    e->accept = e->p.accept ? e->p.accept : VLM_URL_ACCEPT_IMAGE;
}

void vlm_url_blob_free(vlm_url_blob *b)
{
    if (!b) return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

static int has_prefix_ci(const char *s, const char *p)
{
    return strncasecmp(s, p, strlen(p)) == 0;
}

int vlm_url_is_url(const char *s)
{
    return s && (has_prefix_ci(s, "data:") || has_prefix_ci(s, "http://") ||
                 has_prefix_ci(s, "https://") || has_prefix_ci(s, "file:"));
}

/* ---- what the bytes are --------------------------------------------------- */

static int looks_like_video(const uint8_t *p, size_t n)
{
    if (n >= 12 && !memcmp(p + 4, "ftyp", 4)) return 1; /* MP4 / MOV / 3GP (AVIF caught before) */
    if (n >= 8 && (!memcmp(p + 4, "moov", 4) || !memcmp(p + 4, "mdat", 4) ||
                   !memcmp(p + 4, "wide", 4) || !memcmp(p + 4, "free", 4)))
        return 1; /* old QuickTime */
    if (n >= 4 && p[0] == 0x1A && p[1] == 0x45 && p[2] == 0xDF && p[3] == 0xA3) return 1; /* EBML */
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "AVI ", 4)) return 1;
    if (n >= 4 && (!memcmp(p, "OggS", 4) || !memcmp(p, "FLV\x01", 4) || !memcmp(p, "DKIF", 4)))
        return 1;
    if (n >= 16 && !memcmp(p, "\x30\x26\xB2\x75\x8E\x66\xCF\x11", 8)) return 1; /* ASF */
    if (n >= 4 && p[0] == 0 && p[1] == 0 && p[2] == 1 && (p[3] == 0xBA || p[3] == 0xB3)) return 1;
    if (n >= 377 && p[0] == 0x47 && p[188] == 0x47 && p[376] == 0x47) return 1; /* MPEG-TS */
    if (n >= 10 && !memcmp(p, "YUV4MPEG2 ", 10)) return 1;
    return 0;
}

vlm_media_kind vlm_media_sniff(const void *data, size_t size, vlm_image_format *fmt)
{
    vlm_image_format f = vlm_image_detect(data, size);
    if (fmt) *fmt = f;
    if (f != VLM_IMAGE_UNKNOWN) return VLM_MEDIA_IMAGE;
    if (data && looks_like_video((const uint8_t *)data, size)) return VLM_MEDIA_VIDEO;
    return VLM_MEDIA_UNKNOWN;
}

/* The image format a declared subtype means (UNKNOWN if none we decode). */
static vlm_image_format format_of_subtype(const char *sub)
{
    static const struct {
        const char *name;
        vlm_image_format f;
    } map[] = {
        {"png", VLM_IMAGE_PNG},   {"jpeg", VLM_IMAGE_JPEG},  {"jpg", VLM_IMAGE_JPEG},
        {"pjpeg", VLM_IMAGE_JPEG}, {"gif", VLM_IMAGE_GIF},    {"webp", VLM_IMAGE_WEBP},
        {"bmp", VLM_IMAGE_BMP},   {"x-bmp", VLM_IMAGE_BMP},  {"x-ms-bmp", VLM_IMAGE_BMP},
        {"tiff", VLM_IMAGE_TIFF}, {"tif", VLM_IMAGE_TIFF},   {"avif", VLM_IMAGE_AVIF},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(sub, map[i].name)) return map[i].f;
    return VLM_IMAGE_UNKNOWN;
}

int vlm_url_check_type(const char *declared, const char *what, const vlm_url_eff *e,
                       vlm_url_blob *out)
{
    vlm_image_format fmt;
    vlm_media_kind kind = vlm_media_sniff(out->data, out->size, &fmt);
    const uint8_t *p = out->data;
    size_t n = out->size;
    char type[80] = "";
    if (declared) { /* "Type/Sub ; params" -> "type/sub" */
        size_t i = 0, j = 0;
        while (declared[i] == ' ' || declared[i] == '\t') i++;
        for (; declared[i] && declared[i] != ';' && j + 1 < sizeof type; i++)
            if (declared[i] != ' ' && declared[i] != '\t')
                type[j++] = (char)tolower((unsigned char)declared[i]);
        type[j] = '\0';
    }
    snprintf(out->mime, sizeof out->mime, "%s", type);
    out->kind = kind;
    out->format = fmt;
    int want_img = (e->accept & VLM_URL_ACCEPT_IMAGE) != 0;
    int want_vid = (e->accept & VLM_URL_ACCEPT_VIDEO) != 0;
    const char *accepted = want_img && want_vid ? "an image or video" : want_vid ? "a video" : "an image";
    if (!strncmp(type, "image/", 6)) {
        if (!want_img) return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s is %s; only videos are accepted", what, type);
        vlm_image_format want = format_of_subtype(type + 6);
        if (want == VLM_IMAGE_UNKNOWN)
            return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s is %s, not an image type vlm decodes", what, type);
        if (kind != VLM_MEDIA_IMAGE)
            return vlm_errorf(VLM_ERR_FORMAT, "%s says %s but the data is not an image (first bytes %02x %02x %02x %02x)",
                              what, type, n > 0 ? p[0] : 0, n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0);
        if (fmt != want)
            return vlm_errorf(VLM_ERR_FORMAT, "%s says %s but the data is %s", what, type,
                              vlm_image_format_name(fmt));
        return VLM_OK;
    }
    if (!strncmp(type, "video/", 6)) {
        if (!want_vid) return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s is %s; only images are accepted", what, type);
        if (kind != VLM_MEDIA_VIDEO)
            return vlm_errorf(VLM_ERR_FORMAT, "%s says %s but the data is not a video container", what, type);
        return VLM_OK;
    }
    if (type[0] && strcmp(type, "application/octet-stream") != 0 && strcmp(type, "binary/octet-stream") != 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s has type '%s', not %s", what, type, accepted);
    /* Untyped (file://) or octet-stream: the bytes decide. */
    if ((kind == VLM_MEDIA_IMAGE && want_img) || (kind == VLM_MEDIA_VIDEO && want_vid)) return VLM_OK;
    return vlm_errorf(VLM_ERR_UNSUPPORTED, "%s is not %s vlm decodes (first bytes %02x %02x %02x %02x)", what,
                      accepted, n > 0 ? p[0] : 0, n > 1 ? p[1] : 0, n > 2 ? p[2] : 0, n > 3 ? p[3] : 0);
}

/* ---- data: URLs --------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

int vlm_base64_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n)
{
    *n = 0;
    if (len == 0) return vlm_errorf(VLM_ERR_FORMAT, "base64: no data");
    if (len % 4) return vlm_errorf(VLM_ERR_FORMAT, "base64: length %zu is not a multiple of 4", len);
    size_t pad = s[len - 1] == '=' ? (s[len - 2] == '=' ? 2 : 1) : 0;
    size_t outlen = len / 4 * 3 - pad;
    if (outlen > cap) return vlm_errorf(VLM_ERR_LIMIT, "base64: %zu bytes do not fit in %zu", outlen, cap);
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int last = i + 4 == len;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (last && (size_t)k >= 4 - pad) {
                v[k] = 0; /* '=' */
                continue;
            }
            v[k] = b64_value(c);
            if (v[k] < 0) {
                if (c == '=')
                    return vlm_errorf(VLM_ERR_FORMAT, "base64: '=' before the end (offset %zu)", i + k);
                if (c < 0x20 || c >= 0x7f)
                    return vlm_errorf(VLM_ERR_FORMAT, "base64: invalid byte 0x%02x at offset %zu", c, i + k);
                return vlm_errorf(VLM_ERR_FORMAT, "base64: invalid character '%c' at offset %zu", c, i + k);
            }
        }
        uint32_t w = ((uint32_t)v[0] << 18) | ((uint32_t)v[1] << 12) | ((uint32_t)v[2] << 6) | (uint32_t)v[3];
        if (last && pad == 2 && (v[1] & 0x0F))
            return vlm_errorf(VLM_ERR_FORMAT, "base64: non-zero bits in the padding");
        if (last && pad == 1 && (v[2] & 0x03))
            return vlm_errorf(VLM_ERR_FORMAT, "base64: non-zero bits in the padding");
        out[o++] = (uint8_t)(w >> 16);
        if (!(last && pad == 2)) out[o++] = (uint8_t)(w >> 8);
        if (!(last && pad >= 1)) out[o++] = (uint8_t)w;
    }
    *n = o;
    return VLM_OK;
}

static int is_token_char(unsigned char c)
{
    return isalnum(c) || strchr("!#$&-^_.+", c) != NULL;
}

static int decode_data(const char *url, const vlm_url_eff *e, vlm_url_blob *out)
{
    if (!has_prefix_ci(url, "data:")) return vlm_errorf(VLM_ERR_INVALID, "not a data URL");
    const char *hdr = url + 5;
    const char *comma = strchr(hdr, ',');
    if (!comma) return vlm_errorf(VLM_ERR_FORMAT, "data URL without ',' before the data");
    size_t hlen = (size_t)(comma - hdr);
    if (hlen > 200) return vlm_errorf(VLM_ERR_FORMAT, "data URL header is too long (%zu bytes)", hlen);
    if (hlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "data URL is not base64 (only ';base64,' data URLs are accepted)");
    char mt[201];
    memcpy(mt, hdr, hlen - 7);
    mt[hlen - 7] = '\0';
    /* type "/" subtype, both tokens, then optional ";name=value" parameters */
    size_t i = 0, slash = 0;
    while (mt[i] && mt[i] != ';') {
        if (mt[i] == '/') {
            if (slash) break;
            slash = i;
        } else if (!is_token_char((unsigned char)mt[i])) {
            break;
        }
        i++;
    }
    if (!slash || slash == 0 || i == slash + 1 || (mt[i] && mt[i] != ';'))
        return vlm_errorf(VLM_ERR_FORMAT, "data URL has no valid media type ('%s')", mt);
    for (size_t j = i; mt[j]; j++)
        if ((unsigned char)mt[j] < 0x20 || (unsigned char)mt[j] >= 0x7f)
            return vlm_errorf(VLM_ERR_FORMAT, "data URL header holds a control or non-ASCII byte");
    const char *b64 = comma + 1;
    size_t blen = strlen(b64);
    /* The cap is checked on the encoded length, before anything is allocated. */
    if (blen / 4 * 3 > e->max_bytes + 2)
        return vlm_errorf(VLM_ERR_LIMIT, "data URL holds about %zu bytes, more than the limit of %zu",
                          blen / 4 * 3, e->max_bytes);
    size_t cap = blen / 4 * 3;
    uint8_t *buf = (uint8_t *)malloc(cap ? cap : 1);
    if (!buf) return vlm_errorf(VLM_ERR_NOMEM, "data URL: out of memory");
    size_t n;
    int rc = vlm_base64_decode(b64, blen, buf, cap, &n);
    if (rc) {
        free(buf);
        return vlm_error_prefix(rc, "data URL");
    }
    if (n > e->max_bytes) {
        free(buf);
        return vlm_errorf(VLM_ERR_LIMIT, "data URL holds %zu bytes, more than the limit of %zu", n, e->max_bytes);
    }
    out->data = buf;
    out->size = n;
    mt[i] = '\0';
    rc = vlm_url_check_type(mt, "data URL", e, out);
    if (rc) vlm_url_blob_free(out);
    return rc;
}

int vlm_url_decode_data(const char *url, const vlm_url_policy *pol, vlm_url_blob *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "url: no output given");
    memset(out, 0, sizeof *out);
    if (!url) return vlm_errorf(VLM_ERR_INVALID, "url: no URL given");
    vlm_url_eff e;
    vlm_url_effective(pol, &e);
    return decode_data(url, &e, out);
}

/* ---- dispatch ------------------------------------------------------------------ */

int vlm_url_fetch(const char *url, const vlm_url_policy *pol, vlm_url_blob *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "url: no output given");
    memset(out, 0, sizeof *out);
    if (!url || !*url) return vlm_errorf(VLM_ERR_INVALID, "url: empty URL");
    vlm_url_eff e;
    vlm_url_effective(pol, &e);
    if (has_prefix_ci(url, "data:")) return decode_data(url, &e, out);
    if (has_prefix_ci(url, "http://") || has_prefix_ci(url, "https://"))
        return vlm_url_fetch_http(url, &e, out);
    if (has_prefix_ci(url, "file:")) return vlm_url_fetch_file(url, &e, out);
    const char *colon = strchr(url, ':');
    if (colon && colon - url < 16)
        return vlm_errorf(VLM_ERR_UNSUPPORTED, "URL scheme '%.*s' is not supported (data, http, https, file)",
                          (int)(colon - url), url);
    return vlm_errorf(VLM_ERR_INVALID, "'%.60s' is not a URL (data:, http://, https:// or file://)", url);
}

int vlm_url_load_image(const char *url, const vlm_url_policy *pol, const vlm_image_limits *lim,
                       vlm_image *out)
{
    if (!out) return vlm_errorf(VLM_ERR_INVALID, "url: no output given");
    memset(out, 0, sizeof *out);
    vlm_url_policy p;
    if (pol)
        p = *pol;
    else
        vlm_url_policy_default(&p);
    p.accept = VLM_URL_ACCEPT_IMAGE;
    vlm_url_blob b;
    int rc = vlm_url_fetch(url, &p, &b);
    if (rc) return rc;
    rc = vlm_image_decode_memory(b.data, b.size, lim, out);
    vlm_url_blob_free(&b);
    return rc;
}
