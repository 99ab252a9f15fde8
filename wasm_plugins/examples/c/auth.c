/*
 * Auth plugin for partners without JWTs: an API key, or an HMAC-SHA256 signature of the body.
 *
 * Configuration (JSON):
 *   {"header": "x-api-key",
 *    "keys": ["<api key>|<subject>|<tenant>|<tier>", ...],
 *    "hmac": ["<key id>|<secret>|<tenant>|<tier>", ...],
 *    "max_skew_s": 300}
 * API key: the header must hold one of the keys; it is removed before the request goes upstream.
 * HMAC: `x-edgegw-key-id`, `x-edgegw-timestamp` (unix seconds) and `x-edgegw-signature` =
 *   hex(HMAC-SHA256(secret, timestamp + "." + body)), within max_skew_s of the gateway's clock.
 * On success the caller's identity goes to edgegw.subject/tenant/tier/api_key; otherwise 401.
 */
#include "proxy_wasm.h"

#define MAX_ROOTS 16
typedef struct { uint32_t id; char *js; size_t len; } cfg_t;
static cfg_t roots[MAX_ROOTS];
static cfg_t *root(uint32_t id) {
  for (int i = 0; i < MAX_ROOTS; i++) if (roots[i].id == id) return &roots[i];
  return 0;
}

/* ---- SHA-256 / HMAC (FIPS 180-4, RFC 2104) ---- */
typedef struct { uint32_t h[8]; uint8_t buf[64]; uint64_t total; size_t fill; } sha_t;
static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha_block(sha_t *s, const uint8_t *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h;
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3]; e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d; s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}
static void sha_init(sha_t *s) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  for (int i = 0; i < 8; i++) s->h[i] = iv[i];
  s->total = 0; s->fill = 0;
}
static void sha_update(sha_t *s, const uint8_t *p, size_t n) {
  s->total += n;
  while (n--) {
    s->buf[s->fill++] = *p++;
    if (s->fill == 64) { sha_block(s, s->buf); s->fill = 0; }
  }
}
static void sha_final(sha_t *s, uint8_t out[32]) {
  uint64_t bits = s->total * 8;
  uint8_t pad = 0x80, zero = 0;
  sha_update(s, &pad, 1);
  while (s->fill != 56) sha_update(s, &zero, 1);
  for (int i = 7; i >= 0; i--) { uint8_t b = (uint8_t)(bits >> (8 * i)); sha_update(s, &b, 1); }
  for (int i = 0; i < 8; i++) { out[4 * i] = s->h[i] >> 24; out[4 * i + 1] = s->h[i] >> 16; out[4 * i + 2] = s->h[i] >> 8; out[4 * i + 3] = s->h[i]; }
}
static void hmac(const char *key, size_t klen, const char *a, size_t alen, const char *b, size_t blen, uint8_t out[32]) {
  uint8_t k[64] = {0}, pad[64], inner[32];
  sha_t s;
  if (klen > 64) { sha_init(&s); sha_update(&s, (const uint8_t *)key, klen); sha_final(&s, k); }
  else pw_copy((char *)k, key, klen);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
  sha_init(&s); sha_update(&s, pad, 64); sha_update(&s, (const uint8_t *)a, alen); sha_update(&s, (const uint8_t *)".", 1);
  sha_update(&s, (const uint8_t *)b, blen); sha_final(&s, inner);
  for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
  sha_init(&s); sha_update(&s, pad, 64); sha_update(&s, inner, 32); sha_final(&s, out);
}

/* ---- config entries "a|b|c|d" ---- */
typedef struct { const char *f[4]; size_t n[4]; } entry_t;
static int split(const char *s, size_t len, entry_t *e) {
  int k = 0;
  size_t start = 0;
  for (size_t i = 0; i <= len && k < 4; i++) {
    if (i == len || s[i] == '|') { e->f[k] = s + start; e->n[k] = i - start; k++; start = i + 1; }
  }
  return k == 4;
}
/* Find the entry of list `list` whose first field equals `id`. */
static int lookup(const cfg_t *c, const char *list, const char *id, size_t idlen, entry_t *e) {
  long pos = pw_json_find(c->js, c->len, list);
  const char *s;
  size_t len;
  while (pw_json_next_str(c->js, c->len, &pos, &s, &len))
    if (split(s, len, e) && pw_eq(e->f[0], e->n[0], id, idlen)) return 1;
  return 0;
}

/* Constant-time comparison: a timing side channel must not reveal how much of a key matched. */
static int same(const char *a, size_t alen, const char *b, size_t blen) {
  if (alen != blen) return 0;
  uint8_t diff = 0;
  for (size_t i = 0; i < alen; i++) diff |= (uint8_t)(a[i] ^ b[i]);
  return diff == 0;
}

static void set_identity(const entry_t *e, const char *subject, size_t subject_len) {
  pw_set_property("edgegw.subject", subject, subject_len);
  pw_set_property("edgegw.api_key", subject, subject_len);
  if (e->n[2]) pw_set_property("edgegw.tenant", e->f[2], e->n[2]);
  if (e->n[3]) pw_set_property("edgegw.tier", e->f[3], e->n[3]);
}

static int32_t deny(const char *code, const char *message) {
  char body[256];
  size_t n = 0;
  const char *parts[] = {"{\"error\":{\"message\":\"", message, "\",\"type\":\"authentication_error\",\"param\":null,\"code\":\"", code, "\"}}"};
  for (int i = 0; i < 5; i++) {
    size_t l = pw_strlen(parts[i]);
    if (n + l >= sizeof(body)) break;
    pw_copy(body + n, parts[i], l);
    n += l;
  }
  body[n] = 0;
  pw_send_json(401, body);
  return PW_PAUSE;
}

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) { pw_note_context(id, parent); }

PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, size_t size) {
  pw_buf js = {0, 0};
  if (!size || pw_get_buffer(PW_PLUGIN_CONFIG, &js) != PW_OK) {
    pw_log(PW_ERROR, "auth: a configuration with \"keys\" or \"hmac\" is required");
    return 0;
  }
  if (pw_json_find(js.data, js.len, "keys") < 0 && pw_json_find(js.data, js.len, "hmac") < 0) {
    pw_log(PW_ERROR, "auth: the configuration has neither \"keys\" nor \"hmac\"");
    pw_buf_free(&js);
    return 0;
  }
  cfg_t *c = root(id);
  for (int i = 0; !c && i < MAX_ROOTS; i++) if (!roots[i].id) c = &roots[i];
  if (!c) return 0;
  c->id = id; c->js = js.data; c->len = js.len;
  return 1;
}

static uint8_t hmac_pending[PW_CONTEXTS];  /* stream context % PW_CONTEXTS -> waiting for the body */

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  const cfg_t *c = root(pw_root_of(id));
  hmac_pending[id % PW_CONTEXTS] = 0;
  if (!c) return deny("plugin_misconfigured", "auth plugin has no configuration");
  char header[64] = "x-api-key";
  const char *h;
  size_t hlen;
  if (pw_json_str_at(c->js, c->len, pw_json_find(c->js, c->len, "header"), &h, &hlen) > 0 && hlen < sizeof(header)) {
    pw_copy(header, h, hlen);
    header[hlen] = 0;
  }
  pw_buf key = {0, 0};
  if (pw_get_header(PW_REQUEST_HEADERS, header, &key) == PW_OK) {
    long pos = pw_json_find(c->js, c->len, "keys");
    const char *s;
    size_t len;
    entry_t e;
    int ok = 0;
    while (!ok && pw_json_next_str(c->js, c->len, &pos, &s, &len))
      if (split(s, len, &e) && same(e.f[0], e.n[0], key.data, key.len)) ok = 1;
    pw_buf_free(&key);
    if (!ok) return deny("invalid_api_key", "invalid API key");
    set_identity(&e, e.f[1], e.n[1]);
    pw_remove_header(PW_REQUEST_HEADERS, header);  /* never forward the partner's secret */
    return PW_CONTINUE;
  }
  pw_buf sig = {0, 0};
  if (pw_get_header(PW_REQUEST_HEADERS, "x-edgegw-signature", &sig) == PW_OK) {
    pw_buf_free(&sig);
    hmac_pending[id % PW_CONTEXTS] = 1;
    if (eos) return deny("invalid_signature", "a signed request needs a body");
    return PW_CONTINUE;  /* verified in on_request_body */
  }
  return deny("missing_credentials", "an API key or a request signature is required");
}

static int hexval(char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; }

PW_EXPORT(proxy_on_request_body) int32_t on_request_body(uint32_t id, size_t size, uint32_t eos) {
  if (!hmac_pending[id % PW_CONTEXTS] || !eos) return PW_CONTINUE;
  hmac_pending[id % PW_CONTEXTS] = 0;
  const cfg_t *c = root(pw_root_of(id));
  pw_buf kid = {0, 0}, ts = {0, 0}, sig = {0, 0}, body = {0, 0};
  entry_t e;
  int32_t result = PW_CONTINUE;
  if (pw_get_header(PW_REQUEST_HEADERS, "x-edgegw-key-id", &kid) != PW_OK ||
      pw_get_header(PW_REQUEST_HEADERS, "x-edgegw-timestamp", &ts) != PW_OK ||
      pw_get_header(PW_REQUEST_HEADERS, "x-edgegw-signature", &sig) != PW_OK || !lookup(c, "hmac", kid.data, kid.len, &e)) {
    result = deny("invalid_signature", "unknown key id or missing signature headers");
    goto out;
  }
  uint64_t now_ns = 0, t = 0;
  proxy_get_current_time_nanoseconds(&now_ns);
  for (size_t i = 0; i < ts.len; i++) t = t * 10 + (uint64_t)(ts.data[i] - '0');
  uint64_t now = now_ns / 1000000000ull, skew = (uint64_t)pw_json_int(c->js, c->len, "max_skew_s", 300);
  if (t + skew < now || t > now + skew) { result = deny("stale_signature", "the request timestamp is too far from now"); goto out; }
  pw_get_buffer(PW_REQUEST_BODY, &body);
  uint8_t mac[32], given[32];
  hmac(e.f[1], e.n[1], ts.data, ts.len, body.data, body.len, mac);
  int ok = sig.len == 64;
  for (int i = 0; ok && i < 32; i++) {
    int hi = hexval(sig.data[2 * i]), lo = hexval(sig.data[2 * i + 1]);
    if (hi < 0 || lo < 0) ok = 0; else given[i] = (uint8_t)(hi << 4 | lo);
  }
  if (!ok || !same((const char *)mac, 32, (const char *)given, 32)) { result = deny("invalid_signature", "the signature does not match"); goto out; }
  set_identity(&e, kid.data, kid.len);
out:
  pw_buf_free(&kid); pw_buf_free(&ts); pw_buf_free(&sig); pw_buf_free(&body);
  return result;
}
