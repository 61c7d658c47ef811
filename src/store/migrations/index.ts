// Ordered list of all schema migrations. Each stage keeps its own file; ids are "<area>-NNN" and never change
// once released. `postgres` holds the same schema in PostgreSQL dialect for the Postgres backend.
export interface Migration {
  id: string;
  sqlite: string;
  postgres?: string;
}

import { MODELS_MIGRATIONS } from "./models.js";
import { ANSWER_MIGRATIONS } from "./answer.js";
import { KB_MIGRATIONS } from "./kb.js";
import { SECURITY_MIGRATIONS } from "./security.js";

export const ALL_MIGRATIONS: Migration[] = [
  ...KB_MIGRATIONS,
  ...MODELS_MIGRATIONS,
  ...ANSWER_MIGRATIONS,
  ...SECURITY_MIGRATIONS,
];
