/*
 * Preprocessing plugin: redacts e-mail addresses and phone numbers inside the JSON strings of the
 * request body (prompts, messages) and clamps "max_tokens".
 *
 * Configuration (JSON): {"max_tokens": 256, "email": "[EMAIL]", "phone": "[PHONE]"}
 * (an empty replacement turns that redaction off). Adds `x-edgegw-redactions: N` for the backend.
 */
#include "proxy_wasm.h"

#define MAX_ROOTS 16
typedef struct { uint32_t id; long max_tokens; char email[32]; size_t email_len; char phone[32]; size_t phone_len; } cfg_t;
static cfg_t roots[MAX_ROOTS];

static cfg_t *root(uint32_t id) {
  for (int i = 0; i < MAX_ROOTS; i++) if (roots[i].id == id) return &roots[i];
  return 0;
}

static void str_opt(const char *js, size_t n, const char *key, const char *dflt, char *out, size_t *out_len) {
  const char *s;
  size_t len;
  if (pw_json_str_at(js, n, pw_json_find(js, n, key), &s, &len) < 0) { s = dflt; len = pw_strlen(dflt); }
  if (len > 31) len = 31;
  pw_copy(out, s, len);
  *out_len = len;
}

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) { pw_note_context(id, parent); }

PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, size_t size) {
  pw_buf js = {0, 0};
  if (size) pw_get_buffer(PW_PLUGIN_CONFIG, &js);
  cfg_t *c = root(id);
  for (int i = 0; !c && i < MAX_ROOTS; i++) if (!roots[i].id) c = &roots[i];
  if (!c) return 0;
  c->id = id;
  c->max_tokens = pw_json_int(js.data, js.len, "max_tokens", 0);
  str_opt(js.data, js.len, "email", "[EMAIL]", c->email, &c->email_len);
  str_opt(js.data, js.len, "phone", "[PHONE]", c->phone, &c->phone_len);
  pw_buf_free(&js);
  return 1;
}

static int is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
static int is_local(char c) { return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_phone_sep(char c) { return c == ' ' || c == '-' || c == '.' || c == '(' || c == ')'; }

typedef struct { char *p; size_t len, cap; } out_t;
static int put(out_t *o, const char *s, size_t n) {
  if (o->len + n > o->cap) return 0;
  pw_copy(o->p + o->len, s, n);
  o->len += n;
  return 1;
}

/* Rewrite `in` into `o`; returns the number of redactions, -1 when out of room. */
static long redact(const cfg_t *c, const char *in, size_t n, out_t *o) {
  long count = 0;
  int in_str = 0;
  for (size_t i = 0; i < n;) {
    char ch = in[i];
    if (!in_str) {
      if (ch == '"') in_str = 1;
      if (!put(o, &in[i++], 1)) return -1;
      continue;
    }
    if (ch == '\\') {  /* copy escapes verbatim */
      if (!put(o, &in[i], i + 1 < n ? 2 : 1)) return -1;
      i += 2;
      continue;
    }
    if (ch == '"') { in_str = 0; if (!put(o, &in[i++], 1)) return -1; continue; }
    if (ch == '@' && c->email_len) {
      /* the local part is already in the output: take it back */
      size_t back = 0;
      while (back < o->len && is_local(o->p[o->len - 1 - back])) back++;
      size_t j = i + 1, dots = 0, last = i + 1;
      while (j < n && (is_alnum(in[j]) || in[j] == '-' || in[j] == '.')) {
        if (in[j] == '.') dots++; else last = j + 1;
        j++;
      }
      if (back > 0 && dots > 0 && last > i + 2) {
        o->len -= back;
        if (!put(o, c->email, c->email_len)) return -1;
        count++;
        i = last;
        continue;
      }
    }
    if ((is_digit(ch) || ch == '+' || ch == '(') && c->phone_len &&
        (o->len == 0 || !is_alnum(o->p[o->len - 1]))) {
      size_t j = i, digits = 0, end = i;
      if (in[j] == '+') j++;
      while (j < n && (is_digit(in[j]) || is_phone_sep(in[j]))) {
        if (is_digit(in[j])) { digits++; end = j + 1; }
        j++;
      }
      if (digits >= 9 && digits <= 15 && (end >= n || !is_alnum(in[end]))) {
        if (!put(o, c->phone, c->phone_len)) return -1;
        count++;
        i = end;
        continue;
      }
    }
    if (!put(o, &in[i++], 1)) return -1;
  }
  return count;
}

/* Lower "max_tokens": N in place (the output is at most as long as the input). */
static int clamp(char *js, size_t *n, long limit) {
  long at = pw_json_find(js, *n, "max_tokens");
  if (limit <= 0 || at < 0 || !is_digit(js[at])) return 0;
  long v = 0;
  size_t end = (size_t)at;
  while (end < *n && is_digit(js[end])) v = v * 10 + (js[end++] - '0');
  if (v <= limit) return 0;
  char digits[24];
  int nd = 0;
  for (long x = limit; x > 0; x /= 10) digits[nd++] = (char)('0' + x % 10);
  size_t old = end - (size_t)at;
  for (int k = 0; k < nd; k++) js[at + k] = digits[nd - 1 - k];
  __builtin_memmove(js + at + nd, js + end, *n - end);
  *n -= old - (size_t)nd;
  return 1;
}

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  return PW_CONTINUE;
}

PW_EXPORT(proxy_on_request_body) int32_t on_request_body(uint32_t id, size_t size, uint32_t eos) {
  const cfg_t *c = root(pw_root_of(id));
  if (!c || !eos) return PW_CONTINUE;
  pw_buf body = {0, 0};
  if (pw_get_buffer(PW_REQUEST_BODY, &body) != PW_OK || !body.len) return PW_CONTINUE;
  out_t o = {pw_malloc(body.len * 2 + 64), 0, body.len * 2 + 64};
  long count = o.p ? redact(c, body.data, body.len, &o) : -1;
  if (count < 0) {
    pw_log(PW_WARN, "redact: body too large to rewrite, passed through");
  } else {
    int clamped = clamp(o.p, &o.len, c->max_tokens);
    if (count || clamped) {
      proxy_set_buffer_bytes(PW_REQUEST_BODY, 0, body.len, o.p, o.len);
      char num[12];
      int nd = 0;
      long x = count;
      do { num[11 - nd++] = (char)('0' + x % 10); x /= 10; } while (x && nd < 11);
      pw_set_header(PW_REQUEST_HEADERS, "x-edgegw-redactions", num + 12 - nd, (size_t)nd);
    }
  }
  pw_free(o.p);
  pw_buf_free(&body);
  return PW_CONTINUE;
}
