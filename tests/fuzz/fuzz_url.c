/* Fuzz target: URL and data-URL parsing without any network: data: decoding with
 * the type check, strict base64, http(s) URL checks (scheme, credentials, host,
 * domain allowlist, literal addresses; no DNS), and address classification. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "media/url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = (char *)malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    static const char *addrs[] = {"10.0.0.0/8", "::1", "192.168.1.0/24"};
    static const char *domains[] = {"example.com", ".cdn.example.org"};
    vlm_url_policy p;
    vlm_url_policy_default(&p);
    p.max_bytes = 1 << 16;
    p.accept = VLM_URL_ACCEPT_IMAGE | VLM_URL_ACCEPT_VIDEO;
    if (size && (data[0] & 1)) {
        p.allow_addrs = addrs;
        p.n_allow_addrs = 3;
        p.allow_domains = domains;
        p.n_allow_domains = 2;
    }
    vlm_url_blob b;
    if (vlm_url_decode_data(s, &p, &b) == 0) {
        if (!b.data || b.size == 0 || b.size > p.max_bytes) abort();
        vlm_url_blob_free(&b);
    } else if (b.data) {
        abort();
    }
    if (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) vlm_url_check(s, &p);
    vlm_url_address_kind(s);
    vlm_url_address_allowed(s, &p);
    uint8_t out[256];
    size_t n;
    if (vlm_base64_decode(s, strlen(s), out, sizeof out, &n) == 0 && n > sizeof out) abort();
    vlm_media_sniff(data, size, NULL);
    free(s);
    return 0;
}
