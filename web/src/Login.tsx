// Sign-in screen, shown when the server has authentication on and the browser has no session. The server's error
// message (wrong password, account locked, too many attempts — each with its fix) is shown as is.
import { useEffect, useState, type FormEvent, type ReactNode } from "react";
import { api, type Me } from "./api.js";
import type { Lang, Strings } from "./i18n.js";

function withCode(text: string): ReactNode[] {
  return text.split("`").map((part, i) => (i % 2 ? <code key={i}>{part}</code> : part));
}

export function Login({
  t,
  lang,
  onLang,
  onSignedIn,
}: {
  t: Strings;
  lang: Lang;
  onLang: () => void;
  onSignedIn: (me: Me) => void;
}) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [sso, setSso] = useState(false);
  useEffect(() => {
    api.sso().then(setSso, () => setSso(false));
  }, []);

  async function onSubmit(e: FormEvent) {
    e.preventDefault();
    if (!name.trim() || !password || busy) return;
    setBusy(true);
    setError(undefined);
    try {
      onSignedIn(await api.login(name.trim(), password));
    } catch (err) {
      setError((err as Error).message);
      setPassword("");
      setBusy(false);
    }
  }

  return (
    <div className="login-page" lang={lang === "zh" ? "zh-CN" : "en"}>
      <div className="login-top">
        <button type="button" className="ghost" onClick={onLang} aria-label={t.languageLabel}>
          {t.language}
        </button>
      </div>
      <form className="login-card" onSubmit={onSubmit} aria-labelledby="login-title">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            搭
          </span>
          <span className="brand-name">dajian</span>
          <span className="brand-sub">{t.title}</span>
        </div>
        <h1 id="login-title">{t.signInTitle}</h1>
        <p className="muted">{withCode(t.signInHint)}</p>
        {error && (
          <div className="login-error" role="alert" data-testid="login-error">
            {error}
          </div>
        )}
        <label htmlFor="login-name">{t.userName}</label>
        <input
          id="login-name"
          name="username"
          autoComplete="username"
          autoFocus
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <label htmlFor="login-password">{t.password}</label>
        <input
          id="login-password"
          name="password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <button type="submit" className="primary" disabled={busy || !name.trim() || !password}>
          {busy ? t.signingIn : t.signIn}
        </button>
        {sso && (
          <a className="sso" href="api/auth/oidc/login" data-testid="sso-link">
            {t.signInSso}
          </a>
        )}
      </form>
    </div>
  );
}
