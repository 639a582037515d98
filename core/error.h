/* Error reporting for the whole library: functions return a vlm status code
 * (0 on success, a negative VLM_ERR_* on failure) and leave a human-readable
 * message in a per-thread buffer that the caller can show to the user. */
#ifndef VLM_CORE_ERROR_H
#define VLM_CORE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#include "vlm_status.h" /* the codes (include/, public) */


/* Formats a message into the calling thread's error buffer and returns code. */
int vlm_errorf(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "prefix: " to the current message (for adding context) and returns code. */
int vlm_error_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vlm_last_error(void);
void vlm_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
