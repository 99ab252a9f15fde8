// client_policy: a header-based client policy for the auth phase, written against the G-Core
// AssemblyScript proxy-wasm SDK (@gcoredev/proxy-wasm-sdk-as, a fork of Kong's AS SDK) and built
// with the WASI shim that SDK needs for its logging. Nothing here is edgegw-specific except the
// `edgegw.*` property names.
//
// Configuration (JSON, from the policy; a route's `config` is merged over the plugin's):
//   {"header": "x-client-id",          the request header naming the client (default x-client-id)
//    "allow": ["team-a", "team-b|acme"], allowed clients; "client|tenant" also sets the tenant
//    "forward_as": "x-edgegw-client",   request header added upstream with the client id
//    "label": "default",                 policy name, forwarded as x-edgegw-policy and used in errors
//    "authz": "authz",                   optional: also ask this upstream (the plugin's `upstreams`)
//    "authz_path": "/healthz"}           with GET authz_path + x-client-id; non-2xx -> 403 authz_denied
//
// Allowed: adds `forward_as` and `x-edgegw-policy` to the request, sets `edgegw.subject` (and
// `edgegw.tenant`). Otherwise: a local 403 with a JSON error, and the counter
// `client_policy_denied_total` is incremented.

import {
  BaseContext,
  Context,
  Counter,
  FilterHeadersStatusValues,
  GrpcStatusValues,
  Headers,
  log,
  LogLevelValues,
  makeHeaderPair,
  RootContext,
  registerRootContext,
  send_local_response,
  set_property,
  stream_context,
  WasmResultValues,
} from "@gcoredev/proxy-wasm-sdk-as/assembly";
import {
  proxy_on_configure as sdk_on_configure,
  proxy_on_context_create as sdk_on_context_create,
} from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";

// The SDK's HTTP-filter entry points, except the two wrapped below (its gRPC and network-filter
// ones are left out: edgegw calls neither).
export {
  malloc,
  proxy_abi_version_0_2_1,
  proxy_on_vm_start,
  proxy_validate_configuration,
  proxy_on_tick,
  proxy_on_foreign_function,
  proxy_on_queue_ready,
  proxy_on_request_headers,
  proxy_on_request_body,
  proxy_on_request_trailers,
  proxy_on_request_metadata,
  proxy_on_response_headers,
  proxy_on_response_body,
  proxy_on_response_trailers,
  proxy_on_response_metadata,
  proxy_on_http_call_response,
  proxy_on_done,
  proxy_on_log,
  proxy_on_delete,
} from "@gcoredev/proxy-wasm-sdk-as/assembly/proxy";

// The SDK keeps ONE RootContext object per VM and does not tell it which root context id is
// being configured or which root a new stream belongs to. A host that creates one root context
// per configuration (Envoy with several filter configs sharing a VM; edgegw for route-level
// configs) would otherwise have every stream use the configuration applied last. These two thin
// wrappers record the ids so the root can keep one policy per root context id.
let configuringRoot: u32 = 0;
let creatingUnder: u32 = 0;

export function proxy_on_configure(root_context_id: u32, configuration_size: u32): u32 {
  configuringRoot = root_context_id;
  return sdk_on_configure(root_context_id, configuration_size);
}

export function proxy_on_context_create(context_id: u32, root_context_id: u32): void {
  creatingUnder = root_context_id;
  sdk_on_context_create(context_id, root_context_id);
}

// --- a minimal JSON reader: one flat object of strings and arrays of strings ------------------

class Config {
  strings: Map<string, string> = new Map();
  lists: Map<string, Array<string>> = new Map();
  error: string = "";
}

function skipWs(s: string, i: i32): i32 {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c != 0x20 && c != 0x0a && c != 0x0d && c != 0x09) break;
    i++;
  }
  return i;
}

// Reads a JSON string starting at its opening quote: pushes the value to `out`, returns the index
// after the closing quote, or -1 when malformed.
function readString(s: string, i: i32, out: Array<string>): i32 {
  if (i >= s.length || s.charCodeAt(i) != 0x22) return -1;
  i++;
  let value = "";
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c == 0x22) {
      out.push(value);
      return i + 1;
    }
    if (c == 0x5c) { // backslash: keep the escaped character (\" and \\ are what configs use)
      i++;
      if (i >= s.length) return -1;
    }
    value += s.charAt(i);
    i++;
  }
  return -1;
}

function parseConfig(text: string): Config {
  const cfg = new Config();
  let i = skipWs(text, 0);
  if (i == text.length) return cfg; // no configuration: defaults
  if (text.charCodeAt(i) != 0x7b) {
    cfg.error = "configuration must be a JSON object";
    return cfg;
  }
  i = skipWs(text, i + 1);
  while (i < text.length && text.charCodeAt(i) != 0x7d) {
    const key = new Array<string>();
    i = readString(text, i, key);
    if (i < 0) break;
    i = skipWs(text, i);
    if (i >= text.length || text.charCodeAt(i) != 0x3a) { i = -1; break; }
    i = skipWs(text, i + 1);
    if (i < text.length && text.charCodeAt(i) == 0x5b) {
      const items = new Array<string>();
      i = skipWs(text, i + 1);
      while (i >= 0 && i < text.length && text.charCodeAt(i) != 0x5d) {
        i = readString(text, i, items);
        if (i < 0) break;
        i = skipWs(text, i);
        if (i < text.length && text.charCodeAt(i) == 0x2c) i = skipWs(text, i + 1);
      }
      if (i < 0 || i >= text.length) { i = -1; break; }
      cfg.lists.set(key[0], items);
      i++;
    } else {
      const value = new Array<string>();
      i = readString(text, i, value);
      if (i < 0) break;
      cfg.strings.set(key[0], value[0]);
    }
    i = skipWs(text, i);
    if (i < text.length && text.charCodeAt(i) == 0x2c) i = skipWs(text, i + 1);
  }
  if (i < 0 || i >= text.length) cfg.error = "configuration is not a flat JSON object of strings and string lists";
  return cfg;
}

function stringOr(cfg: Config, key: string, fallback: string): string {
  return cfg.strings.has(key) ? cfg.strings.get(key) : fallback;
}

// --- the policy --------------------------------------------------------------------------------

class Policy {
  header: string = "x-client-id";
  forwardAs: string = "x-edgegw-client";
  label: string = "default";
  authz: string = "";
  authzPath: string = "/healthz";
  tenants: Map<string, string> = new Map(); // allowed client -> tenant ("" for none)
}

let denied: Counter | null = null;

class ClientPolicyRoot extends RootContext {
  policies: Map<u32, Policy> = new Map();

  onConfigure(configuration_size: u32): bool {
    // The SDK's onConfigure reads the plugin configuration buffer into getConfiguration().
    if (!super.onConfigure(configuration_size)) return false;
    const cfg = parseConfig(this.getConfiguration());
    if (cfg.error.length > 0) {
      log(LogLevelValues.error, "client_policy: " + cfg.error);
      return false; // the host keeps the serving version and reports the rejection
    }
    const policy = new Policy();
    policy.header = stringOr(cfg, "header", policy.header).toLowerCase();
    policy.forwardAs = stringOr(cfg, "forward_as", policy.forwardAs).toLowerCase();
    policy.label = stringOr(cfg, "label", policy.label);
    policy.authz = stringOr(cfg, "authz", policy.authz);
    policy.authzPath = stringOr(cfg, "authz_path", policy.authzPath);
    if (cfg.lists.has("allow")) {
      const allow = cfg.lists.get("allow");
      for (let i = 0; i < allow.length; i++) {
        const bar = allow[i].indexOf("|");
        if (bar < 0) policy.tenants.set(allow[i], "");
        else policy.tenants.set(allow[i].substring(0, bar), allow[i].substring(bar + 1));
      }
    }
    this.policies.set(configuringRoot, policy);
    if (denied == null) denied = new Counter("client_policy_denied_total");
    log(LogLevelValues.info, "client_policy: policy '" + policy.label + "' allows "
      + policy.tenants.size.toString() + " client(s) by " + policy.header);
    return true;
  }

  createContext(context_id: u32): Context {
    const policy = this.policies.has(creatingUnder) ? this.policies.get(creatingUnder) : new Policy();
    return new ClientPolicy(context_id, this, policy);
  }
}

// A failed or timed-out call arrives with no headers (no :status): denied as well.
function onAuthzResponse(origin: BaseContext, headers: u32, body_size: usize, trailers: u32): void {
  const ctx = origin as ClientPolicy;
  const status = stream_context.headers.http_callback.get(":status");
  if (status.length == 3 && status.charAt(0) == "2") {
    ctx.allow();
    ctx.continueRequest();
    return;
  }
  ctx.deny("authz_denied", "the authorization service of policy '" + ctx.policy.label + "' answered "
    + (status.length > 0 ? status : "nothing"));
}

class ClientPolicy extends Context {
  policy: Policy;
  client: string = "";

  constructor(context_id: u32, root_context: ClientPolicyRoot, policy: Policy) {
    super(context_id, root_context);
    this.policy = policy;
  }

  onRequestHeaders(header_count: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const p = this.policy;
    const client = stream_context.headers.request.get(p.header);
    if (client.length == 0) {
      return this.deny("missing_client_id", "the " + p.header + " header is required by policy '" + p.label + "'");
    }
    if (!p.tenants.has(client)) {
      return this.deny("client_denied", "client '" + client + "' is not allowed by policy '" + p.label + "'");
    }
    this.client = client;
    if (p.authz.length == 0) {
      this.allow();
      return FilterHeadersStatusValues.Continue;
    }
    // External authorization: the SDK's http call (through the root context), answered in
    // onAuthzResponse; the request waits until then.
    const headers: Headers = [makeHeaderPair(":method", "GET"), makeHeaderPair(":path", p.authzPath),
      makeHeaderPair(":authority", p.authz), makeHeaderPair("x-client-id", client)];
    const root = this.root_context;
    if (root.httpCall(p.authz, headers, new ArrayBuffer(0), [], 1000, this, onAuthzResponse) != WasmResultValues.Ok) {
      return this.deny("authz_unavailable", "cannot reach the authorization service of policy '" + p.label + "'");
    }
    return FilterHeadersStatusValues.StopIteration;
  }

  allow(): void {
    stream_context.headers.request.add(this.policy.forwardAs, this.client);
    stream_context.headers.request.add("x-edgegw-policy", this.policy.label);
    set_property("edgegw.subject", String.UTF8.encode(this.client));
    const tenant = this.policy.tenants.get(this.client);
    if (tenant.length > 0) set_property("edgegw.tenant", String.UTF8.encode(tenant));
  }

  deny(code: string, message: string): FilterHeadersStatusValues {
    // Messages come from our own literals and header values; strip quotes and backslashes so the
    // body stays valid JSON without a full encoder.
    const safe = message.replaceAll("\"", "'").replaceAll("\\", "/");
    const body = "{\"error\":{\"code\":\"" + code + "\",\"message\":\"" + safe + "\"}}";
    const headers: Headers = [makeHeaderPair("content-type", "application/json"),
      makeHeaderPair("x-client-policy", this.policy.label)];
    send_local_response(403, code, String.UTF8.encode(body), headers, GrpcStatusValues.InvalidCode);
    if (denied != null) (denied as Counter).increment(1);
    log(LogLevelValues.info, "client_policy: " + code + ": " + safe);
    return FilterHeadersStatusValues.StopIteration;
  }
}

registerRootContext((context_id: u32): RootContext => new ClientPolicyRoot(context_id), "client_policy");
