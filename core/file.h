/* Whole-file reads for small text files (configs, indexes, prompts). */
#ifndef VLM_CORE_FILE_H
#define VLM_CORE_FILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads path into a NUL-terminated malloc'd buffer; files over max_bytes are an error. */
int vlm_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
int vlm_file_exists(const char *path);
int vlm_dir_exists(const char *path);

#ifdef __cplusplus
}
#endif
#endif
