/* Whole-file reads for small text files (configs, indexes, prompts). */
#ifndef VLM_CORE_FILE_H
#define VLM_CORE_FILE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads path into a NUL-terminated malloc'd buffer; files over max_bytes are an error. */
int vlm_read_file(const char *path, size_t max_bytes, char **out, size_t *len);
/* Reads a file of bytes (an image, a video held whole) into a malloc'd buffer, never more than
 * max_bytes + 1 bytes: a regular file's size is checked before reading, a pipe is read until it
 * ends or passes the cap. Directories ("is a directory") and devices such as /dev/zero ("is a
 * device, not a file") are refused without reading. *out is NULL and *len 0 for an empty file.
 * VLM_ERR_IO (cannot open or read), VLM_ERR_INVALID (not a file), VLM_ERR_LIMIT (over the cap),
 * VLM_ERR_NOMEM; the message names the path. */
int vlm_read_bytes(const char *path, size_t max_bytes, unsigned char **out, size_t *len);
/* Why path cannot be read as a file, without reading it: NULL when it is a regular file or a pipe
 * (or does not exist: opening it will say so), else "is a directory" / "is a device, not a file" /
 * "is not a regular file". */
const char *vlm_file_kind_problem(const char *path);
int vlm_file_exists(const char *path);
int vlm_dir_exists(const char *path);

#ifdef __cplusplus
}
#endif
#endif
