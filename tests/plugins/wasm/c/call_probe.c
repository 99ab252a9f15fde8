/*
 * Makes the http call a request describes, to test what proxy_http_call may reach and send:
 *   x-call-path: P          the call's :path (required)
 *   x-call-authority: A     the call's :authority (default "up")
 *   x-call-host: H          a `host` header on the call
 *   x-call-copy-length: 1   copy the client request's content-length onto the call, whose body is
 *                           empty (a filter forwarding the request's headers to an auth service)
 * to the `up` upstream, with a 1.5 s timeout. A refused call answers 400 with x-call-result:
 * rejected; an answered one 200 with x-call-status and the call's body.
 *
 * Like the Go and C++ SDKs it traps unless proxy_on_http_call_response comes with the id of a root
 * context, then finds the calling stream by token and makes it current.
 */
#include "proxy_wasm.h"

static uint8_t is_root[PW_CONTEXTS];
static uint32_t caller[PW_CONTEXTS];  /* token % PW_CONTEXTS -> stream */

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  pw_note_context(id, parent);
  is_root[id % PW_CONTEXTS] = parent == 0;
}

static char pairs[4096];
static size_t pairs_len;
static uint32_t npairs;
static const char *keys[8], *vals[8];
static size_t klens[8], vlens[8];

static void add(const char *k, const char *v, size_t vlen) {
  if (npairs < 8) { keys[npairs] = k; klens[npairs] = pw_strlen(k); vals[npairs] = v; vlens[npairs] = vlen; npairs++; }
}

static int serialize(void) {
  size_t need = 4 + 8 * npairs;
  for (uint32_t i = 0; i < npairs; i++) need += klens[i] + vlens[i] + 2;
  if (need > sizeof(pairs)) return 0;
  uint32_t *sizes = (uint32_t *)pairs;
  sizes[0] = npairs;
  size_t at = 4 + 8 * npairs;
  for (uint32_t i = 0; i < npairs; i++) {
    sizes[1 + 2 * i] = klens[i];
    sizes[2 + 2 * i] = vlens[i];
    pw_copy(pairs + at, keys[i], klens[i]); at += klens[i]; pairs[at++] = 0;
    pw_copy(pairs + at, vals[i], vlens[i]); at += vlens[i]; pairs[at++] = 0;
  }
  pairs_len = at;
  return 1;
}

static void reply(uint32_t status, const char *name, const char *value, size_t vlen, const char *body, size_t blen) {
  npairs = 0;
  add("content-type", "text/plain", 10);
  add(name, value, vlen);
  serialize();
  proxy_send_local_response(status, "probe", 5, body, blen, pairs, pairs_len, -1);
}

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  pw_buf path = {0, 0}, authority = {0, 0}, host = {0, 0}, copy = {0, 0}, length = {0, 0};
  if (pw_get_header(PW_REQUEST_HEADERS, "x-call-path", &path) != PW_OK) return PW_CONTINUE;
  npairs = 0;
  add(":method", "GET", 3);
  add(":path", path.data, path.len);
  if (pw_get_header(PW_REQUEST_HEADERS, "x-call-authority", &authority) == PW_OK) add(":authority", authority.data, authority.len);
  else add(":authority", "up", 2);
  if (pw_get_header(PW_REQUEST_HEADERS, "x-call-host", &host) == PW_OK) add("host", host.data, host.len);
  if (pw_get_header(PW_REQUEST_HEADERS, "x-call-copy-length", &copy) == PW_OK &&
      pw_get_header(PW_REQUEST_HEADERS, "content-length", &length) == PW_OK)
    add("content-length", length.data, length.len);
  uint32_t token = 0;
  int32_t status = serialize() ? proxy_http_call("up", 2, pairs, pairs_len, "", 0, "", 0, 1500, &token) : -1;
  pw_buf_free(&path); pw_buf_free(&authority); pw_buf_free(&host); pw_buf_free(&copy); pw_buf_free(&length);
  if (status != PW_OK) {
    reply(400, "x-call-result", "rejected", 8, "rejected", 8);
    return PW_PAUSE;
  }
  caller[token % PW_CONTEXTS] = id;
  return PW_PAUSE;
}

PW_EXPORT(proxy_on_http_call_response) void on_http_call_response(uint32_t root, uint32_t token, uint32_t nh,
                                                                  uint32_t body_size, uint32_t nt) {
  if (!is_root[root % PW_CONTEXTS]) __builtin_trap();
  uint32_t id = caller[token % PW_CONTEXTS];
  caller[token % PW_CONTEXTS] = 0;
  if (!id || proxy_set_effective_context(id) != PW_OK) return;
  pw_buf status = {0, 0}, body = {0, 0};
  if (nh == 0 || pw_get_header(PW_CALL_RESPONSE_HEADERS, ":status", &status) != PW_OK) {
    reply(200, "x-call-status", "failed", 6, "", 0);
    return;
  }
  if (body_size) pw_get_buffer(PW_CALL_RESPONSE_BODY, &body);
  reply(200, "x-call-status", status.data, status.len, body.data ? body.data : "", body.len);
  pw_buf_free(&status);
  pw_buf_free(&body);
}
