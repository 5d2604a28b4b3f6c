//! Copying the whole metadata from one engine to the other, for backups and restores of an
//! instance whose metadata lives in PostgreSQL.
//!
//! A backup always holds the metadata as a SQLite file (`meta.db`), whatever the engine:
//! [`Meta::snapshot_to`] on PostgreSQL fills a new SQLite file from one `REPEATABLE READ`
//! transaction (one consistent moment, like SQLite's `VACUUM INTO`), and
//! [`Meta::load_snapshot`] fills an empty PostgreSQL database from such a file. So a backup
//! restores onto either engine, which is also how an instance moves between them.
//!
//! The two schemas have the same tables and columns (the migrations are written alike; the
//! round-trip test in `tests/it/postgres.rs` compares every table), and every column is an
//! integer or text, so a row is copied column by column as `Option<i64>`, `Option<i32>` or
//! `Option<String>`, as PostgreSQL declares the column. Tables go parents first (foreign keys
//! stay checked on both sides), in batches of one multi-row `INSERT`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, PgConnection, Row, SqliteConnection};

use crate::engine::Engine;
use crate::{Meta, MetaError};

/// Rows the migrations themselves insert: a restore target holding only these is empty.
const SEEDED_BY_MIGRATIONS: &[&str] = &["gc_state"];

/// Tables that triggers on other tables write to (inserting a manifest or a blob link makes a
/// garbage-collection candidate): copied last, replacing whatever the triggers made during the
/// copy, so the target holds exactly the source's rows.
const FILLED_BY_TRIGGERS: &[&str] = &["gc_candidates"];

/// The most parameters one `INSERT` into PostgreSQL binds (it allows 65535): fewer round trips.
const PG_PARAMS_PER_INSERT: usize = 8000;

/// The most parameters one `INSERT` into SQLite binds. Small: sqlx looks each `$N` up by name
/// among all of the statement's parameters, so binding costs grow with the square of their
/// number (8000 per statement made a snapshot of 400 000 rows take 33 s, 256 took 7 s; 64, 128 and
/// 512 were slower).
const SQLITE_PARAMS_PER_INSERT: usize = 256;

/// How PostgreSQL declares a column; the Rust type a value travels as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `bigint`.
    Int8,
    /// `integer`.
    Int4,
    /// `text`.
    Text,
}

/// One value on its way between the engines.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int8(Option<i64>),
    Int4(Option<i32>),
    Text(Option<String>),
}

/// A table to copy.
#[derive(Debug)]
struct Table {
    name: String,
    columns: Vec<(String, Kind)>,
    /// The identity column (PostgreSQL `GENERATED ALWAYS AS IDENTITY`), whose sequence must
    /// continue after the copied rows.
    identity: Option<String>,
}

impl Table {
    fn name(&self) -> &str {
        &self.name
    }

    fn select(&self) -> String {
        format!("SELECT {} FROM {}", self.column_list(), self.name)
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }

    fn rows_per_insert(&self, params: usize) -> usize {
        (params / self.columns.len().max(1)).max(1)
    }

    /// `INSERT INTO t (..) [OVERRIDING SYSTEM VALUE] VALUES ($1, ..), ..` for `rows` rows.
    fn insert(&self, rows: usize, overriding_identity: bool) -> String {
        let width = self.columns.len();
        let mut sql = format!("INSERT INTO {} ({})", self.name, self.column_list());
        if overriding_identity && self.identity.is_some() {
            sql.push_str(" OVERRIDING SYSTEM VALUE");
        }
        sql.push_str(" VALUES ");
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for col in 0..width {
                if col > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", row * width + col + 1));
            }
            sql.push(')');
        }
        sql
    }
}

/// Inserts `rows` into `table` with one statement on either engine's connection (`$overriding`:
/// give identity columns the copied values, PostgreSQL only). Nothing for no rows.
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, $overriding:expr) => {{
        let rows: &[Vec<Value>] = $rows;
        if !rows.is_empty() {
            let sql = $table.insert(rows.len(), $overriding);
            let mut query = sqlx::query(&sql);
            for value in rows.iter().flatten().cloned() {
                query = match value {
                    Value::Int8(v) => query.bind(v),
                    Value::Int4(v) => query.bind(v),
                    Value::Text(v) => query.bind(v),
                };
            }
            query.execute($conn).await?;
        }
    }};
}

/// Reads one row's columns as `table` declares them, from either engine's row.
macro_rules! decode_row {
    ($row:expr, $table:expr) => {{
        let row = $row;
        let mut values = Vec::with_capacity($table.columns.len());
        for (i, (_, kind)) in $table.columns.iter().enumerate() {
            values.push(match kind {
                Kind::Int8 => Value::Int8(row.try_get(i)?),
                Kind::Int4 => Value::Int4(row.try_get(i)?),
                Kind::Text => Value::Text(row.try_get(i)?),
            });
        }
        Ok::<Vec<Value>, sqlx::Error>(values)
    }};
}

fn decode_pg(row: &PgRow, table: &Table) -> Result<Vec<Value>, sqlx::Error> {
    decode_row!(row, table)
}

fn decode_sqlite(row: &SqliteRow, table: &Table) -> Result<Vec<Value>, sqlx::Error> {
    decode_row!(row, table)
}

fn mismatch(detail: String) -> MetaError {
    MetaError::SchemaMismatch(detail)
}

/// A pool of one SQLite connection (foreign keys checked): sqlx's migrator runs on a pool
/// (its future on a bare connection is not `Send`), and the copy then uses that connection.
async fn one_connection(options: SqliteConnectOptions) -> Result<SqlitePool, MetaError> {
    Ok(SqlitePoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .connect_with(options.foreign_keys(true))
        .await?)
}

/// The tables of both schemas, parents before children, [`FILLED_BY_TRIGGERS`] last; an error
/// when the two schemas differ in a table, a column or a column type this copy handles.
async fn plan(
    sqlite: &mut SqliteConnection,
    pg: &mut PgConnection,
) -> Result<Vec<Table>, MetaError> {
    let lite_tables = sqlite_tables(sqlite).await?;
    let pg_tables = pg_tables(pg).await?;
    if lite_tables != pg_tables {
        return Err(mismatch(format!(
            "tables only in SQLite: {:?}; only in PostgreSQL: {:?}",
            lite_tables.difference(&pg_tables).collect::<Vec<_>>(),
            pg_tables.difference(&lite_tables).collect::<Vec<_>>()
        )));
    }

    let mut tables = BTreeMap::new();
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &pg_tables {
        let pg_columns: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_identity::text \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(name)
        .fetch_all(&mut *pg)
        .await?;
        let lite_columns: BTreeSet<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                .bind(name)
                .fetch_all(&mut *sqlite)
                .await?
                .into_iter()
                .collect();
        let pg_names: BTreeSet<String> = pg_columns.iter().map(|(n, _, _)| n.clone()).collect();
        if pg_names != lite_columns {
            return Err(mismatch(format!(
                "table {name}: columns {lite_columns:?} in SQLite, {pg_names:?} in PostgreSQL"
            )));
        }
        let mut columns = Vec::new();
        let mut identity = None;
        for (column, data_type, is_identity) in pg_columns {
            let kind = match data_type.as_str() {
                "bigint" => Kind::Int8,
                "integer" => Kind::Int4,
                "text" => Kind::Text,
                other => {
                    return Err(mismatch(format!(
                    "column {name}.{column} is {other}; only bigint, integer and text are copied"
                )))
                }
            };
            if is_identity == "YES" {
                identity = Some(column.clone());
            }
            columns.push((column, kind));
        }
        let referenced: BTreeSet<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(name)
                .fetch_all(&mut *sqlite)
                .await?
                .into_iter()
                .filter(|parent: &String| parent != name)
                .collect();
        parents.insert(name.clone(), referenced);
        tables.insert(
            name.clone(),
            Table {
                name: name.clone(),
                columns,
                identity,
            },
        );
    }

    // Parents first (Kahn's algorithm, by name among the ready ones, so the order is stable).
    let mut order = Vec::new();
    let mut placed = BTreeSet::new();
    while placed.len() < parents.len() {
        let ready: Vec<String> = parents
            .iter()
            .filter(|(name, deps)| {
                !placed.contains(*name) && deps.iter().all(|d| placed.contains(d))
            })
            .map(|(name, _)| name.clone())
            .collect();
        if ready.is_empty() {
            return Err(mismatch(format!(
                "foreign keys form a cycle among {:?}",
                parents
                    .keys()
                    .filter(|n| !placed.contains(*n))
                    .collect::<Vec<_>>()
            )));
        }
        for name in ready {
            placed.insert(name.clone());
            order.push(name);
        }
    }
    order.sort_by_key(|name| FILLED_BY_TRIGGERS.contains(&name.as_str()));
    Ok(order
        .into_iter()
        .filter_map(|name| tables.remove(&name))
        .collect())
}

impl Meta {
    /// PostgreSQL's half of [`Meta::snapshot_to`]: a new SQLite file at `dest` (migrated to
    /// this version's schema) holding every row as of one `REPEATABLE READ` transaction.
    pub(crate) async fn snapshot_postgres_to(&self, dest: &Path) -> Result<(), MetaError> {
        let Engine::Postgres(db) = &self.engine else {
            return Err(mismatch("snapshot_postgres_to on SQLite".into()));
        };
        if dest.exists() {
            return Err(MetaError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists", dest.display()),
            ))));
        }
        let sqlite = one_connection(
            SqliteConnectOptions::new()
                .filename(dest)
                .create_if_missing(true)
                // A scratch file until the copy is complete, removed on any error, fsynced by
                // the caller: no rollback journal, no syncs, and a cache that holds the
                // indexes being built (pages spilled mid-transaction cost a write and a read).
                .journal_mode(SqliteJournalMode::Off)
                .synchronous(SqliteSynchronous::Off)
                .pragma("cache_size", "-131072"),
        )
        .await?;
        let copied = async {
            sqlx::migrate!("./migrations/sqlite").run(&sqlite).await?;
            let mut sqlite = sqlite.acquire().await?;
            let mut pg = db.readers.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *pg)
                .await?;
            let tables = plan(&mut sqlite, &mut pg).await?;
            let mut lite = sqlite.begin().await?;
            for table in &tables {
                sqlx::query(&format!("DELETE FROM {}", table.name))
                    .execute(&mut *lite)
                    .await?;
                let select = table.select();
                let mut rows = sqlx::query(&select).fetch(&mut *pg);
                let mut batch = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    batch.push(decode_pg(&row, table)?);
                    if batch.len() == table.rows_per_insert(SQLITE_PARAMS_PER_INSERT) {
                        insert_rows!(&mut *lite, table, &std::mem::take(&mut batch), false);
                    }
                }
                insert_rows!(&mut *lite, table, &batch, false);
            }
            lite.commit().await?;
            pg.commit().await?;
            Ok::<(), MetaError>(())
        }
        .await;
        sqlite.close().await;
        if copied.is_err() {
            let _ = std::fs::remove_file(dest);
        }
        copied
    }

    /// Fills this PostgreSQL database, which must be empty (fresh from its migrations), with
    /// the metadata of the SQLite snapshot at `snapshot` (a backup's `meta.db`; migrated to
    /// this version's schema first, in place). One transaction: on any error nothing is
    /// loaded. Identity sequences continue after the loaded rows.
    ///
    /// # Errors
    /// [`MetaError::NotEmpty`] when the database already holds metadata;
    /// [`MetaError::SchemaMismatch`] when this is not PostgreSQL or the schemas differ;
    /// [`MetaError::Database`] / [`MetaError::Migration`] when reading or writing fails.
    pub async fn load_snapshot(&self, snapshot: &Path) -> Result<(), MetaError> {
        let Engine::Postgres(db) = &self.engine else {
            return Err(mismatch(
                "a snapshot is loaded into PostgreSQL only (SQLite uses the file itself)".into(),
            ));
        };
        if !snapshot.is_file() {
            return Err(MetaError::Database(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} does not exist", snapshot.display()),
            ))));
        }
        let sqlite = one_connection(SqliteConnectOptions::new().filename(snapshot)).await?;
        let loaded = async {
            // A backup of an older Pinfold: bring it to this schema before comparing.
            sqlx::migrate!("./migrations/sqlite").run(&sqlite).await?;
            let mut sqlite = sqlite.acquire().await?;
            let mut pg = db.writer.begin().await?;
            let tables = plan(&mut sqlite, &mut pg).await?;
            if let Some(table) = first_nonempty_pg(&mut pg, tables.iter().map(Table::name)).await? {
                return Err(MetaError::NotEmpty { table });
            }
            for table in &tables {
                sqlx::query(&format!("DELETE FROM {}", table.name))
                    .execute(&mut *pg)
                    .await?;
                let select = table.select();
                let mut rows = sqlx::query(&select).fetch(&mut *sqlite);
                let mut batch = Vec::new();
                while let Some(row) = rows.try_next().await? {
                    batch.push(decode_sqlite(&row, table)?);
                    if batch.len() == table.rows_per_insert(PG_PARAMS_PER_INSERT) {
                        insert_rows!(&mut *pg, table, &std::mem::take(&mut batch), true);
                    }
                }
                drop(rows);
                insert_rows!(&mut *pg, table, &batch, true);
                if let Some(column) = &table.identity {
                    // The next generated id follows the largest copied one.
                    sqlx::query(&format!(
                        "SELECT setval(pg_get_serial_sequence($1, $2), \
                         COALESCE((SELECT max({column}) FROM {name}), 0) + 1, false)",
                        name = table.name
                    ))
                    .bind(&table.name)
                    .bind(column)
                    .execute(&mut *pg)
                    .await?;
                }
            }
            pg.commit().await?;
            Ok::<(), MetaError>(())
        }
        .await;
        sqlite.close().await;
        loaded
    }

    /// The first table holding a row that the migrations did not put there, or `None` when
    /// the metadata is empty: what a restore into this database checks before it copies
    /// anything.
    ///
    /// # Errors
    /// [`MetaError::Database`] when listing or counting fails.
    pub async fn first_nonempty_table(&self) -> Result<Option<String>, MetaError> {
        match &self.engine {
            Engine::Postgres(db) => {
                let mut pg = db.readers.acquire().await?;
                let tables = pg_tables(&mut pg).await?;
                first_nonempty_pg(&mut pg, tables.iter().map(String::as_str)).await
            }
            Engine::Sqlite(db) => {
                let mut lite = db.readers.acquire().await?;
                for table in sqlite_tables(&mut lite).await? {
                    if !SEEDED_BY_MIGRATIONS.contains(&table.as_str())
                        && sqlx::query_scalar(&exists_sql(&table))
                            .fetch_one(&mut *lite)
                            .await?
                    {
                        return Ok(Some(table));
                    }
                }
                Ok(None)
            }
        }
    }
}

fn exists_sql(table: &str) -> String {
    format!("SELECT EXISTS (SELECT 1 FROM {table})")
}

async fn sqlite_tables(sqlite: &mut SqliteConnection) -> Result<BTreeSet<String>, MetaError> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(sqlite)
    .await?
    .into_iter()
    .collect())
}

async fn pg_tables(pg: &mut PgConnection) -> Result<BTreeSet<String>, MetaError> {
    Ok(sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pg)
    .await?
    .into_iter()
    .collect())
}

/// The first of `tables` (other than those the migrations seed) that holds a row.
async fn first_nonempty_pg<'t>(
    pg: &mut PgConnection,
    tables: impl IntoIterator<Item = &'t str>,
) -> Result<Option<String>, MetaError> {
    for table in tables {
        if SEEDED_BY_MIGRATIONS.contains(&table) {
            continue;
        }
        let any: bool = sqlx::query_scalar(&exists_sql(table))
            .fetch_one(&mut *pg)
            .await?;
        if any {
            return Ok(Some(table.to_owned()));
        }
    }
    Ok(None)
}

/// Compile-time check: the server and the backup run these on Tokio's multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(meta: &Meta, path: &Path) {
    fn send<T: Send>(_: T) {}
    send(meta.snapshot_postgres_to(path));
    send(meta.load_snapshot(path));
    send(meta.first_nonempty_table());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_number_every_parameter_once_and_override_identity_only_where_asked() {
        let table = Table {
            name: "t".into(),
            columns: vec![("id".into(), Kind::Int8), ("name".into(), Kind::Text)],
            identity: Some("id".into()),
        };
        assert_eq!(
            table.insert(2, true),
            "INSERT INTO t (id, name) OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4)"
        );
        assert_eq!(
            table.insert(1, false),
            "INSERT INTO t (id, name) VALUES ($1, $2)"
        );
        assert_eq!(
            table.rows_per_insert(PG_PARAMS_PER_INSERT),
            PG_PARAMS_PER_INSERT / 2
        );
        assert_eq!(table.rows_per_insert(1), 1);
        assert_eq!(table.select(), "SELECT id, name FROM t");
    }
}
