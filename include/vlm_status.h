/* vlm's status codes: every function returns 0 on success or one of these (negative); vlm_last_error()
 * then describes the problem. Shared by the public API (vlm.h) and the library (core/error.h). */
#ifndef VLM_STATUS_H
#define VLM_STATUS_H

enum {
    VLM_OK = 0,
    VLM_ERR_INVALID = -1,     /* bad argument or bad user input */
    VLM_ERR_IO = -2,          /* file missing, unreadable, short read */
    VLM_ERR_FORMAT = -3,      /* malformed or corrupt data */
    VLM_ERR_NOMEM = -4,       /* allocation failed */
    VLM_ERR_LIMIT = -5,       /* input exceeds a configured limit (context, pixels, bytes) */
    VLM_ERR_MISMATCH = -6,    /* checkpoint / config disagree */
    VLM_ERR_UNSUPPORTED = -7,
    VLM_ERR_BUSY = -8,        /* the engine's queue is full: try again later */
};

#endif
