/*
 * A house guest in C: a greeting with a validated parameter, and a counter
 * in the host's key-value store. Built by `make guests` with Debian's
 * clang and lld (see guest-sdk/include/house.h for the compile line).
 */
#include "house.h"

/* "Hello, NAME!\n": `name` is 1 to 40 characters, "world" if absent; the
 * host refuses anything else with a 400 before this runs. */
HOUSE_HANDLER(hello,
              "{\"name\":\"hello\",\"kind\":\"closing\",\"path\":\"/c/hello\","
              "\"content_type\":\"text/plain; charset=utf-8\",\"methods\":[\"GET\"],"
              "\"params\":[{\"name\":\"name\",\"type\":\"string\","
              "\"rules\":{\"chars\":{\"min\":1,\"max\":40}},\"default\":\"world\"}]}") {
    house_str name = house_arg_text(&args);
    char *out = house_bump(name.len + 9);
    if (!out) return 0;
    __builtin_memcpy(out, "Hello, ", 7);
    __builtin_memcpy(out + 7, name.ptr, name.len);
    __builtin_memcpy(out + 7 + name.len, "!\n", 2);
    return house_respond(200, "", out, name.len + 9);
}

/* Decimal text of `n` into `out` (at least 20 bytes); its length. */
static uint32_t decimal(int64_t n, char *out) {
    char digits[20];
    uint32_t len = 0, i = 0;
    uint64_t v = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    do digits[len++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    if (n < 0) out[i++] = '-';
    while (len) out[i++] = digits[--len];
    return i;
}

/* `{"visits":N}`: one more each time, exact across every loop and host. */
HOUSE_HANDLER(visits,
              "{\"name\":\"visits\",\"kind\":\"closing\",\"path\":\"/c/visits\","
              "\"content_type\":\"application/json\",\"methods\":[\"GET\",\"POST\"]}") {
    (void)args;
    int64_t n = 0;
    int32_t code = house_kv_incr("visits", 6, 1, &n);
    if (code != HOUSE_OK) {
        static const char unavailable[] = "the key-value store refused the increment\n";
        return house_respond(503, "text/plain; charset=utf-8", unavailable, sizeof unavailable - 1);
    }
    char body[40] = "{\"visits\":";
    uint32_t len = 10 + decimal(n, body + 10);
    body[len++] = '}';
    return house_respond(200, "", body, len);
}
