/* DeepSeek-VL2's "deepseek" chat template (conversation.py + the processor's
 * tokenize_with_images), producing token ids directly.
 *
 * The conversation is rendered as the official get_prompt() does:
 *   [system.strip() "\n\n"] "<|User|>: " user.strip() "\n\n"
 *   "<|Assistant|>: " answer.strip() "<｜end▁of▁sentence｜>"  (past turns)
 *   ... "<|Assistant|>:"                                  (final, empty)
 * then stripped, cut at every "<image>", each text piece encoded on its own
 * (no merge crosses an image), image k replaced by image_token_counts[k]
 * copies of the image id, and bos put first. A final assistant message with
 * empty content is the generation prompt (ends with "<|Assistant|>:", no eos). */
#ifndef VLM_TEXT_CHAT_TEMPLATE_H
#define VLM_TEXT_CHAT_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *role;    /* "system" (first message only) | "user" | "assistant" */
    const char *content; /* UTF-8, NUL-terminated */
} vlm_chat_message;

/* Number of "<image>" placeholders in the messages. */
int vlm_chat_count_images(const vlm_chat_message *msgs, int n_msgs);
/* A question as the user message: its n_images go where it says <image>, or, when it has no
 * marker, each as "<image>\n" before it (the official examples' layout). malloc'd; NULL if out of memory. */
char *vlm_chat_place_images(const char *question, int n_images);

/* The rendered prompt text (before the cut at <image>), malloc'd and
 * NUL-terminated; useful for logs and tests. */
int vlm_chat_render(const vlm_chat_message *msgs, int n_msgs, char **text, size_t *len);

/* n_images must equal vlm_chat_count_images(). *ids is malloc'd. */
int vlm_chat_encode(const vlm_tokenizer *t, const vlm_chat_message *msgs, int n_msgs,
                    const int *image_token_counts, int n_images, int32_t **ids, size_t *n_ids);

#ifdef __cplusplus
}
#endif
#endif
