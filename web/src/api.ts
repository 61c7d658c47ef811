// Browser client of the app API (/api). Streams are read with fetch + a small SSE parser (POST bodies are needed,
// which EventSource cannot send); uploads use XMLHttpRequest for upload progress.
export interface Kb {
  name: string;
  description?: string;
  documents?: number;
}
export interface Doc {
  id: string;
  name: string;
  bytes?: number;
  pages?: number;
  chunks?: number;
}
export interface Citation {
  index: number;
  document: string;
  page?: number;
  heading?: string;
  quote: string;
  documentId: string;
}
export interface Answer {
  answer: string;
  citations: Citation[];
  mode: "generative" | "extractive";
  noAnswer: boolean;
  conversationId?: string;
}
export interface Info {
  version: string;
  mode: "generative" | "extractive";
  model: string | null;
  limits: { maxFileBytes: number };
}
export interface Job {
  id: string;
  kb: string;
  document: string;
  status: "queued" | "running" | "done" | "failed";
  progress?: { phase: string; done: number; total?: number };
  result?: { chunks?: number };
  error?: string;
}

/** The signed-in principal (GET /api/auth/me). With auth off this is the local operator (kind "local"). */
export interface Me {
  kind: "local" | "user" | "key" | "anonymous";
  id: string;
  name: string;
  role: string;
  csrfToken?: string;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status = 0,
  ) {
    super(message);
  }
}

// Session auth: the server wants the CSRF token from login/me in this header on every state-changing request
// (src/server/auth.ts CSRF_HEADER). Unset with auth off, where no header is sent.
const CSRF_HEADER = "x-csrf-token";
let csrfToken: string | undefined;
let onUnauthorized: (() => void) | undefined;

/** Headers for a state-changing request: the given ones plus the CSRF token when signed in. */
function withCsrf(h: Record<string, string> = {}): Record<string, string> {
  return csrfToken ? { ...h, [CSRF_HEADER]: csrfToken } : h;
}

async function json<T>(res: Response): Promise<T> {
  const body = await res.json().catch(() => undefined);
  if (!res.ok) {
    // a session that expired or was revoked mid-use: send the user back to the login form
    if (res.status === 401) onUnauthorized?.();
    throw new ApiError(body?.error?.message ?? `${res.status} ${res.statusText}`, res.status);
  }
  return body as T;
}

const enc = encodeURIComponent;

export const api = {
  /** Called when any request answers 401 (session gone). */
  setOnUnauthorized(fn: (() => void) | undefined) {
    onUnauthorized = fn;
  },
  /** Who is signed in; null when the server wants a login (auth on, no session). */
  async me(): Promise<Me | null> {
    const res = await fetch("api/auth/me");
    if (res.status === 401) return null;
    const me = await json<Me>(res);
    csrfToken = me.csrfToken;
    return me;
  },
  /** Whether the server offers single sign-on (OIDC configured and auth on). */
  async sso(): Promise<boolean> {
    const res = await fetch("api/health");
    return res.ok && ((await res.json()) as { sso?: boolean }).sso === true;
  },
  async login(name: string, password: string): Promise<Me> {
    const res = await fetch("api/auth/login", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name, password }),
    });
    const body = await res.json().catch(() => undefined);
    // a wrong password is a 401 too, but it must show its message, not bounce back to the login form
    if (!res.ok) throw new ApiError(body?.error?.message ?? `${res.status} ${res.statusText}`, res.status);
    csrfToken = body.csrfToken;
    // ask again, so the page shows what the server will see on the next request (cookie really kept)
    const me = await api.me();
    if (!me)
      throw new ApiError(
        "signed in, but the browser did not keep the session cookie — open the page over HTTPS, or turn security.secureCookies off",
        401,
      );
    return me;
  },
  async logout(): Promise<void> {
    try {
      await fetch("api/auth/logout", { method: "POST", headers: withCsrf() }).then((r) => json<unknown>(r));
    } finally {
      csrfToken = undefined;
    }
  },
  info: () => fetch("api/info").then((r) => json<Info>(r)),
  kbs: () =>
    fetch("api/kbs")
      .then((r) => json<{ kbs: Kb[] }>(r))
      .then((b) => b.kbs),
  createKb: (name: string) =>
    fetch("api/kbs", {
      method: "POST",
      headers: withCsrf({ "content-type": "application/json" }),
      body: JSON.stringify({ name }),
    }).then((r) => json<{ kb: Kb }>(r)),
  docs: (kb: string) =>
    fetch(`api/kbs/${enc(kb)}/documents`)
      .then((r) => json<{ documents: Doc[] }>(r))
      .then((b) => b.documents),
  deleteDoc: (kb: string, doc: string) =>
    fetch(`api/kbs/${enc(kb)}/documents/${enc(doc)}`, { method: "DELETE", headers: withCsrf() }).then((r) =>
      json<unknown>(r),
    ),
  fileUrl: (kb: string, doc: string) => `api/kbs/${enc(kb)}/documents/${enc(doc)}/file`,

  /** Upload files with progress (0..1); resolves with the ingest jobs. */
  upload(kb: string, files: File[], onProgress: (f: number) => void): Promise<Job[]> {
    return new Promise((resolve, reject) => {
      const form = new FormData();
      for (const f of files) form.append("file", f, f.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `api/kbs/${enc(kb)}/documents`);
      for (const [k, v] of Object.entries(withCsrf())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError("network error"));
      xhr.onload = () => {
        let body: any;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = undefined;
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body.jobs as Job[]);
        else {
          if (xhr.status === 401) onUnauthorized?.();
          reject(new ApiError(body?.error?.message ?? `${xhr.status}`, xhr.status));
        }
      };
      xhr.send(form);
    });
  },

  /** Follow an ingest job until it ends. */
  watchJob(id: string, onUpdate: (j: Job) => void): () => void {
    const es = new EventSource(`api/jobs/${enc(id)}/events`);
    const handle = (ev: MessageEvent) => onUpdate(JSON.parse(ev.data) as Job);
    es.addEventListener("progress", handle);
    es.addEventListener("end", (ev) => {
      handle(ev as MessageEvent);
      es.close();
    });
    es.onerror = () => es.close();
    return () => es.close();
  },

  /** Ask; deltas stream in, then the final answer with citations. */
  async ask(
    kb: string,
    question: string,
    conversationId: string | undefined,
    on: { delta(t: string): void; answer(a: Answer): void },
    signal: AbortSignal,
  ): Promise<void> {
    const res = await fetch(`api/kbs/${enc(kb)}/ask`, {
      method: "POST",
      headers: withCsrf({ "content-type": "application/json", accept: "text/event-stream" }),
      body: JSON.stringify({ question, ...(conversationId ? { conversationId } : {}) }),
      signal,
    });
    if (!res.ok || !res.body) return void (await json(res));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i: number;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = "message";
        let data = "";
        for (const line of frame.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue;
        const payload = JSON.parse(data);
        if (event === "delta") on.delta(payload.text);
        else if (event === "answer") on.answer(payload as Answer);
        else if (event === "error") throw new ApiError(payload?.error?.message ?? "error");
      }
    }
  },
};
