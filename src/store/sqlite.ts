// Embedded metadata store: one SQLite file in the home dir (WAL, foreign keys on).
// Schema changes are ordered migrations (src/store/migrations/*), each applied once inside a transaction,
// so a crash mid-migration leaves the previous schema intact.
import Database from "better-sqlite3";
import { DajianError } from "../core/errors.js";
import { ensureHome } from "../core/home.js";
import { ALL_MIGRATIONS, type Migration } from "./migrations/index.js";

export type SqliteDb = Database.Database;

export function openSqlite(file: string, migrations: Migration[] = ALL_MIGRATIONS): SqliteDb {
  let db: SqliteDb;
  try {
    db = new Database(file);
  } catch (err) {
    throw new DajianError("internal", `cannot open database ${file}`, "check the path and its permissions", {
      cause: err,
    });
  }
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL"); // WAL + NORMAL: durable across process crashes (kill -9), fast commits
  db.pragma("foreign_keys = ON");
  db.pragma("busy_timeout = 5000"); // CLI and server may share the file
  migrate(db, migrations);
  return db;
}

export function migrate(db: SqliteDb, migrations: Migration[]): void {
  db.exec("CREATE TABLE IF NOT EXISTS _migrations (id TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)");
  const applied = new Set(db.prepare("SELECT id FROM _migrations").pluck().all() as string[]);
  const mark = db.prepare("INSERT INTO _migrations (id, applied_at) VALUES (?, ?)");
  for (const m of migrations) {
    if (applied.has(m.id)) continue;
    db.transaction(() => {
      db.exec(m.sqlite);
      mark.run(m.id, Date.now());
    }).immediate();
  }
}

/** Open (creating if needed) the metadata DB of a home dir. */
export function openHomeDb(home: string): SqliteDb {
  return openSqlite(ensureHome(home).db);
}
