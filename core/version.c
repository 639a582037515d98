/* VLM_VERSION and VLM_GIT_COMMIT come from the Makefile (one place: its VERSION variable; the commit is
 * read with git when building, and this file is rebuilt when it changes). */
#include "core/version.h"

#ifndef VLM_VERSION
#define VLM_VERSION "unknown"
#endif
#ifndef VLM_GIT_COMMIT
#define VLM_GIT_COMMIT "unknown"
#endif

const char *vlm_version(void) { return VLM_VERSION; }
const char *vlm_build_commit(void) { return VLM_GIT_COMMIT; }

const char *vlm_build_options(void)
{
#if defined(VLM_HAVE_CUDA) && VLM_HAVE_CUDA
    return "CUDA";
#else
    return "no CUDA";
#endif
}
