/*
 * The proxy-wasm C++ SDK's contract with its host, as an emscripten (STANDALONE_WASM) build of it
 * has it, reproduced in C (this project ships no third-party binaries):
 * - imports emscripten's `env.emscripten_notify_memory_growth` (called after memory.grow) and
 *   `env.pthread_equal`, which Envoy's host provides; exports `_initialize`;
 * - a root context reads the `plugin_root_id` property (CHECK_RESULT: a failure aborts) and finds
 *   the factory registered under that name; `RegisterContextFactory`'s default name is "", so with
 *   Envoy's default root id the plugin's own contexts run. Any other root id finds no factory: the
 *   SDK's default RootContext and Context run instead, and do nothing.
 * The plugin's own stream context adds `x-cpp-context: registered` and `x-cpp-root-id: [ID]`.
 */
#include "proxy_wasm.h"

__attribute__((import_module("env"), import_name("emscripten_notify_memory_growth")))
void emscripten_notify_memory_growth(uint32_t index);
__attribute__((import_module("env"), import_name("pthread_equal")))
int32_t pthread_equal(int32_t a, int32_t b);

static const char REGISTERED[] = "";  /* RegisterContextFactory(..., root_id = "") */
static int initialized;
static uint8_t registered_root[PW_CONTEXTS];  /* root context id -> its factory was found */
static uint8_t registered_stream[PW_CONTEXTS];
static char root_id[128];
static size_t root_id_len;

PW_EXPORT(_initialize) void initialize(void) {
  if (!pthread_equal(7, 7) || pthread_equal(7, 8)) __builtin_trap();
  if (__builtin_wasm_memory_grow(0, 1) == (size_t)-1) __builtin_trap();
  emscripten_notify_memory_growth(0);
  initialized = 1;
}

PW_EXPORT(proxy_on_context_create) void on_context_create(uint32_t id, uint32_t parent) {
  if (!initialized) __builtin_trap();
  if (parent == 0) {
    pw_buf v = {0, 0};
    if (pw_get_property("plugin_root_id", &v) != PW_OK) __builtin_trap();  /* CHECK_RESULT */
    registered_root[id % PW_CONTEXTS] = pw_eqz(v.data ? v.data : "", v.len, REGISTERED);
    if (v.len < sizeof(root_id)) { if (v.len) pw_copy(root_id, v.data, v.len); root_id_len = v.len; }
    pw_buf_free(&v);
  } else {
    registered_stream[id % PW_CONTEXTS] = registered_root[parent % PW_CONTEXTS];
  }
}

PW_EXPORT(proxy_on_vm_start) int32_t on_vm_start(uint32_t id, uint32_t size) { return 1; }
PW_EXPORT(proxy_on_configure) int32_t on_configure(uint32_t id, uint32_t size) { return 1; }

PW_EXPORT(proxy_on_request_headers) int32_t on_request_headers(uint32_t id, uint32_t n, uint32_t eos) {
  if (!registered_stream[id % PW_CONTEXTS]) return PW_CONTINUE;  /* the SDK's default Context */
  char value[130];
  value[0] = '[';
  pw_copy(value + 1, root_id, root_id_len);
  value[root_id_len + 1] = ']';
  proxy_add_header_map_value(PW_REQUEST_HEADERS, "x-cpp-context", 13, "registered", 10);
  proxy_add_header_map_value(PW_REQUEST_HEADERS, "x-cpp-root-id", 13, value, root_id_len + 2);
  return PW_CONTINUE;
}
