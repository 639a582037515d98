/* The runner's engine interface on the public request API (vlm_engine_submit, vlm_job_*). */
#include "caption/caption_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

typedef struct {
    vlm_job *job;
    vlm_cap_done_fn done;
    void *user;
} request;

static void on_done(void *user, vlm_job *job, const vlm_result *r)
{
    (void)job;
    request *q = user;
    vlm_cap_answer a = {0};
    a.ok = r->finish != VLM_FINISH_ERROR && r->finish != VLM_FINISH_CANCELLED;
    a.text = r->text ? r->text : "";
    a.finish = vlm_finish_reason_name(r->finish);
    a.error = r->finish == VLM_FINISH_CANCELLED ? "cancelled" : r->error;
    a.completion_tokens = r->completion_tokens;
    q->done(q->user, &a);
}

static int submit(void *ctx, const char *prompt, const vlm_image_input *imgs, int n, const vlm_ask_options *gen,
                  vlm_cap_done_fn done, void *user, void **handle)
{
    vlm_engine *e = ctx;
    *handle = NULL;
    request *q = calloc(1, sizeof *q);
    if (!q) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    q->done = done;
    q->user = user;
    vlm_message m = {"user", prompt, imgs, n};
    vlm_request_options ro;
    vlm_request_options_default(&ro);
    ro.gen = *gen;
    ro.gen.on_text = NULL;
    ro.on_done = on_done;
    ro.done_user = q;
    vlm_job *job = NULL;
    int rc = vlm_engine_submit(e, &m, 1, &ro, &job);
    if (rc) {
        if (job) vlm_job_free(job);
        free(q);
        return rc;
    }
    q->job = job;
    *handle = q;
    return VLM_OK;
}

static void release(void *ctx, void *handle)
{
    (void)ctx;
    request *q = handle;
    if (!q) return;
    vlm_job_free(q->job);
    free(q);
}

int vlm_cap_engine_backend(vlm_engine *e, vlm_cap_backend *b)
{
    memset(b, 0, sizeof *b);
    b->ctx = e;
    b->submit = submit;
    b->release = release;
    return VLM_OK;
}
