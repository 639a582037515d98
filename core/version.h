/* The library's version and how it was built (for `vlm --version` and bug reports). */
#ifndef VLM_CORE_VERSION_H
#define VLM_CORE_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

/* "MAJOR.MINOR.PATCH", the Makefile's VERSION (libvlm.so.MAJOR is the SONAME). */
const char *vlm_version(void);
/* The git commit the library was built from (12 hex digits, "-dirty" when the tree had changes),
 * or "unknown" when it was not built inside a git checkout. */
const char *vlm_build_commit(void);
/* The build options: "CUDA" or "no CUDA" (`make CUDA=1`). */
const char *vlm_build_options(void);

#ifdef __cplusplus
}
#endif
#endif
