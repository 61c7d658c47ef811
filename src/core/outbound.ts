// The one hardened HTTP client for everything dajian fetches from elsewhere (remote model providers, `pull`, URL
// import). Server-side request forgery is the classic hole in LLM gateways (LiteLLM api_base, New API's `0.0.0.0`
// bypass, LocalAI forwarding keys on redirect), so:
//  - the target must resolve only to public unicast addresses unless the host/IP is allow-listed by config;
//  - we resolve DNS ourselves and the socket connects to the address we checked (custom `lookup` on the agent), so
//    a rebinding DNS server cannot swap in 127.0.0.1 between check and connect;
//  - redirects are followed by hand, each hop re-checked, credentials dropped when the origin changes;
//  - every request has a deadline.
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import { isIP, type LookupFunction } from "node:net";
import ipaddr from "ipaddr.js";
import { Agent, ProxyAgent, fetch as undiciFetch, type Dispatcher, type RequestInit, type Response } from "undici";
import { DajianError } from "./errors.js";

export interface OutboundPolicy {
  /**
   * Hosts or networks that may be private: exact host names ("ollama.internal", "localhost"), wildcard suffixes
   * ("*.corp.example"), IPs or CIDRs ("10.0.0.0/8", "fd00::/8", "127.0.0.1").
   */
  allowHosts: string[];
}

export interface SafeFetchInit extends RequestInit {
  /** Allow any private/loopback target for this call (tests, explicitly local providers). Default false. */
  allowPrivate?: boolean;
  /** Extra allow-list entries for this call, merged with the process policy. */
  allowHosts?: string[];
  /** Redirect hops to follow (each re-checked). Default 5; 0 = return the 3xx response as is. */
  maxRedirects?: number;
  /** Deadline for the whole exchange up to response headers and body, in ms. Default 30 000. */
  timeoutMs?: number;
}

const SENSITIVE_HEADERS = ["authorization", "cookie", "proxy-authorization", "x-api-key", "api-key"];

let policy: OutboundPolicy = { allowHosts: envAllowHosts() };

function envAllowHosts(): string[] {
  const v = process.env.DAJIAN_OUTBOUND_ALLOW;
  return v
    ? v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** Set the process-wide outbound policy (from config `outbound.allowHosts`; `DAJIAN_OUTBOUND_ALLOW` is added). */
export function configureOutbound(p: Partial<OutboundPolicy>): void {
  policy = { allowHosts: [...(p.allowHosts ?? []), ...envAllowHosts()] };
}

export function outboundPolicy(): OutboundPolicy {
  return { allowHosts: [...policy.allowHosts] };
}

/** Strip IPv6 brackets from a URL hostname. */
function bareHost(hostname: string): string {
  return hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
}

/**
 * Why an address is not a public unicast target, or null when it is. IPv4-mapped/compatible IPv6, NAT64, 6to4 and
 * Teredo embed IPv4 addresses and are refused as a class: they are how filters that only check IPv4 get bypassed.
 */
export function blockedReason(address: string): string | null {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    addr = ipaddr.parse(address);
  } catch {
    return "not an IP address";
  }
  if (addr.kind() === "ipv6") {
    const v6 = addr as ipaddr.IPv6;
    const p = v6.parts;
    if (p.slice(0, 6).every((x) => x === 0) && !(p[6] === 0 && p[7] <= 1)) return "IPv4-compatible IPv6 address"; // ::a.b.c.d (deprecated, still routed by some stacks)
    const r = v6.range();
    return r === "unicast" ? null : r;
  }
  const r = (addr as ipaddr.IPv4).range();
  return r === "unicast" ? null : r;
}

function matchesAllowList(host: string, address: string | null, allow: string[]): boolean {
  const h = host.toLowerCase();
  for (const raw of allow) {
    const e = raw.trim().toLowerCase();
    if (!e) continue;
    if (e.startsWith("*.") ? h.endsWith(e.slice(1)) : h === bareHost(e)) return true;
    if (address && (e.includes("/") || isIP(bareHost(e)))) {
      try {
        const target = ipaddr.process(address);
        const [net, bits] = e.includes("/")
          ? ipaddr.parseCIDR(e)
          : ipaddr.parseCIDR(`${e}/${isIP(e) === 6 ? 128 : 32}`);
        const t = target.kind() === net.kind() ? target : null;
        if (t && t.match(net, bits)) return true;
      } catch {
        // malformed allow-list entry: ignore rather than widen access
      }
    }
  }
  return false;
}

interface Guard {
  allowPrivate: boolean;
  allow: string[];
}

function refuse(host: string, address: string, reason: string): DajianError {
  return new DajianError(
    "forbidden",
    `outbound request to ${host} (${address}) refused: ${reason} address`,
    `if this target is trusted, add "${host}" or its network to config outbound.allowHosts (or DAJIAN_OUTBOUND_ALLOW)`,
  );
}

/** Throw unless `address` (resolved for `host`) may be contacted under `g`. */
function checkAddress(host: string, address: string, g: Guard): void {
  if (g.allowPrivate) return;
  const reason = blockedReason(address);
  if (reason && !matchesAllowList(host, address, g.allow)) throw refuse(host, address, reason);
}

type Resolver = (host: string) => Promise<LookupAddress[]>;

const systemResolver: Resolver = (host) =>
  new Promise((resolve, reject) =>
    dnsLookup(host, { all: true, verbatim: true }, (err, addrs) => (err ? reject(err) : resolve(addrs))),
  );
let lookupAll: Resolver = systemResolver;

/** Test seam: replace name resolution (e.g. to simulate a DNS-rebinding server). Pass nothing to restore. */
export function setResolverForTests(r?: Resolver): void {
  lookupAll = r ?? systemResolver;
}

/**
 * Resolve a host and check every address (one bad record = refuse: a rebinding server can serve mixed answers).
 * IP literals are checked without DNS.
 */
export async function resolveChecked(hostname: string, g: Guard): Promise<LookupAddress[]> {
  const host = bareHost(hostname);
  const fam = isIP(host);
  if (fam) {
    checkAddress(host, host, g);
    return [{ address: host, family: fam }];
  }
  let addrs: LookupAddress[];
  try {
    addrs = await lookupAll(host);
  } catch (err) {
    throw new DajianError("upstream", `cannot resolve ${host}`, "check the host name and the DNS settings", {
      cause: err,
    });
  }
  if (addrs.length === 0) throw new DajianError("upstream", `no address for ${host}`, "check the host name");
  for (const a of addrs) checkAddress(host, a.address, g);
  return addrs;
}

/** A socket-level lookup that re-checks what it hands to connect(): the address checked is the address used. */
function guardedLookup(g: Guard): LookupFunction {
  return ((hostname: string, options: { all?: boolean; family?: number }, cb: (...a: unknown[]) => void) => {
    resolveChecked(hostname, g).then(
      (addrs) => {
        const fam = options?.family === 4 || options?.family === 6 ? options.family : 0;
        const pick = fam ? addrs.filter((a) => a.family === fam) : addrs;
        if (pick.length === 0)
          return cb(Object.assign(new Error(`no IPv${fam} address for ${hostname}`), { code: "ENOTFOUND" }));
        if (options?.all) cb(null, pick);
        else cb(null, pick[0].address, pick[0].family);
      },
      (err: unknown) => cb(err),
    );
  }) as unknown as LookupFunction;
}

const agents = new Map<string, Dispatcher>();

function directAgent(g: Guard): Dispatcher {
  const key = g.allowPrivate ? "*" : g.allow.join(",");
  let a = agents.get(key);
  if (!a) {
    a = new Agent({ connect: { lookup: guardedLookup(g) }, headersTimeout: 60_000, bodyTimeout: 300_000 });
    agents.set(key, a);
  }
  return a;
}

function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): string | null {
  const proxy =
    url.protocol === "https:"
      ? (env.HTTPS_PROXY ?? env.https_proxy ?? env.HTTP_PROXY ?? env.http_proxy)
      : (env.HTTP_PROXY ?? env.http_proxy);
  if (!proxy) return null;
  const noProxy = (env.NO_PROXY ?? env.no_proxy ?? "").split(/[,\s]+/).filter(Boolean);
  const host = bareHost(url.hostname).toLowerCase();
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  for (const raw of noProxy) {
    if (raw === "*") return null;
    const [rawHost, p] = raw.toLowerCase().split(/:(?=\d+$)/);
    if (p && p !== port) continue;
    const h = rawHost.replace(/^\*?\./, "");
    if (host === h || host.endsWith("." + h)) return null;
  }
  return proxy;
}

const proxyAgents = new Map<string, Dispatcher>();
function proxyAgent(proxy: string): Dispatcher {
  let a = proxyAgents.get(proxy);
  if (!a) {
    a = new ProxyAgent({ uri: proxy, headersTimeout: 60_000, bodyTimeout: 300_000 });
    proxyAgents.set(proxy, a);
  }
  return a;
}

function replayable(body: unknown): boolean {
  return (
    body === undefined ||
    body === null ||
    typeof body === "string" ||
    body instanceof Uint8Array ||
    body instanceof ArrayBuffer ||
    body instanceof URLSearchParams
  );
}

/**
 * fetch() with SSRF protection. Returns undici's Response (same shape as the global one; works as the `fetch` of
 * the official openai SDK). Refusals are DajianError("forbidden") raised before any connection is opened.
 */
export async function safeFetch(input: string | URL, init: SafeFetchInit = {}): Promise<Response> {
  const { allowPrivate = false, allowHosts = [], maxRedirects = 5, timeoutMs = 30_000, ...rest } = init;
  const g: Guard = { allowPrivate, allow: [...policy.allowHosts, ...allowHosts] };
  const signals = [AbortSignal.timeout(timeoutMs)];
  if (rest.signal) signals.push(rest.signal);
  const signal = AbortSignal.any(signals);

  let url = new URL(String(input));
  let method = (rest.method ?? "GET").toUpperCase();
  let body = rest.body;
  const headers = new Headers(rest.headers as ConstructorParameters<typeof Headers>[0]);
  const origin0 = url.origin;

  for (let hop = 0; ; hop++) {
    if (url.protocol !== "http:" && url.protocol !== "https:")
      throw new DajianError("invalid_input", `unsupported URL scheme ${url.protocol}`, "use an http(s):// URL");
    if (url.username || url.password)
      throw new DajianError("invalid_input", "credentials inside URLs are not accepted", "pass them as headers");
    // Check before anything touches the network: DNS answers are re-checked by the agent's lookup at connect time.
    await resolveChecked(url.hostname, g);
    const proxy = proxyFor(url);
    let res: Response;
    try {
      res = await undiciFetch(url, {
        ...rest,
        method,
        body,
        headers,
        redirect: "manual",
        signal,
        dispatcher: proxy ? proxyAgent(proxy) : directAgent(g),
      } as RequestInit);
    } catch (err) {
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof DajianError) throw cause;
      if (signal.aborted && !rest.signal?.aborted)
        throw new DajianError(
          "upstream",
          `request to ${url.host} timed out after ${timeoutMs} ms`,
          "retry later or raise the timeout",
          { cause: err },
        );
      throw new DajianError(
        "upstream",
        `request to ${url.host} failed: ${String((cause as Error)?.message ?? (err as Error).message)}`,
        "check the URL and that the server is reachable",
        { cause: err },
      );
    }
    const loc = res.headers.get("location");
    if (![301, 302, 303, 307, 308].includes(res.status) || !loc || maxRedirects === 0) return res;
    if (hop >= maxRedirects) {
      await res.body?.cancel();
      throw new DajianError(
        "upstream",
        `too many redirects (>${maxRedirects}) from ${origin0}`,
        "use the final URL directly",
      );
    }
    await res.body?.cancel();
    const next = new URL(loc, url);
    if (next.origin !== url.origin) for (const h of SENSITIVE_HEADERS) headers.delete(h);
    if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === "POST")) {
      method = method === "HEAD" ? "HEAD" : "GET";
      body = undefined;
      headers.delete("content-type");
      headers.delete("content-length");
    } else if (!replayable(body)) {
      throw new DajianError(
        "upstream",
        `cannot replay a streamed body across a ${res.status} redirect`,
        "send the request to the final URL",
      );
    }
    url = next;
  }
}

/** Close pooled connections (tests, shutdown). */
export async function closeOutbound(): Promise<void> {
  const all = [...agents.values(), ...proxyAgents.values()];
  agents.clear();
  proxyAgents.clear();
  await Promise.all(all.map((a) => a.close().catch(() => undefined)));
}
