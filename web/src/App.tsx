// The chat page: pick a knowledge base, upload documents (upload + indexing progress), ask, read the streamed answer,
// click [n] to see the quoted passage with its document and page. With auth on, a sign-in screen comes first.
import { useCallback, useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";
import { api, type Answer, type Citation, type Doc, type Info, type Job, type Kb, type Me } from "./api.js";
import { STRINGS, initialLang, pageLabel, type Lang, type Strings } from "./i18n.js";
import { Login } from "./Login.js";

interface Message {
  id: number;
  role: "user" | "assistant";
  text: string;
  answer?: Answer;
  error?: string;
  pending?: boolean;
}

interface UploadItem {
  key: string;
  name: string;
  stage: "uploading" | "queued" | "running" | "done" | "failed";
  fraction: number;
  chunks?: number;
  error?: string;
}

let nextId = 1;

/** `code` spans in UI strings → <code>. */
function withCode(text: string): ReactNode[] {
  return text.split("`").map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part));
}

function Markdownish({
  text,
  citations,
  onCite,
  t,
  lang,
}: {
  text: string;
  citations: Citation[];
  onCite: (c: Citation) => void;
  t: Strings;
  lang: Lang;
}) {
  const parts: ReactNode[] = [];
  const re = /\[(\d+)\]/g;
  let last = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const c = citations.find((x) => x.index === Number(m![1]));
    if (!c) continue;
    if (m.index > last) parts.push(text.slice(last, m.index));
    const where = c.page ? `, ${pageLabel(t, lang, c.page)}` : "";
    parts.push(
      <button
        key={`${m.index}`}
        type="button"
        className="cite"
        onClick={() => onCite(c)}
        aria-label={`${t.source} ${c.index}: ${c.document}${where}`}
      >
        {c.index}
      </button>,
    );
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return <>{parts}</>;
}

/** Ask the server who we are; 401 → sign-in form. Auth off → the local operator, and the page is as before. */
export function App() {
  const [lang, setLang] = useState<Lang>(initialLang);
  const [me, setMe] = useState<Me | null>(); // undefined: still asking; null: sign-in needed
  const [fatal, setFatal] = useState<string>();
  const t = STRINGS[lang];
  const toggleLang = () => setLang((l) => (l === "zh" ? "en" : "zh"));

  useEffect(() => {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    localStorage.setItem("dajian.lang", lang);
  }, [lang]);

  useEffect(() => {
    api.setOnUnauthorized(() => setMe(null));
    api.me().then(setMe, (e: Error) => setFatal(e.message));
    return () => api.setOnUnauthorized(undefined);
  }, []);

  async function signOut() {
    try {
      await api.logout();
    } catch {
      // the session is gone either way (expired or ended); the sign-in form is the right next screen
    }
    setMe(null);
  }

  if (fatal)
    return (
      <div className="alert error" role="alert">
        <span>{fatal}</span>
      </div>
    );
  if (me === undefined) return <div className="app" aria-busy="true" />;
  if (me === null) return <Login t={t} lang={lang} onLang={toggleLang} onSignedIn={setMe} />;
  return <Workspace t={t} lang={lang} onLang={toggleLang} me={me} onSignOut={signOut} />;
}

function Workspace({
  t,
  lang,
  onLang,
  me,
  onSignOut,
}: {
  t: Strings;
  lang: Lang;
  onLang: () => void;
  me: Me;
  onSignOut: () => void;
}) {
  const [info, setInfo] = useState<Info>();
  const [kbs, setKbs] = useState<Kb[]>([]);
  const [kb, setKb] = useState<string>();
  const [docs, setDocs] = useState<Doc[]>([]);
  const [uploads, setUploads] = useState<UploadItem[]>([]);
  const [messages, setMessages] = useState<Message[]>([]);
  const [conversationId, setConversationId] = useState<string>();
  const [question, setQuestion] = useState("");
  const [busy, setBusy] = useState(false);
  const [cited, setCited] = useState<Citation>();
  const [newKb, setNewKb] = useState("");
  const [error, setError] = useState<string>();
  const abortRef = useRef<AbortController | null>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const endRef = useRef<HTMLDivElement>(null);
  const panelCloseRef = useRef<HTMLButtonElement>(null);

  const refreshKbs = useCallback(async () => {
    const list = await api.kbs();
    setKbs(list);
    setKb((cur) => (cur && list.some((k) => k.name === cur) ? cur : list[0]?.name));
  }, []);

  useEffect(() => {
    api.info().then(setInfo, (e: Error) => setError(e.message));
    refreshKbs().catch((e: Error) => setError(e.message));
  }, [refreshKbs]);

  const refreshDocs = useCallback(async (name: string) => setDocs(await api.docs(name)), []);

  useEffect(() => {
    setMessages([]);
    setConversationId(undefined);
    setCited(undefined);
    if (kb) refreshDocs(kb).catch((e: Error) => setError(e.message));
    else setDocs([]);
  }, [kb, refreshDocs]);

  useEffect(() => {
    // braces matter: newer Chromium returns a Promise from scrollIntoView, which React would take for a cleanup
    endRef.current?.scrollIntoView?.({ block: "end" });
  }, [messages]);
  useEffect(() => {
    if (cited) panelCloseRef.current?.focus();
  }, [cited]);

  const patchUpload = (key: string, p: Partial<UploadItem>) =>
    setUploads((us) => us.map((u) => (u.key === key ? { ...u, ...p } : u)));

  async function onFiles(files: File[]) {
    if (!kb || files.length === 0) return;
    const max = info?.limits.maxFileBytes ?? Infinity;
    const ok = files.filter((f) => f.size <= max);
    for (const f of files.filter((x) => x.size > max)) setError(`${t.tooLarge}: ${f.name}`);
    if (!ok.length) return;
    const key = `u${nextId++}`;
    const items = ok.map((f, i) => ({ key: `${key}-${i}`, name: f.name, stage: "uploading" as const, fraction: 0 }));
    setUploads((us) => [...items, ...us]);
    try {
      const jobs = await api.upload(kb, ok, (fr) => items.forEach((it) => patchUpload(it.key, { fraction: fr })));
      jobs.forEach((job, i) => {
        const it = items[i];
        patchUpload(it.key, { stage: "queued", fraction: 0 });
        api.watchJob(job.id, (j: Job) => {
          const fr = j.progress?.total ? j.progress.done / j.progress.total : 0;
          patchUpload(it.key, {
            stage: j.status,
            fraction: j.status === "done" ? 1 : fr,
            chunks: j.result?.chunks,
            error: j.status === "failed" ? j.error : undefined,
          });
          if (j.status === "done" || j.status === "failed") {
            refreshDocs(kb).catch(() => {});
            refreshKbs().catch(() => {});
          }
        });
      });
    } catch (e) {
      items.forEach((it) => patchUpload(it.key, { stage: "failed", error: (e as Error).message }));
    }
  }

  async function onAsk(e?: FormEvent) {
    e?.preventDefault();
    const q = question.trim();
    if (!kb || !q || busy) return;
    setQuestion("");
    setBusy(true);
    const user: Message = { id: nextId++, role: "user", text: q };
    const bot: Message = { id: nextId++, role: "assistant", text: "", pending: true };
    setMessages((ms) => [...ms, user, bot]);
    const patch = (p: Partial<Message>) => setMessages((ms) => ms.map((m) => (m.id === bot.id ? { ...m, ...p } : m)));
    const ac = new AbortController();
    abortRef.current = ac;
    let text = "";
    try {
      await api.ask(
        kb,
        q,
        conversationId,
        {
          delta: (d) => {
            text += d;
            patch({ text });
          },
          answer: (a) => {
            patch({ text: a.answer, answer: a, pending: false });
            if (a.conversationId) setConversationId(a.conversationId);
          },
        },
        ac.signal,
      );
    } catch (err) {
      if (!ac.signal.aborted) patch({ error: (err as Error).message });
    } finally {
      patch({ pending: false });
      setBusy(false);
      abortRef.current = null;
    }
  }

  async function onCreateKb(e: FormEvent) {
    e.preventDefault();
    const name = newKb.trim();
    if (!name) return;
    try {
      await api.createKb(name);
      setNewKb("");
      await refreshKbs();
      setKb(name);
    } catch (err) {
      setError((err as Error).message);
    }
  }

  async function onDeleteDoc(d: Doc) {
    if (!kb || !window.confirm(`${t.confirmDeleteDoc}\n${d.name}`)) return;
    try {
      await api.deleteDoc(kb, d.id);
      await refreshDocs(kb);
    } catch (err) {
      setError((err as Error).message);
    }
  }

  const stageLabel = (s: UploadItem["stage"]) =>
    ({ uploading: t.uploading, queued: t.queued, running: t.ingesting, done: t.done, failed: t.failed })[s];

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            搭
          </span>
          <span className="brand-name">dajian</span>
          <span className="brand-sub">{t.title}</span>
        </div>
        <div className="topbar-right">
          {info && (
            <span className={`mode mode-${info.mode}`}>
              {info.model ?? (lang === "zh" ? "摘录模式" : "extractive")}
            </span>
          )}
          <button type="button" className="ghost" onClick={onLang} aria-label={t.languageLabel}>
            {t.language}
          </button>
          {me.kind === "user" && (
            <>
              <span className="user" data-testid="signed-in-user" title={`${t.signedInAs} ${me.name} (${me.role})`}>
                {me.name}
              </span>
              <button type="button" className="ghost" onClick={onSignOut}>
                {t.signOut}
              </button>
            </>
          )}
        </div>
      </header>

      <div className="layout">
        <nav className="sidebar" aria-label={t.kbs}>
          <section>
            <h2>{t.kbs}</h2>
            {kbs.length === 0 && <p className="muted">{t.noKbs}</p>}
            <ul className="kb-list">
              {kbs.map((k) => (
                <li key={k.name}>
                  <button
                    type="button"
                    className={k.name === kb ? "kb active" : "kb"}
                    aria-current={k.name === kb ? "true" : undefined}
                    onClick={() => setKb(k.name)}
                  >
                    <span>{k.name}</span>
                    {k.documents !== undefined && <span className="count">{k.documents}</span>}
                  </button>
                </li>
              ))}
            </ul>
            <form className="new-kb" onSubmit={onCreateKb}>
              <label htmlFor="new-kb" className="sr-only">
                {t.newKb}
              </label>
              <input
                id="new-kb"
                value={newKb}
                onChange={(e) => setNewKb(e.target.value)}
                placeholder={t.newKbPlaceholder}
              />
              <button type="submit" disabled={!newKb.trim()}>
                {t.create}
              </button>
            </form>
          </section>

          {kb && (
            <section>
              <h2>{t.documents}</h2>
              <input
                ref={fileRef}
                type="file"
                multiple
                hidden
                data-testid="file-input"
                onChange={(e) => {
                  onFiles([...(e.target.files ?? [])]);
                  e.target.value = "";
                }}
              />
              <button type="button" className="upload" onClick={() => fileRef.current?.click()}>
                ⤒ {t.upload}
              </button>
              {uploads.length > 0 && (
                <ul className="uploads" aria-live="polite">
                  {uploads.map((u) => (
                    <li key={u.key} className={`upload-item ${u.stage}`}>
                      <div className="upload-row">
                        <span className="name" title={u.name}>
                          {u.name}
                        </span>
                        <span className="stage">{stageLabel(u.stage)}</span>
                      </div>
                      <progress
                        max={1}
                        value={u.stage === "queued" ? undefined : u.fraction}
                        aria-label={`${u.name} ${stageLabel(u.stage)}`}
                      />
                      {u.error && <div className="detail">{u.error}</div>}
                      {!u.error && u.chunks !== undefined && (
                        <div className="detail">
                          {u.chunks} {t.chunks}
                        </div>
                      )}
                    </li>
                  ))}
                </ul>
              )}
              {docs.length === 0 ? (
                <p className="muted">{t.noDocs}</p>
              ) : (
                <ul className="doc-list">
                  {docs.map((d) => (
                    <li key={d.id}>
                      <a href={api.fileUrl(kb, d.id)} className="doc-name" title={d.name}>
                        {d.name}
                      </a>
                      <button
                        type="button"
                        className="icon"
                        onClick={() => onDeleteDoc(d)}
                        aria-label={`${t.delete} ${d.name}`}
                      >
                        ×
                      </button>
                    </li>
                  ))}
                </ul>
              )}
            </section>
          )}
        </nav>

        <main className="chat" aria-label={kb ?? t.chooseKb}>
          {error && (
            <div className="alert error" role="alert">
              <span>{error}</span>
              <button type="button" className="icon" onClick={() => setError(undefined)} aria-label={t.close}>
                ×
              </button>
            </div>
          )}
          {info?.mode === "extractive" && (
            <div className="alert notice" role="note" data-testid="extractive-notice">
              <strong>{t.extractiveTitle}</strong>
              <p>{withCode(t.extractiveBody)}</p>
            </div>
          )}
          <div className="thread" aria-live="polite">
            {messages.length === 0 && <p className="empty">{kb ? t.emptyChat : t.noKbs}</p>}
            {messages.map((m) => (
              <article key={m.id} className={`msg ${m.role}`} aria-label={m.role === "user" ? t.you : t.assistant}>
                <div className="bubble" data-testid={m.role === "assistant" ? "answer" : undefined}>
                  {m.role === "assistant" && m.pending && !m.text && <span className="muted">{t.thinking}</span>}
                  {m.answer?.noAnswer && <div className="badge">{t.noAnswer}</div>}
                  <Markdownish
                    text={m.text}
                    citations={m.answer?.citations ?? []}
                    onCite={setCited}
                    t={t}
                    lang={lang}
                  />
                  {m.pending && m.text && <span className="caret" aria-hidden="true" />}
                  {m.error && (
                    <div className="msg-error" role="alert">
                      {t.error}: {m.error}
                    </div>
                  )}
                </div>
                {m.answer && m.answer.citations.length > 0 && (
                  <ol className="sources" aria-label={t.sources}>
                    {m.answer.citations.map((c) => (
                      <li key={c.index}>
                        <button type="button" className="source" onClick={() => setCited(c)}>
                          <span className="n">{c.index}</span>
                          <span className="doc">{c.document}</span>
                          {c.page !== undefined && <span className="pg">{pageLabel(t, lang, c.page)}</span>}
                        </button>
                      </li>
                    ))}
                  </ol>
                )}
              </article>
            ))}
            <div ref={endRef} />
          </div>
          <form className="composer" onSubmit={onAsk}>
            <label htmlFor="question" className="sr-only">
              {t.ask}
            </label>
            <textarea
              id="question"
              rows={2}
              value={question}
              disabled={!kb}
              placeholder={kb ? t.askPlaceholder : t.chooseKb}
              onChange={(e) => setQuestion(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) onAsk(e as unknown as FormEvent);
              }}
            />
            {busy ? (
              <button type="button" className="primary" onClick={() => abortRef.current?.abort()}>
                {t.stop}
              </button>
            ) : (
              <button type="submit" className="primary" disabled={!kb || !question.trim()}>
                {t.ask}
              </button>
            )}
          </form>
        </main>

        {cited && (
          <aside className="panel" aria-label={t.passage} data-testid="citation-panel">
            <div className="panel-head">
              <h2>
                <span className="n">{cited.index}</span> {t.source}
              </h2>
              <button
                ref={panelCloseRef}
                type="button"
                className="icon"
                onClick={() => setCited(undefined)}
                aria-label={t.close}
              >
                ×
              </button>
            </div>
            <dl className="meta">
              <dt>{t.document}</dt>
              <dd>{cited.document}</dd>
              {cited.page !== undefined && (
                <>
                  <dt>{lang === "zh" ? "页码" : "Page"}</dt>
                  <dd>{cited.page}</dd>
                </>
              )}
              {cited.heading && (
                <>
                  <dt>{lang === "zh" ? "章节" : "Section"}</dt>
                  <dd>{cited.heading}</dd>
                </>
              )}
            </dl>
            <blockquote className="quote">{cited.quote}</blockquote>
            {kb && (
              <a className="download" href={api.fileUrl(kb, cited.documentId)}>
                {t.download}
              </a>
            )}
          </aside>
        )}
      </div>
    </div>
  );
}
