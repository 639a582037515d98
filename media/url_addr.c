/* Which addresses a fetch may connect to, and which hosts it may name.
 *
 * Special (non-public) ranges, IPv4 (RFC 6890 and the cloud metadata endpoints):
 *   0/8 this network, 10/8 172.16/12 192.168/16 private, 100.64/10 shared (CGNAT,
 *   also Alibaba's metadata 100.100.100.200), 127/8 loopback, 169.254/16 link-local
 *   (AWS/GCP/Azure/OpenStack metadata 169.254.169.254), 168.63.129.16 Azure's host
 *   endpoint, 192.0.0/24 IETF, 192.0.2/24 198.51.100/24 203.0.113/24 documentation,
 *   192.88.99/24 6to4 relay, 198.18/15 benchmarking, 224/4 multicast, 240/4 reserved
 *   and broadcast.
 * IPv6: :: unspecified, ::1 loopback, ::/96 IPv4-compatible, 100::/64 discard,
 *   2001::/23 IETF (Teredo included), 2001:db8::/32 and 3fff::/20 documentation,
 *   fc00::/7 unique local (AWS metadata fd00:ec2::254), fe80::/10 link-local,
 *   fec0::/10 site-local, ff00::/8 multicast, 64:ff9b:1::/48 local NAT64; the
 *   forms that carry an IPv4 address (::ffff:0:0/96 mapped, 64:ff9b::/96 NAT64,
 *   2002::/16 6to4) are judged by that IPv4 address. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "media/url_internal.h"

typedef struct {
    uint8_t net[16];
    int bits;
    const char *kind;
} range;

static const range k_v4[] = {
    {{0, 0, 0, 0}, 8, "this-network"},
    {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "shared (CGNAT)"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{168, 63, 129, 16}, 32, "cloud metadata"},
    {{169, 254, 0, 0}, 16, "link-local (cloud metadata)"},
    {{172, 16, 0, 0}, 12, "private"},
    {{192, 0, 0, 0}, 24, "IETF protocol assignments"},
    {{192, 0, 2, 0}, 24, "documentation"},
    {{192, 88, 99, 0}, 24, "6to4 relay"},
    {{192, 168, 0, 0}, 16, "private"},
    {{198, 18, 0, 0}, 15, "benchmarking"},
    {{198, 51, 100, 0}, 24, "documentation"},
    {{203, 0, 113, 0}, 24, "documentation"},
    {{224, 0, 0, 0}, 4, "multicast"},
    {{240, 0, 0, 0}, 4, "reserved"},
};

static const range k_v6[] = {
    {{0}, 128, "unspecified"},
    {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, "loopback"},
    {{0}, 96, "IPv4-compatible (deprecated)"},
    {{0x01, 0x00}, 64, "discard"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},
    {{0x20, 0x01}, 23, "IETF protocol assignments"},
    {{0x3f, 0xff}, 20, "documentation"},
    {{0x00, 0x64, 0xff, 0x9b, 0x00, 0x01}, 48, "local NAT64"},
    {{0xfc}, 7, "unique local (private)"},
    {{0xfe, 0x80}, 10, "link-local"},
    {{0xfe, 0xc0}, 10, "site-local"},
    {{0xff}, 8, "multicast"},
};

static int in_range(const uint8_t *a, const uint8_t *net, int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)full) != 0) return 0;
    if (rest == 0) return 1;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

/* The IPv4 address inside an IPv6 one (mapped, NAT64, 6to4), if any. */
static int embedded_v4(const uint8_t *a, uint8_t v4[4])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12)) {
        memcpy(v4, a + 12, 4);
        return 1;
    }
    if (a[0] == 0x20 && a[1] == 0x02) { /* 6to4: 2002:AABB:CCDD::/48 */
        memcpy(v4, a + 2, 4);
        return 1;
    }
    return 0;
}

const char *vlm_addr_kind(int family, const uint8_t *addr)
{
    if (family == AF_INET) {
        for (size_t i = 0; i < sizeof k_v4 / sizeof k_v4[0]; i++)
            if (in_range(addr, k_v4[i].net, k_v4[i].bits)) return k_v4[i].kind;
        return NULL;
    }
    if (family != AF_INET6) return "unknown address family";
    uint8_t v4[4];
    if (embedded_v4(addr, v4)) return vlm_addr_kind(AF_INET, v4);
    for (size_t i = 0; i < sizeof k_v6 / sizeof k_v6[0]; i++)
        if (in_range(addr, k_v6[i].net, k_v6[i].bits)) return k_v6[i].kind;
    return NULL;
}

/* "a.b.c.d[/n]" or "v6[/n]" into family/net/bits; 0 on success. */
static int parse_cidr(const char *s, int *family, uint8_t net[16], int *bits)
{
    char buf[64];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n + 1);
    char *slash = strchr(buf, '/');
    int b = -1;
    if (slash) {
        *slash = '\0';
        char *end;
        long v = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || v < 0 || v > 128) return -1;
        b = (int)v;
    }
    memset(net, 0, 16);
    if (inet_pton(AF_INET, buf, net) == 1) {
        if (b > 32) return -1;
        *family = AF_INET;
        *bits = b < 0 ? 32 : b;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, net) == 1) {
        *family = AF_INET6;
        *bits = b < 0 ? 128 : b;
        return 0;
    }
    return -1;
}

int vlm_addr_admitted(int family, const uint8_t *addr, const vlm_url_policy *pol)
{
    if (!vlm_addr_kind(family, addr)) return 1;
    if (pol->allow_private) return 1;
    uint8_t v4[4];
    int has_v4 = family == AF_INET6 && embedded_v4(addr, v4);
    for (size_t i = 0; i < pol->n_allow_addrs; i++) {
        int f, bits;
        uint8_t net[16];
        if (!pol->allow_addrs[i] || parse_cidr(pol->allow_addrs[i], &f, net, &bits)) continue;
        if (f == family && in_range(addr, net, bits)) return 1;
        if (f == AF_INET && has_v4 && in_range(v4, net, bits)) return 1;
    }
    return 0;
}

void vlm_addr_format(int family, const uint8_t *addr, char *buf, size_t len)
{
    if (!inet_ntop(family, addr, buf, (socklen_t)len)) snprintf(buf, len, "?");
}

const char *vlm_url_address_kind(const char *ip)
{
    uint8_t a[16];
    if (!ip) return "not an IP address";
    if (inet_pton(AF_INET, ip, a) == 1) return vlm_addr_kind(AF_INET, a);
    if (inet_pton(AF_INET6, ip, a) == 1) return vlm_addr_kind(AF_INET6, a);
    return "not an IP address";
}

int vlm_url_address_allowed(const char *ip, const vlm_url_policy *pol)
{
    vlm_url_policy def;
    if (!pol) {
        vlm_url_policy_default(&def);
        pol = &def;
    }
    uint8_t a[16];
    int family;
    if (ip && inet_pton(AF_INET, ip, a) == 1)
        family = AF_INET;
    else if (ip && inet_pton(AF_INET6, ip, a) == 1)
        family = AF_INET6;
    else
        return vlm_errorf(VLM_ERR_INVALID, "'%s' is not an IP address", ip ? ip : "");
    if (vlm_addr_admitted(family, a, pol)) return VLM_OK;
    return vlm_errorf(VLM_ERR_INVALID, "address %s is %s and not allowed", ip, vlm_addr_kind(family, a));
}

int vlm_host_allowed(const char *host, const vlm_url_policy *pol)
{
    if (pol->n_allow_domains == 0) return VLM_OK;
    char h[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof h) return vlm_errorf(VLM_ERR_INVALID, "host name too long");
    for (size_t i = 0; i <= n; i++) h[i] = (char)tolower((unsigned char)host[i]);
    if (n > 1 && h[n - 1] == '.') h[--n] = '\0';
    for (size_t i = 0; i < pol->n_allow_domains; i++) {
        const char *d = pol->allow_domains[i];
        if (!d) continue;
        /* "example.com": it and its subdomains; ".example.com" / "*.example.com": subdomains only */
        int sub_only = 0;
        if (d[0] == '*' && d[1] == '.') d += 2, sub_only = 1;
        else if (d[0] == '.') d += 1, sub_only = 1;
        size_t m = strlen(d);
        if (m > 1 && d[m - 1] == '.') m--;
        if (m == 0 || m > n) continue;
        if (strncasecmp(h + n - m, d, m) != 0) continue;
        if ((m == n && !sub_only) || (m < n && h[n - m - 1] == '.')) return VLM_OK;
    }
    return vlm_errorf(VLM_ERR_INVALID, "host '%s' is not in the allowed domains", host);
}
