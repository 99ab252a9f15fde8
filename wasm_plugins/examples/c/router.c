/*
 * Routing plugin: picks the backend pool by request header, JWT claim, tenant or model.
 *
 * Configuration (JSON): ordered rules, the first match wins; "default" applies when none matches.
 *   {"rules": ["header:x-partner-tier=premium->premium",
 *              "claim:tier=premium->premium",
 *              "tenant=acme->premium",
 *              "model=big-model->gpu-large"],
 *    "default": ""}
 * The choice is written to the `edgegw.pool` property (the gateway routes by it) and, for the
 * backend's logs, to the `x-edgegw-pool` request header. Counts routed requests in a metric
 * (edgegw_plugin_counter_routed_requests) and, per pool, in shared data with a CAS loop.
 */
#include "proxy_wasm.h"

#define MAX_ROOTS 16
typedef struct { uint32_t id; char *config; size_t len; } root_cfg;
static root_cfg roots[MAX_ROOTS];
static uint32_t routed_metric;

static root_cfg *root(uint32_t id) {
  for (int i = 0; i < MAX_ROOTS; i++) if (roots[i].id == id) return &roots[i];
  return 0;
}

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  pw_note_context(id, parent);
}

PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, size_t size) {
  pw_buf cfg = {0, 0};
  if (size && pw_get_buffer(PW_PLUGIN_CONFIG, &cfg) != PW_OK) return 0;
  root_cfg *slot = root(id);
  for (int i = 0; !slot && i < MAX_ROOTS; i++) if (!roots[i].id) slot = &roots[i];
  if (!slot) return 0;
  slot->id = id;
  slot->config = cfg.data;
  slot->len = cfg.len;
  if (!routed_metric) proxy_define_metric(PW_COUNTER, "routed_requests", 15, &routed_metric);
  return 1;
}

/* Does "<source>...=<value>" match this request? `spec` runs up to the "->". */
static int matches(const char *spec, size_t len) {
  size_t eq = 0;
  while (eq < len && spec[eq] != '=') eq++;
  if (eq == len) return 0;
  const char *want = spec + eq + 1;
  size_t want_len = len - eq - 1;
  char path[160];
  pw_buf got = {0, 0};
  int status;
  if (len > 7 && pw_eq(spec, 7, "header:", 7)) {
    if (eq - 7 >= sizeof(path)) return 0;
    pw_copy(path, spec + 7, eq - 7);
    path[eq - 7] = 0;
    status = pw_get_header(PW_REQUEST_HEADERS, path, &got);
  } else if (len > 6 && pw_eq(spec, 6, "claim:", 6)) {
    if (eq - 6 + 15 >= sizeof(path)) return 0;
    pw_copy(path, "edgegw.claims.", 14);
    pw_copy(path + 14, spec + 6, eq - 6);
    path[14 + eq - 6] = 0;
    status = pw_get_property(path, &got);
  } else if (pw_eq(spec, eq, "tenant", 6)) {
    status = pw_get_property("edgegw.tenant", &got);
  } else if (pw_eq(spec, eq, "model", 5)) {
    status = pw_get_property("edgegw.model", &got);
  } else {
    return 0;
  }
  int hit = status == PW_OK && pw_eq(got.data, got.len, want, want_len);
  pw_buf_free(&got);
  return hit;
}

static void count_pool(const char *pool, size_t len) {
  char key[96] = "router.requests.";
  if (len > sizeof(key) - 17) return;
  pw_copy(key + 16, pool, len);
  for (int attempt = 0; attempt < 8; attempt++) {
    pw_buf old = {0, 0};
    uint32_t cas = 0;
    uint64_t n = 0;
    if (proxy_get_shared_data(key, 16 + len, &old.data, &old.len, &cas) == PW_OK && old.len == 8)
      __builtin_memcpy(&n, old.data, 8);
    pw_buf_free(&old);
    n++;
    if (proxy_set_shared_data(key, 16 + len, (const char *)&n, 8, cas) != PW_CAS_MISMATCH) return;
  }
}

static int32_t route(uint32_t context_id) {
  root_cfg *cfg = root(pw_root_of(context_id));
  if (!cfg) return PW_CONTINUE;
  long pos = pw_json_find(cfg->config, cfg->len, "rules");
  const char *rule, *pool = 0;
  size_t rule_len, pool_len = 0;
  while (pw_json_next_str(cfg->config, cfg->len, &pos, &rule, &rule_len)) {
    size_t arrow = 0;
    while (arrow + 1 < rule_len && !(rule[arrow] == '-' && rule[arrow + 1] == '>')) arrow++;
    if (arrow + 1 >= rule_len) continue;
    if (matches(rule, arrow)) {
      pool = rule + arrow + 2;
      pool_len = rule_len - arrow - 2;
      break;
    }
  }
  if (!pool) pw_json_str_at(cfg->config, cfg->len, pw_json_find(cfg->config, cfg->len, "default"), &pool, &pool_len);
  if (pool && pool_len) {
    pw_set_property("edgegw.pool", pool, pool_len);
    pw_set_header(PW_REQUEST_HEADERS, "x-edgegw-pool", pool, pool_len);
    proxy_increment_metric(routed_metric, 1);
    count_pool(pool, pool_len);
  }
  return PW_CONTINUE;
}

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  return route(id);
}
