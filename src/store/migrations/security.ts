// Users, groups, grants, API keys, sessions, per-subject limits and the hash-chained audit log ("sec-NNN" ids).
// Secrets are never stored: keys and session ids only as SHA-256, passwords only as scrypt hashes.
import type { Migration } from "./index.js";

export const SECURITY_MIGRATIONS: Migration[] = [
  {
    id: "sec-001",
    sqlite: `
      CREATE TABLE sec_users (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('admin','knowledge_manager','member','api_client')),
        password_hash TEXT,
        disabled INTEGER NOT NULL DEFAULT 0,
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until INTEGER,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE sec_groups (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE sec_group_members (
        group_id TEXT NOT NULL REFERENCES sec_groups(id) ON DELETE CASCADE,
        user_id TEXT NOT NULL REFERENCES sec_users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
      );
      CREATE INDEX sec_group_members_user ON sec_group_members (user_id);
      -- document = '' means the whole knowledge base; a document-level read grant makes that document restricted.
      CREATE TABLE sec_grants (
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user','group','key')),
        subject_id TEXT NOT NULL,
        kb TEXT NOT NULL,
        document TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL CHECK (action IN ('read','write','manage')),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (subject_kind, subject_id, kb, document, action)
      );
      CREATE INDEX sec_grants_kb ON sec_grants (kb, document);
      CREATE TABLE sec_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin','knowledge_manager','member','api_client')),
        user_id TEXT REFERENCES sec_users(id) ON DELETE CASCADE,
        scope TEXT NOT NULL DEFAULT '{}',
        limits TEXT NOT NULL DEFAULT '{}',
        expires_at INTEGER,
        revoked_at INTEGER,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
      );
      CREATE TABLE sec_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES sec_users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
      );
      CREATE INDEX sec_sessions_user ON sec_sessions (user_id);
      CREATE TABLE sec_limits (
        subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user','group')),
        subject_id TEXT NOT NULL,
        limits TEXT NOT NULL,
        PRIMARY KEY (subject_kind, subject_id)
      );
      CREATE TABLE sec_audit (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
      );
      -- Append-only at the SQL level too; the hash chain catches edits made around these triggers.
      CREATE TRIGGER sec_audit_no_update BEFORE UPDATE ON sec_audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
      CREATE TRIGGER sec_audit_no_delete BEFORE DELETE ON sec_audit BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
    `,
  },
  {
    // OIDC sign-in: which identity (issuer + subject) is which dajian user, and the pending authorization-code
    // flows (state → PKCE verifier + nonce, single use, minutes long).
    id: "sec-002",
    sqlite: `
      CREATE TABLE sec_oidc_links (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES sec_users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject)
      );
      CREATE TABLE sec_oidc_pending (
        state_hash TEXT PRIMARY KEY,
        verifier TEXT NOT NULL,
        nonce TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      );
    `,
  },
];
