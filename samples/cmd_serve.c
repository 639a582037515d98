/* vlm serve: the OpenAI-compatible HTTP API (server/server.h) over the request engine. */
#include "core/error.h"
#include "server/server.h"
#include "server/server_cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fputs("usage: vlm serve -m <model dir> [--host 127.0.0.1] [--port 8080] [options]\n"
          "\n"
          "Answers OpenAI chat completion requests (POST /v1/chat/completions, streamed or not, with image_url\n"
          "and video_url parts), GET /v1/models, GET /health and GET /metrics (Prometheus). Prints\n"
          "\"listening on http://HOST:PORT\" when ready; SIGTERM or SIGINT drains and exits 0.\n"
          "\n"
          "server:\n"
          "  --host H                 address to listen on (127.0.0.1; 0.0.0.0 or :: for every interface)\n"
          "  --port P                 port (8080; 0 = any free port, printed)\n"
          "  --api-key KEY            require \"Authorization: Bearer KEY\" on /v1/* (also VLM_API_KEY)\n"
          "  --api-key-file F         keys, one per line (several clients, each logged by its key id)\n"
          "  --max-body-mb N          larger request bodies are refused with 413 (20)\n"
          "  --max-connections N      open connections at most (512)\n"
          "  --idle-timeout S         close connections idle this long between requests (120)\n"
          "  --drain-seconds S        on SIGTERM/SIGINT, let running requests finish this long (30)\n"
          "  --audit-log FILE         one JSON line per chat request (key id, client, image hashes, tokens, ...)\n"
          "  --audit-content          ... with the prompt and answer text\n"
          "  --block-list FILE        PCRE2 patterns, one per line: a matching prompt is refused (400), a matching\n"
          "                           answer stops with finish_reason \"content_filter\"\n"
          "  --log-requests           one line per request on stderr\n",
          f);
    srv_cli_common_usage(f);
}

static int load_fail(const char *what)
{
    fprintf(stderr, "vlm serve: %s: %s\n", what, vlm_last_error());
    return 1;
}

int vlm_cmd_serve(int argc, char **argv)
{
    srv_cli_common c;
    srv_cli_common_init(&c);
    const char *host = "127.0.0.1", *key = getenv("VLM_API_KEY"), *key_file = NULL, *audit_path = NULL, *block_path = NULL;
    long long port = 8080, max_body_mb = 20, drain_s = 30, max_conn = 512, idle_s = 120;
    int audit_content = 0, log_requests = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            usage(stdout);
            return 0;
        }
        int r = srv_cli_common_option("serve", &c, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        if (!strcmp(o, "--audit-content")) { audit_content = 1; continue; }
        if (!strcmp(o, "--log-requests")) { log_requests = 1; continue; }
        if (i + 1 >= argc || o[0] != '-') {
            fprintf(stderr, "vlm serve: %s\n", o[0] == '-' ? "an option needs a value" : "unexpected argument");
            fprintf(stderr, "vlm serve: '%s'\n", o);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        const int num_ok = *v && !*end && !errno;
        if (!strcmp(o, "--host")) host = v;
        else if (!strcmp(o, "--api-key")) key = v;
        else if (!strcmp(o, "--api-key-file")) key_file = v;
        else if (!strcmp(o, "--audit-log")) audit_path = v;
        else if (!strcmp(o, "--block-list")) block_path = v;
        else if (!strcmp(o, "--port") && num_ok && n >= 0 && n <= 65535) port = n;
        else if (!strcmp(o, "--max-body-mb") && num_ok && n >= 1 && n <= 4096) max_body_mb = n;
        else if (!strcmp(o, "--drain-seconds") && num_ok && n >= 0 && n <= 86400) drain_s = n;
        else if (!strcmp(o, "--max-connections") && num_ok && n >= 1 && n <= 100000) max_conn = n;
        else if (!strcmp(o, "--idle-timeout") && num_ok && n >= 1 && n <= 86400) idle_s = n;
        else {
            fprintf(stderr, "vlm serve: unknown option or bad value: %s %s\n", o, v);
            return 2;
        }
    }
    if (!c.model_dir) {
        fprintf(stderr, "vlm serve: no model folder given (-m <dir>)\n");
        return 2;
    }

    srv_keys keys = {0};
    srv_blocklist block = {0};
    srv_audit *audit = NULL;
    if (key && *key && srv_keys_add(&keys, key)) return load_fail("--api-key");
    if (key_file && srv_keys_load_file(&keys, key_file)) return load_fail("--api-key-file");
    if (block_path && srv_blocklist_load(&block, block_path)) return load_fail("--block-list");
    if (audit_path && srv_audit_open(audit_path, audit_content, &audit)) return load_fail("--audit-log");

    /* SIGTERM / SIGINT are taken by sigwait below; every thread started from here inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    char *name = srv_cli_model_name(&c);
    srv_options so = {0};
    so.host = host;
    so.port = (int)port;
    so.model_name = name;
    so.keys = keys.n ? &keys : NULL;
    so.block = block.n ? &block : NULL;
    so.audit = audit;
    so.media = c.media;
    so.limits = c.limits;
    so.max_body_bytes = (size_t)max_body_mb << 20;
    so.default_max_tokens = c.default_max_tokens;
    so.max_connections = (int)max_conn;
    so.idle_timeout_s = (int)idle_s;
    so.log_requests = log_requests;
    srv *s = NULL;
    vlm_engine *e = NULL;
    int status = 1;
    if (srv_start(&so, &s)) {
        fprintf(stderr, "vlm serve: %s\n", vlm_last_error());
        goto out;
    }
    /* /health answers 503 "loading" meanwhile */
    if (srv_cli_open_engine("serve", &c, &e)) goto out;
    srv_backend be;
    srv_backend_engine(e, &be);
    srv_set_backend(s, &be);
    const int v6 = strchr(host, ':') != NULL;
    printf("listening on http://%s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", srv_port(s));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&sigs, &sig) != 0) {
    }
    fprintf(stderr, "vlm serve: %s: draining (up to %lld s)\n", sig == SIGTERM ? "SIGTERM" : "SIGINT", drain_s);
    const int cancelled = srv_drain(s, (double)drain_s);
    if (cancelled) fprintf(stderr, "vlm serve: cancelled %d request%s still running\n", cancelled, cancelled == 1 ? "" : "s");
    status = 0;
out:
    srv_stop(s);
    vlm_engine_close(e);
    srv_audit_close(audit);
    srv_blocklist_free(&block);
    srv_keys_free(&keys);
    free(name);
    if (status == 0) fprintf(stderr, "vlm serve: stopped\n");
    return status;
}
