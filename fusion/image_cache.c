#include "fusion/image_cache.h"

#include "core/error.h"
#include "fusion/prefix_cache.h"

#include <stdlib.h>
#include <string.h>

typedef struct item {
    vlm_image_key key;
    int64_t rows, width;
    float *data;
    struct item *prev, *next; /* most recently used first */
} item;

struct vlm_image_cache {
    int64_t cap, bytes;
    item *head, *tail;
};

vlm_image_key vlm_image_key_of(const vlm_image_tiles *it, int tile_size)
{
    const size_t n = (size_t)it->n_tiles * 3 * (size_t)tile_size * (size_t)tile_size;
    const uint64_t shape = ((uint64_t)it->n_tiles << 40) ^ ((uint64_t)it->nw << 20) ^ (uint64_t)it->nh;
    vlm_image_key k = {vlm_hash_bytes(it->tiles, n, shape), vlm_hash_bytes(it->tiles, n, ~shape * 31)};
    return k;
}

int vlm_image_cache_new(int64_t capacity_bytes, vlm_image_cache **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return vlm_errorf(VLM_ERR_NOMEM, "out of memory");
    (*out)->cap = capacity_bytes > 0 ? capacity_bytes : 0;
    return VLM_OK;
}

static void unlink_item(vlm_image_cache *c, item *it)
{
    if (it->prev) it->prev->next = it->next;
    else c->head = it->next;
    if (it->next) it->next->prev = it->prev;
    else c->tail = it->prev;
    it->prev = it->next = NULL;
}

static void push_front(vlm_image_cache *c, item *it)
{
    it->next = c->head;
    if (c->head) c->head->prev = it;
    c->head = it;
    if (!c->tail) c->tail = it;
}

static int64_t item_bytes(const item *it) { return it->rows * it->width * (int64_t)sizeof(float); }

void vlm_image_cache_free(vlm_image_cache *c)
{
    if (!c) return;
    for (item *it = c->head, *next; it; it = next) {
        next = it->next;
        free(it->data);
        free(it);
    }
    free(c);
}

const float *vlm_image_cache_get(vlm_image_cache *c, vlm_image_key key, int64_t rows, int64_t width)
{
    for (item *it = c->head; it; it = it->next)
        if (it->key.lo == key.lo && it->key.hi == key.hi && it->rows == rows && it->width == width) {
            unlink_item(c, it);
            push_front(c, it);
            return it->data;
        }
    return NULL;
}

void vlm_image_cache_put(vlm_image_cache *c, vlm_image_key key, const float *data, int64_t rows, int64_t width)
{
    const int64_t bytes = rows * width * (int64_t)sizeof(float);
    if (bytes > c->cap || vlm_image_cache_get(c, key, rows, width)) return;
    while (c->tail && c->bytes + bytes > c->cap) {
        item *old = c->tail;
        unlink_item(c, old);
        c->bytes -= item_bytes(old);
        free(old->data);
        free(old);
    }
    item *it = calloc(1, sizeof *it);
    float *copy = malloc((size_t)bytes);
    if (!it || !copy) {
        free(it);
        free(copy);
        return;
    }
    memcpy(copy, data, (size_t)bytes);
    *it = (item){.key = key, .rows = rows, .width = width, .data = copy};
    push_front(c, it);
    c->bytes += bytes;
}

int64_t vlm_image_cache_bytes(const vlm_image_cache *c) { return c ? c->bytes : 0; }
