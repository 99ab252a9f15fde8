/*
 * A small C SDK for proxy-wasm ABI 0.2.1 plugins, freestanding (no libc): the host imports,
 * an allocator the host uses to hand data to the plugin, and helpers. One translation unit per
 * plugin includes it. Build: python -m wasm_plugins.build OUTDIR (zig cc, wasm32-freestanding).
 */
#ifndef PROXY_WASM_H
#define PROXY_WASM_H

#include <stddef.h>
#include <stdint.h>

#define PW_IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define PW_EXPORT(name) __attribute__((export_name(#name)))

enum { PW_OK = 0, PW_NOT_FOUND = 1, PW_BAD_ARGUMENT = 2, PW_CAS_MISMATCH = 8 };
enum { PW_CONTINUE = 0, PW_PAUSE = 1 };
enum { PW_REQUEST_BODY = 0, PW_RESPONSE_BODY = 1, PW_CALL_RESPONSE_BODY = 4, PW_VM_CONFIG = 6,
       PW_PLUGIN_CONFIG = 7 };
enum { PW_REQUEST_HEADERS = 0, PW_RESPONSE_HEADERS = 2, PW_CALL_RESPONSE_HEADERS = 6 };
enum { PW_TRACE = 0, PW_DEBUG = 1, PW_INFO = 2, PW_WARN = 3, PW_ERROR = 4 };
enum { PW_COUNTER = 0, PW_GAUGE = 1, PW_HISTOGRAM = 2 };

PW_IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char *msg, size_t len);
PW_IMPORT(proxy_get_buffer_bytes) int32_t proxy_get_buffer_bytes(int32_t type, size_t start, size_t max,
                                                                 char **ptr, size_t *len);
PW_IMPORT(proxy_set_buffer_bytes) int32_t proxy_set_buffer_bytes(int32_t type, size_t start, size_t size,
                                                                 const char *data, size_t len);
PW_IMPORT(proxy_get_header_map_value) int32_t proxy_get_header_map_value(int32_t map, const char *key,
                                                                         size_t klen, char **ptr, size_t *len);
PW_IMPORT(proxy_replace_header_map_value) int32_t proxy_replace_header_map_value(int32_t map, const char *key,
                                                                                 size_t klen, const char *val,
                                                                                 size_t vlen);
PW_IMPORT(proxy_remove_header_map_value) int32_t proxy_remove_header_map_value(int32_t map, const char *key,
                                                                               size_t klen);
PW_IMPORT(proxy_get_property) int32_t proxy_get_property(const char *path, size_t plen, char **ptr, size_t *len);
PW_IMPORT(proxy_set_property) int32_t proxy_set_property(const char *path, size_t plen, const char *val,
                                                         size_t vlen);
PW_IMPORT(proxy_send_local_response) int32_t proxy_send_local_response(uint32_t status, const char *details,
                                                                       size_t dlen, const char *body, size_t blen,
                                                                       const char *headers, size_t hlen,
                                                                       int32_t grpc_status);
PW_IMPORT(proxy_get_current_time_nanoseconds) int32_t proxy_get_current_time_nanoseconds(uint64_t *out);
PW_IMPORT(proxy_http_call) int32_t proxy_http_call(const char *up, size_t uplen, const char *headers, size_t hlen,
                                                   const char *body, size_t blen, const char *trailers,
                                                   size_t tlen, uint32_t timeout_ms, uint32_t *token);
PW_IMPORT(proxy_continue_stream) int32_t proxy_continue_stream(int32_t stream);
PW_IMPORT(proxy_set_effective_context) int32_t proxy_set_effective_context(uint32_t context_id);
PW_IMPORT(proxy_add_header_map_value) int32_t proxy_add_header_map_value(int32_t map, const char *key, size_t klen,
                                                                         const char *val, size_t vlen);
PW_IMPORT(proxy_get_header_map_pairs) int32_t proxy_get_header_map_pairs(int32_t map, char **ptr, size_t *len);
PW_IMPORT(proxy_define_metric) int32_t proxy_define_metric(int32_t type, const char *name, size_t len,
                                                           uint32_t *id);
PW_IMPORT(proxy_increment_metric) int32_t proxy_increment_metric(uint32_t id, int64_t delta);
PW_IMPORT(proxy_get_shared_data) int32_t proxy_get_shared_data(const char *key, size_t klen, char **ptr,
                                                               size_t *len, uint32_t *cas);
PW_IMPORT(proxy_set_shared_data) int32_t proxy_set_shared_data(const char *key, size_t klen, const char *val,
                                                               size_t vlen, uint32_t cas);

/* ---- memory: a size-class free-list allocator over the linear memory above __heap_base ---- */

extern unsigned char __heap_base;
static uintptr_t pw_top;
static void *pw_free_list[32];

static inline void *pw_malloc(size_t n) {
  unsigned cls = 4;
  while (((size_t)1 << cls) < n + 8) {
    if (++cls >= 31) return 0;
  }
  if (pw_free_list[cls]) {
    void *p = pw_free_list[cls];
    pw_free_list[cls] = *(void **)p;
    return p;
  }
  if (!pw_top) pw_top = ((uintptr_t)&__heap_base + 15) & ~(uintptr_t)15;
  uintptr_t block = pw_top, end = block + ((size_t)1 << cls);
  size_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have && __builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1) return 0;
  pw_top = end;
  *(uint32_t *)block = cls;
  return (void *)(block + 8);
}

static inline void pw_free(void *p) {
  if (!p) return;
  unsigned cls = *(uint32_t *)((uintptr_t)p - 8);
  *(void **)p = pw_free_list[cls];
  pw_free_list[cls] = p;
}

PW_EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t n) { return pw_malloc(n); }
PW_EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

/* ---- strings ---- */

typedef struct { char *data; size_t len; } pw_buf;  /* host-allocated: pw_buf_free when done */

static inline void pw_buf_free(pw_buf *b) { pw_free(b->data); b->data = 0; b->len = 0; }
static inline size_t pw_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static inline int pw_eq(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen) return 0;
  for (size_t i = 0; i < alen; i++) if (a[i] != b[i]) return 0;
  return 1;
}
static inline int pw_eqz(const char *a, size_t alen, const char *z) { return pw_eq(a, alen, z, pw_strlen(z)); }
static inline void pw_copy(char *dst, const char *src, size_t n) { __builtin_memcpy(dst, src, n); }

static inline void pw_log(int level, const char *msg) { proxy_log(level, msg, pw_strlen(msg)); }

/* ---- host helpers ---- */

static inline int pw_get_header(int map, const char *name, pw_buf *out) {
  return proxy_get_header_map_value(map, name, pw_strlen(name), &out->data, &out->len);
}
static inline int pw_set_header(int map, const char *name, const char *val, size_t vlen) {
  return proxy_replace_header_map_value(map, name, pw_strlen(name), val, vlen);
}
static inline int pw_remove_header(int map, const char *name) {
  return proxy_remove_header_map_value(map, name, pw_strlen(name));
}
static inline int pw_get_property(const char *path, pw_buf *out) {
  return proxy_get_property(path, pw_strlen(path), &out->data, &out->len);
}
static inline int pw_set_property(const char *path, const char *val, size_t vlen) {
  return proxy_set_property(path, pw_strlen(path), val, vlen);
}
static inline int pw_get_buffer(int type, pw_buf *out) {
  return proxy_get_buffer_bytes(type, 0, 0x7fffffff, &out->data, &out->len);
}

/* A local JSON response with content-type application/json (one-pair header map). */
static inline int pw_send_json(uint32_t status, const char *body) {
  static const char hdr[] = "\x01\x00\x00\x00" "\x0c\x00\x00\x00" "\x10\x00\x00\x00"
                            "content-type\0application/json";
  return proxy_send_local_response(status, "plugin", 6, body, pw_strlen(body), hdr, sizeof(hdr), -1);
}

/* ---- which root context (configuration) a stream context belongs to ---- */

#define PW_CONTEXTS 4096
static uint32_t pw_parent[PW_CONTEXTS];
static inline uint32_t pw_root_of(uint32_t context_id) { return pw_parent[context_id % PW_CONTEXTS]; }
static inline void pw_note_context(uint32_t context_id, uint32_t parent) { pw_parent[context_id % PW_CONTEXTS] = parent; }

/* ---- a tiny JSON scanner: enough for flat plugin configurations ---- */

/* Find `"key":` at the top level of an object; returns the offset of the value or -1. */
static inline long pw_json_find(const char *js, size_t n, const char *key) {
  size_t klen = pw_strlen(key);
  int depth = 0, in_str = 0;
  for (size_t i = 0; i < n; i++) {
    char c = js[i];
    if (in_str) {
      if (c == '\\') i++;
      else if (c == '"') in_str = 0;
      continue;
    }
    if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') depth--;
    else if (c == '"') {
      if (depth == 1 && i + klen + 1 < n && js[i + klen + 1] == '"' && pw_eq(js + i + 1, klen, key, klen)) {
        size_t j = i + klen + 2;
        while (j < n && (js[j] == ' ' || js[j] == ':' || js[j] == '\n' || js[j] == '\t')) j++;
        return (long)j;
      }
      in_str = 1;
    }
  }
  return -1;
}

static inline long pw_json_int(const char *js, size_t n, const char *key, long dflt) {
  long at = pw_json_find(js, n, key);
  if (at < 0 || (size_t)at >= n || js[at] < '0' || js[at] > '9') return dflt;
  long v = 0;
  for (size_t i = (size_t)at; i < n && js[i] >= '0' && js[i] <= '9'; i++) v = v * 10 + (js[i] - '0');
  return v;
}

/* The string at js[at] ("..."): sets *s and *len (escapes are not decoded). Returns the index after it. */
static inline long pw_json_str_at(const char *js, size_t n, long at, const char **s, size_t *len) {
  if (at < 0 || (size_t)at >= n || js[at] != '"') return -1;
  size_t i = (size_t)at + 1, start = i;
  while (i < n && js[i] != '"') i += (js[i] == '\\') ? 2 : 1;
  if (i >= n) return -1;
  *s = js + start;
  *len = i - start;
  return (long)i + 1;
}

/* Iterate the strings of an array value: call with *pos = offset of '[' (from pw_json_find). */
static inline int pw_json_next_str(const char *js, size_t n, long *pos, const char **s, size_t *len) {
  long i = *pos;
  if (i < 0) return 0;
  while ((size_t)i < n && js[i] != '"' && js[i] != ']') i++;
  if ((size_t)i >= n || js[i] == ']') return 0;
  long next = pw_json_str_at(js, n, i, s, len);
  if (next < 0) return 0;
  *pos = next;
  return 1;
}

#endif
