/*
 * Changes the request's pseudo-headers as request headers ask, to test that the host applies each
 * change or fails the plugin saying why (never drops it):
 *   x-authority-suffix: S   appends S to :authority (the Go SDK's http_routing example appends
 *                           "-canary" to route to a canary cluster)
 *   x-set-path: P           replaces :path with P
 *   x-set-method: M         replaces :method with M
 * Bound at the response phase, the same requests change a request that already went upstream.
 */
#include "proxy_wasm.h"

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) { pw_note_context(id, parent); }

static void replace_from(const char *header, const char *pseudo) {
  pw_buf v = {0, 0};
  if (pw_get_header(PW_REQUEST_HEADERS, header, &v) == PW_OK) {
    pw_set_header(PW_REQUEST_HEADERS, pseudo, v.data ? v.data : "", v.len);
    pw_buf_free(&v);
  }
}

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  pw_buf suffix = {0, 0}, authority = {0, 0};
  if (pw_get_header(PW_REQUEST_HEADERS, "x-authority-suffix", &suffix) == PW_OK) {
    if (pw_get_header(PW_REQUEST_HEADERS, ":authority", &authority) != PW_OK) {
      pw_log(PW_ERROR, "failed to get request header: ':authority'");
      return PW_PAUSE;
    }
    char value[300];
    if (authority.len + suffix.len < sizeof(value)) {
      pw_copy(value, authority.data, authority.len);
      pw_copy(value + authority.len, suffix.data, suffix.len);
      pw_set_header(PW_REQUEST_HEADERS, ":authority", value, authority.len + suffix.len);
    }
    pw_buf_free(&suffix);
    pw_buf_free(&authority);
  }
  replace_from("x-set-path", ":path");
  replace_from("x-set-method", ":method");
  return PW_CONTINUE;
}
