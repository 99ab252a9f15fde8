/*
 * An API-key check in the manner of Kong's key-auth filter (a Rust proxy-wasm filter): the key comes
 * from the query string (`request.query`, Envoy's attribute: the part after '?', empty when there
 * is none) as `apikey=...`, else from an `apikey` header. Configuration: the valid keys, space
 * separated (a string, delivered verbatim). With a valid key the parameter is removed from `:path`
 * (Kong's hide_credentials), which the host must forward. For the tests it also copies what it read
 * of `request.path`, `request.url_path` and `request.query` into request headers.
 */
#include "proxy_wasm.h"

static char keys[512];
static size_t keys_len;

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) { pw_note_context(id, parent); }

PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, size_t size) {
  pw_buf cfg = {0, 0};
  if (size && pw_get_buffer(PW_PLUGIN_CONFIG, &cfg) != PW_OK) return 0;
  if (cfg.len >= sizeof(keys)) return 0;
  pw_copy(keys, cfg.data, cfg.len);
  keys_len = cfg.len;
  pw_buf_free(&cfg);
  return 1;
}

static int valid(const char *key, size_t len) {
  size_t i = 0;
  while (i < keys_len) {
    size_t j = i;
    while (j < keys_len && keys[j] != ' ') j++;
    if (len && pw_eq(keys + i, j - i, key, len)) return 1;
    i = j + 1;
  }
  return 0;
}

static void seen(const char *header, const char *property) {
  pw_buf v = {0, 0};
  if (pw_get_property(property, &v) == PW_OK) {
    proxy_add_header_map_value(PW_REQUEST_HEADERS, header, pw_strlen(header), v.data ? v.data : "", v.len);
    pw_buf_free(&v);
  } else {
    proxy_add_header_map_value(PW_REQUEST_HEADERS, header, pw_strlen(header), "NOT_FOUND", 9);
  }
}

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  seen("x-seen-path", "request.path");
  seen("x-seen-url-path", "request.url_path");
  seen("x-seen-query", "request.query");
  pw_buf query = {0, 0}, url_path = {0, 0}, header = {0, 0};
  if (pw_get_property("request.query", &query) != PW_OK) {
    pw_send_json(500, "{\"error\":{\"message\":\"request.query is missing\",\"type\":\"server_error\",\"param\":null,\"code\":\"no_query\"}}");
    return PW_PAUSE;
  }
  /* find apikey=VALUE among the &-separated parameters, and the rest without it */
  const char *key = 0;
  size_t key_len = 0;
  static char rest[1024];
  size_t rest_len = 0;
  for (size_t i = 0; i < query.len;) {
    size_t j = i;
    while (j < query.len && query.data[j] != '&') j++;
    if (j - i > 7 && pw_eq(query.data + i, 7, "apikey=", 7)) {
      key = query.data + i + 7;
      key_len = j - i - 7;
    } else if (j > i && rest_len + (j - i) + 1 < sizeof(rest)) {
      if (rest_len) rest[rest_len++] = '&';
      pw_copy(rest + rest_len, query.data + i, j - i);
      rest_len += j - i;
    }
    i = j + 1;
  }
  int from_query = key != 0;
  if (!key && pw_get_header(PW_REQUEST_HEADERS, "apikey", &header) == PW_OK) {
    key = header.data;
    key_len = header.len;
  }
  int ok = key && valid(key, key_len);  /* decided while `key` still points into live buffers */
  if (!key) {
    pw_send_json(401, "{\"error\":{\"message\":\"no API key found in request\",\"type\":\"authentication_error\",\"param\":null,\"code\":\"missing_api_key\"}}");
  } else if (!ok) {
    pw_send_json(401, "{\"error\":{\"message\":\"invalid authentication credentials\",\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"}}");
  } else {
    proxy_add_header_map_value(PW_REQUEST_HEADERS, "x-consumer", 10, key, key_len);
    if (from_query && pw_get_property("request.url_path", &url_path) == PW_OK) {
      static char path[1200];
      size_t len = 0;
      if (url_path.len + rest_len + 1 < sizeof(path)) {
        pw_copy(path, url_path.data, url_path.len);
        len = url_path.len;
        if (rest_len) {
          path[len++] = '?';
          pw_copy(path + len, rest, rest_len);
          len += rest_len;
        }
        pw_set_header(PW_REQUEST_HEADERS, ":path", path, len);
      }
    }
  }
  pw_buf_free(&query);
  pw_buf_free(&url_path);
  pw_buf_free(&header);
  return ok ? PW_CONTINUE : PW_PAUSE;
}
