// Ordered list of all schema migrations. Each stage keeps its own file; ids are "<area>-NNN" and never change
// once released. `postgres` holds the same schema in PostgreSQL dialect for the Postgres backend.
export interface Migration {
  id: string;
  sqlite: string;
  postgres?: string;
}

export const ALL_MIGRATIONS: Migration[] = [];
