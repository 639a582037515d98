/* One front door for media inputs: a string a user or a client gave (a file path, a data: URL, an
 * http(s):// URL, a file:// URL) or bytes already in memory, to the list of decoded RGB images the model
 * is given. What the input is comes from its bytes, never from its name: an image gives one picture
 * (timestamp -1), a video (a container vlm_media_sniff or FFmpeg recognises) gives the frames its sampling
 * rule picks, each with its timestamp in seconds.
 *
 * Everything is bounded: URLs by the URL policy (size cap, time limits, address and domain rules,
 * file:// only below media_dir); a local file read whole (a still image) by max_file_bytes, refused
 * before reading when larger, and directories and devices refused unread (videos are streamed from the
 * file, never held whole); every picture and frame by the pixel budget, checked from its header before
 * any decoding; the number of frames by max_frames; and all the pictures together by max_total_bytes of
 * RGB. A sampling plan that max_frames cuts is never cut silently: the list says how many frames the
 * rule asked for and that it was cut.
 *
 * Every failure is VLM_ERR_* with a one-line message that names the input (a long data: URL is named by
 * its start and length). */
#ifndef VLM_MEDIA_RESOLVE_H
#define VLM_MEDIA_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "media/image.h"
#include "media/url.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VLM_RESOLVE_DEFAULT_SAMPLING "n=8"

typedef struct {
    const vlm_url_policy *url;     /* URLs (and file:// below its media_dir); NULL: vlm_url_policy_default
                                      with images and videos accepted. Its accept decides whether a video
                                      URL is fetched (0 = images only). */
    const vlm_image_limits *image; /* per picture and per video frame; NULL: vlm_image_limits_default */
    const char *sampling;          /* video sampling rule (vlm_video_sampling_parse); NULL: "n=8" */
    int max_frames;                /* frames per video at most; 0: VLM_VIDEO_DEFAULT_MAX_FRAMES */
    int allow_paths;               /* plain paths to local files; 0 refuses them (a server: file:// URLs
                                      below the policy's media_dir only) */
    size_t max_file_bytes;         /* a local file read whole (a still image); 0: the image limits'
                                      decoded-bytes limit */
    int64_t max_total_bytes;       /* RGB bytes of all the pictures of one input; 0: the image limits'
                                      decoded-bytes limit */
    int video_threads;             /* decoder threads; 0: as many as the machine has (up to 16) */
} vlm_resolve_options;

/* sampling "n=8", defaults everywhere else, allow_paths 1 (the command line). */
void vlm_resolve_options_default(vlm_resolve_options *o);

typedef struct {
    vlm_image image;      /* RGB8, owned by the list */
    double pts;           /* the frame's time in the video, seconds; -1 for a still image */
    int from_video;       /* 1 for a video frame */
    int exif_orientation; /* a still JPEG/TIFF's EXIF orientation (1..8; 0 none), reported only: the pixels
                             are as stored, as the official pipeline reads them (media/exif.h) */
} vlm_resolved_image;

typedef struct {
    vlm_resolved_image *items;
    int n;
    vlm_media_kind kind;  /* VLM_MEDIA_IMAGE or VLM_MEDIA_VIDEO */
    char format[48];      /* "png", "jpeg", ... for an image; the video's codec ("h264", ...) */
    /* a video's sampling: the rule used, how many frames it asked for over the video's length (-1 when
       not known beforehand: scene changes, a length the container does not give), and cut = 1 when
       max_frames ended it with more wanted (then n == max_frames) */
    char sampling[32];
    int64_t planned;
    int cut;
    double duration;      /* a video's length in seconds (< 0 unknown); 0 for an image */
} vlm_resolved;

/* input: a path (when o->allow_paths), "data:...", "http(s)://...", "file://...". o may be NULL
 * (vlm_resolve_options_default). On failure *out is empty (n = 0, items NULL). */
int vlm_media_resolve(const char *input, const vlm_resolve_options *o, vlm_resolved *out);
/* The same for bytes in memory (an upload): name is what messages call them (NULL: "the media"). The
 * bytes must stay valid during the call only. */
int vlm_media_resolve_memory(const void *data, size_t size, const char *name, const vlm_resolve_options *o,
                             vlm_resolved *out);
void vlm_resolved_free(vlm_resolved *r);

#ifdef __cplusplus
}
#endif
#endif
