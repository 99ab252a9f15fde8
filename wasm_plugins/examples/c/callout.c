/*
 * External authorization by http call: asks the `authz` upstream (plugin `upstreams:`) whether the
 * request may pass, and waits (PAUSE) for the answer. 2xx lets it through; anything else, or no
 * answer within the call's timeout, gets 403. It asks GET /healthz (a stand-in for a real authz API).
 */
#include "proxy_wasm.h"

/* Envoy's contract: the call belongs to the root context and its answer arrives with the root's
 * id, so the stream that asked is found by the call's token (as the SDKs do), then made current. */
static uint32_t waiting[PW_CONTEXTS];  /* stream context % PW_CONTEXTS -> http call token */
static uint32_t caller[PW_CONTEXTS];   /* http call token % PW_CONTEXTS -> stream context */

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) { pw_note_context(id, parent); }
PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, size_t size) { return 1; }

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  /* {":method": "GET", ":path": "/healthz", ":authority": "authz"} in the pairs serialization */
  static const char hdrs[] = "\x03\x00\x00\x00" "\x07\x00\x00\x00\x03\x00\x00\x00" "\x05\x00\x00\x00\x08\x00\x00\x00"
                             "\x0a\x00\x00\x00\x05\x00\x00\x00"
                             ":method\0GET\0:path\0/healthz\0:authority\0authz";
  uint32_t token = 0;
  if (proxy_http_call("authz", 5, hdrs, sizeof(hdrs), "", 0, "", 0, 1000, &token) != PW_OK) {
    pw_send_json(403, "{\"error\":{\"message\":\"authorization service unavailable\",\"type\":\"permission_error\",\"param\":null,\"code\":\"authz_unavailable\"}}");
    return PW_PAUSE;
  }
  waiting[id % PW_CONTEXTS] = token;
  caller[token % PW_CONTEXTS] = id;
  return PW_PAUSE;
}

PW_EXPORT(proxy_on_http_call_response) void on_http_call_response(uint32_t root, uint32_t token, uint32_t headers,
                                                                  uint32_t body, uint32_t trailers) {
  uint32_t id = caller[token % PW_CONTEXTS];
  if (id == 0 || waiting[id % PW_CONTEXTS] != token || proxy_set_effective_context(id) != PW_OK) return;
  pw_buf status = {0, 0};
  int ok = headers > 0 && pw_get_header(PW_CALL_RESPONSE_HEADERS, ":status", &status) == PW_OK && status.len == 3 &&
           status.data[0] == '2';
  pw_buf_free(&status);
  waiting[id % PW_CONTEXTS] = 0;
  caller[token % PW_CONTEXTS] = 0;
  if (ok) proxy_continue_stream(0);
  else pw_send_json(403, "{\"error\":{\"message\":\"denied by the authorization service\",\"type\":\"permission_error\",\"param\":null,\"code\":\"authz_denied\"}}");
}
