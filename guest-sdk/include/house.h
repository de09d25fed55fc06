/*
 * house.h: write house guests in C (docs/ABI.md is the contract; this is
 * its C side, as house-sdk is its Rust side). Header-only: include it in
 * exactly ONE .c file of a guest (it defines the `house_alloc` and
 * `house_abi_version` exports). No libc: build with
 *
 *   clang --target=wasm32-unknown-unknown -O2 -nostdlib -mbulk-memory \
 *         -Wl,--no-entry -Wl,-z,stack-size=65536 -o guest.wasm guest.c
 *
 * Every request runs in a fresh instance, so memory is a bump arena that
 * is never freed (HOUSE_ARENA_BYTES, 256 KiB unless defined before the
 * include; house_bump returns NULL past it).
 */
#ifndef HOUSE_H
#define HOUSE_H

#include <stddef.h>
#include <stdint.h>

#define HOUSE_EXPORT(name) __attribute__((export_name(name)))
#define HOUSE_IMPORT(name) __attribute__((import_module("house"), import_name(name)))

/* Import return codes (docs/ABI.md, "Imports"). */
#define HOUSE_OK 0
#define HOUSE_KV_ABSENT (-1)
#define HOUSE_KV_TOO_LARGE (-4)
#define HOUSE_KV_BUDGET (-5)
#define HOUSE_KV_NOT_INTEGER (-6)
#define HOUSE_KV_UNAVAILABLE (-7)
#define HOUSE_PRESENCE_INFO (-8)

/* The host's imports: strings are (pointer, length) of UTF-8. */
HOUSE_IMPORT("log") void house_log(const char *text, int32_t len);
HOUSE_IMPORT("subscribe") int32_t house_subscribe(const char *channel, int32_t len);
HOUSE_IMPORT("subscribe_as")
int32_t house_subscribe_as(const char *channel, int32_t len, const char *info, int32_t info_len);
HOUSE_IMPORT("presence") int64_t house_presence(const char *channel, int32_t len, int32_t limit);
HOUSE_IMPORT("publish")
int32_t house_publish(const char *channel, int32_t channel_len, const char *data, int32_t data_len,
                      const char *event, int32_t event_len, const char *id, int32_t id_len, int64_t retry);
HOUSE_IMPORT("kv_get") int64_t house_kv_get(const char *key, int32_t key_len);
HOUSE_IMPORT("kv_read") int32_t house_kv_read(char *out, int32_t len);
HOUSE_IMPORT("kv_set")
int32_t house_kv_set(const char *key, int32_t key_len, const char *value, int32_t value_len, int64_t ttl_ms);
HOUSE_IMPORT("kv_delete") int32_t house_kv_delete(const char *key, int32_t key_len);
HOUSE_IMPORT("kv_incr") int32_t house_kv_incr(const char *key, int32_t key_len, int64_t delta, int64_t *out);
HOUSE_IMPORT("kv_list") int64_t house_kv_list(const char *prefix, int32_t prefix_len, int32_t limit, int32_t values);
HOUSE_IMPORT("backlog") int32_t house_backlog(int32_t count);
HOUSE_IMPORT("random") int32_t house_random(char *out, int32_t len);

/* No libc: what the compiler may call for copies and zeroing. */
void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n); /* memory.copy, with -mbulk-memory */
    return dst;
}
void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n); /* memory.fill */
    return dst;
}

#ifndef HOUSE_ARENA_BYTES
#define HOUSE_ARENA_BYTES (256 * 1024)
#endif
static _Alignas(8) unsigned char house_arena[HOUSE_ARENA_BYTES];
static size_t house_used;

/* `n` bytes, 8-aligned, or NULL once the arena is spent. */
static void *house_bump(size_t n) {
    size_t at = (house_used + 7) & ~(size_t)7;
    if (at > HOUSE_ARENA_BYTES || n > HOUSE_ARENA_BYTES - at) return NULL;
    house_used = at + n;
    return house_arena + at;
}

HOUSE_EXPORT("house_abi_version") int32_t house_abi_version(void) { return 1; }

/* The host writes the argument block here (NULL: the call fails). */
HOUSE_EXPORT("house_alloc") void *house_alloc(int32_t size) { return house_bump((size_t)(uint32_t)size); }

/* A packed pair: (len << 32) | ptr. */
static inline int64_t house_pack(const void *ptr, uint32_t len) {
    return (int64_t)(((uint64_t)len << 32) | (uint32_t)(uintptr_t)ptr);
}

/* Text: not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint32_t len;
} house_str;

/* Reading the argument block: one value per declared parameter, in
 * manifest order (the host validated them all: no checks are needed). */
typedef struct {
    const unsigned char *at;
} house_args;

static inline house_args house_args_of(int32_t ptr) { return (house_args){(const unsigned char *)(uintptr_t)ptr}; }
static inline uint32_t house_arg_u32(house_args *a) {
    uint32_t v;
    __builtin_memcpy(&v, a->at, 4);
    a->at += 4;
    return v;
}
static inline house_str house_arg_text(house_args *a) {
    uint32_t len = house_arg_u32(a);
    house_str s = {(const char *)a->at, len};
    a->at += len;
    return s;
}
static inline int64_t house_arg_int(house_args *a) {
    int64_t v;
    __builtin_memcpy(&v, a->at, 8);
    a->at += 8;
    return v;
}
static inline double house_arg_float(house_args *a) {
    double v;
    __builtin_memcpy(&v, a->at, 8);
    a->at += 8;
    return v;
}
static inline int house_arg_bool(house_args *a) { return *a->at++ != 0; }

/* A response block: status (0 or 200..599), content type ("": the
 * manifest's), no headers, the body. Returns what the handler returns;
 * a spent arena returns 0, which the host refuses (a 500). */
static int64_t house_respond(uint32_t status, const char *content_type, const char *body, uint32_t body_len) {
    uint32_t ct_len = (uint32_t)__builtin_strlen(content_type);
    unsigned char *b = house_bump(16 + ct_len + body_len);
    if (!b) return 0;
    uint32_t zero = 0;
    unsigned char *p = b;
    __builtin_memcpy(p, &status, 4), p += 4;
    __builtin_memcpy(p, &ct_len, 4), p += 4;
    __builtin_memcpy(p, content_type, ct_len), p += ct_len;
    __builtin_memcpy(p, &zero, 4), p += 4;
    __builtin_memcpy(p, &body_len, 4), p += 4;
    __builtin_memcpy(p, body, body_len), p += body_len;
    return house_pack(b, (uint32_t)(p - b));
}

/* A handler: its manifest entry (JSON, docs/ABI.md "Manifest") and its
 * body, which sees `args` (the argument block) and returns a response:
 *
 *   HOUSE_HANDLER(hello, "{\"name\":\"hello\",\"kind\":\"closing\"}") {
 *       return house_respond(200, "", "hi\n", 3);
 *   }
 */
#define HOUSE_HANDLER(NAME, MANIFEST)                                            \
    HOUSE_EXPORT("house_meta." #NAME) int64_t house_meta_##NAME(void) {         \
        static const char manifest[] = MANIFEST;                                \
        return house_pack(manifest, sizeof manifest - 1);                       \
    }                                                                           \
    static int64_t house_body_##NAME(house_args args);                          \
    HOUSE_EXPORT("house_handler." #NAME) int64_t house_handler_##NAME(int32_t ptr, int32_t len) { \
        (void)len;                                                              \
        return house_body_##NAME(house_args_of(ptr));                           \
    }                                                                           \
    static int64_t house_body_##NAME(house_args args)

#endif
