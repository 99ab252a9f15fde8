/*
 * The proxy-wasm Go SDK's contract with its host, reproduced in C on wasi-libc (the Go SDK's own
 * builds are Go 1.24 `wasip1` reactors; this project ships no third-party binaries).
 *
 * What it checks, as the Go SDK (proxywasm/internal) does:
 * - start-up: Go's runtime calls random_get, clock_time_get, sched_yield and poll_oneoff (its
 *   usleep) while initialising; any errno is a `throw` (fatal error, exit 2);
 * - proxy_on_http_call_response(plugin_context_id, callout_id, ...): the first argument must be a
 *   plugin (root) context, else panic "http_call_response on invalid plugin context"; the callout
 *   is looked up on that root, and the SDK switches to the calling stream with
 *   proxy_set_effective_context before running its callback;
 * - a panic prints piecewise (one fd_write per piece, like Go's print) to stderr, then usleeps
 *   through poll_oneoff; if that fails, "panic during panic"; then proc_exit(2).
 *
 * Behaviour: every request asks the `authz` upstream (GET /healthz); a 200 adds
 * `x-go-contract: ok` to the request and resumes it, anything else answers 403. A request with an
 * `x-panic` header panics.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_http_call) int32_t proxy_http_call(const char *up, size_t uplen, const char *headers, size_t hlen,
                                                const char *body, size_t blen, const char *trailers, size_t tlen,
                                                uint32_t timeout_ms, uint32_t *token);
IMPORT(proxy_set_effective_context) int32_t proxy_set_effective_context(uint32_t id);
IMPORT(proxy_get_header_map_value) int32_t proxy_get_header_map_value(int32_t map, const char *key, size_t klen,
                                                                      char **ptr, size_t *len);
IMPORT(proxy_add_header_map_value) int32_t proxy_add_header_map_value(int32_t map, const char *key, size_t klen,
                                                                      const char *val, size_t vlen);
IMPORT(proxy_continue_stream) int32_t proxy_continue_stream(int32_t stream);
IMPORT(proxy_send_local_response) int32_t proxy_send_local_response(uint32_t status, const char *details, size_t dlen,
                                                                    const char *body, size_t blen,
                                                                    const char *headers, size_t hlen, int32_t grpc);

EXPORT(proxy_abi_version_0_2_1) void abi_version(void) {}
EXPORT(proxy_on_memory_allocate) void *on_memory_allocate(size_t n) { return malloc(n); }

static void print(const char *s) { write(2, s, strlen(s)); }

static void go_usleep(uint64_t usec) {
  __wasi_subscription_t in;
  __wasi_event_t out;
  __wasi_size_t n = 0;
  memset(&in, 0, sizeof in);
  in.u.tag = __WASI_EVENTTYPE_CLOCK;
  in.u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  in.u.u.clock.timeout = usec * 1000;
  in.u.u.clock.precision = 1000;
  if (__wasi_poll_oneoff(&in, &out, 1, &n) != 0) {
    print("panic during panic\n");
    print("fatal error: wasi_snapshot_preview1.poll_oneoff\n");
    __wasi_proc_exit(2);
  }
}

static void panic(const char *msg) {
  print("panic: ");
  print(msg);
  print("\n");
  print("\n");
  print("goroutine 1 [running]:\n");
  print("main.main()\n");
  go_usleep(20);
  __wasi_proc_exit(2);
}

static void fatal(const char *what) {
  print("fatal error: ");
  print(what);
  print("\n");
  __wasi_proc_exit(2);
}

__attribute__((constructor)) static void runtime_init(void) {
  uint8_t seed[16];
  __wasi_timestamp_t now = 0;
  if (__wasi_random_get(seed, sizeof seed) != 0) fatal("wasi_snapshot_preview1.random_get");
  if (__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 1, &now) != 0) fatal("wasi_snapshot_preview1.clock_time_get");
  if (__wasi_sched_yield() != 0) fatal("wasi_snapshot_preview1.sched_yield");
  go_usleep(1);
}

/* the SDK's state: plugin (root) contexts with their callouts, stream contexts with their root */
#define MAX 4096
static uint8_t is_plugin[MAX];
static uint32_t root_of[MAX];
static uint32_t callout_caller[MAX];  /* callout id % MAX -> calling context (on its root) */
static uint32_t callout_root[MAX];

EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  if (parent == 0) {
    is_plugin[id % MAX] = 1;
  } else {
    if (!is_plugin[parent % MAX]) panic("invalid plugin context id");
    root_of[id % MAX] = parent;
  }
}

EXPORT(proxy_on_vm_start) int32_t on_vm_start(uint32_t id, uint32_t size) { return 1; }
EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, uint32_t size) { return 1; }

static int has_header(const char *name) {
  char *ptr = 0;
  size_t len = 0;
  int found = proxy_get_header_map_value(0, name, strlen(name), &ptr, &len) == 0;
  free(ptr);
  return found;
}

static void deny(const char *body) {
  proxy_send_local_response(403, "", 0, body, strlen(body), "", 0, -1);
}

EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  if (has_header("x-panic")) panic("deliberate panic in OnHttpRequestHeaders");
  static const char hdrs[] = "\x03\x00\x00\x00" "\x07\x00\x00\x00\x03\x00\x00\x00" "\x05\x00\x00\x00\x08\x00\x00\x00"
                             "\x0a\x00\x00\x00\x05\x00\x00\x00"
                             ":method\0GET\0:path\0/healthz\0:authority\0authz";
  uint32_t token = 0;
  if (proxy_http_call("authz", 5, hdrs, sizeof hdrs, "", 0, "", 0, 2000, &token) != 0) {
    deny("{\"error\":{\"message\":\"dispatch failed\",\"type\":\"permission_error\",\"param\":null,\"code\":\"dispatch\"}}");
    return 1;
  }
  /* RegisterHttpCallout: on the caller's root, remembering the caller */
  callout_caller[token % MAX] = id;
  callout_root[token % MAX] = root_of[id % MAX];
  return 1;
}

EXPORT(proxy_on_http_call_response) void on_http_call_response(uint32_t plugin_id, uint32_t token, uint32_t nh,
                                                               uint32_t body_size, uint32_t nt) {
  if (!is_plugin[plugin_id % MAX]) panic("http_call_response on invalid plugin context");
  if (callout_root[token % MAX] != plugin_id || callout_caller[token % MAX] == 0) panic("invalid callout id");
  uint32_t caller = callout_caller[token % MAX];
  callout_caller[token % MAX] = 0;
  if (proxy_set_effective_context(caller) != 0) return;  /* the caller is gone */
  char *status = 0;
  size_t len = 0;
  int ok = proxy_get_header_map_value(6, ":status", 7, &status, &len) == 0 && len == 3 && memcmp(status, "200", 3) == 0;
  free(status);
  if (!ok) {
    deny("{\"error\":{\"message\":\"denied\",\"type\":\"permission_error\",\"param\":null,\"code\":\"authz_denied\"}}");
    return;
  }
  proxy_add_header_map_value(0, "x-go-contract", 13, "ok", 2);
  proxy_continue_stream(0);
}

EXPORT(proxy_on_done) int32_t on_done(uint32_t id) { return 1; }
EXPORT(proxy_on_delete) void on_delete(uint32_t id) { root_of[id % MAX] = 0; }
