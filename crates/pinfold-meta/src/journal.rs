//! The tag journal: every move of every tag, append-only (the schema's triggers refuse UPDATE
//! and DELETE). Rows are written only by `tags::move_tag_in`, in the transaction of the move.

use pinfold_oci::{Digest, RepoName, Tag};

use crate::engine::{impl_for_connections, on_engine};
use crate::{columns, JournalEntry, Meta, MetaError, TagMove};

/// The columns [`entry`] decodes, in order.
const COLUMNS: &str = "id, repository, tag, previous_digest, new_digest, at, actor, source";

type Row = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
    String,
    String,
);

fn entry(row: Row) -> Result<JournalEntry, MetaError> {
    let (id, repository, tag, previous_digest, new_digest, at, actor, source) = row;
    Ok(JournalEntry {
        id,
        repository: columns::repo_name(repository)?,
        tag: columns::tag(tag)?,
        previous_digest: columns::opt_digest(previous_digest)?,
        new_digest: columns::opt_digest(new_digest)?,
        at: columns::time_from_micros(at)?,
        actor,
        source: columns::source(source)?,
    })
}

/// Writing the journal, on either engine.
pub(crate) trait JournalQueries {
    /// Appends one row. Call inside the write transaction that moves the tag.
    async fn append_journal(
        &mut self,
        repo: &RepoName,
        tag: &Tag,
        previous: Option<&str>,
        new: Option<&Digest>,
        mv: &TagMove,
        now: i64,
    ) -> Result<(), MetaError>;
}

impl_for_connections!(JournalQueries {
    async fn append_journal(
        &mut self,
        repo: &RepoName,
        tag: &Tag,
        previous: Option<&str>,
        new: Option<&Digest>,
        mv: &TagMove,
        now: i64,
    ) -> Result<(), MetaError> {
        sqlx::query(
            "INSERT INTO tag_journal \
               (repository, tag, previous_digest, new_digest, at, actor, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(repo.as_str())
        .bind(tag.as_str())
        .bind(previous)
        .bind(new.map(Digest::as_str))
        .bind(now)
        .bind(&mv.actor)
        .bind(mv.source.as_str())
        .execute(self)
        .await?;
        Ok(())
    }
});

impl Meta {
    /// Every journal row of a tag, oldest first.
    ///
    /// Includes the moves of a tag that no longer exists, and of a repository whose manifests
    /// are all gone.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn tag_history(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Vec<JournalEntry>, MetaError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM tag_journal WHERE repository = $1 AND tag = $2 ORDER BY id"
        );
        let rows: Vec<Row> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(entry).collect()
    }

    /// The whole journal, oldest first: at most `limit` rows with an id greater than `after`
    /// (`None`: from the beginning). Page by passing the last id seen.
    ///
    /// For `pinfold history` over every tag, backups, and feeds that follow the journal.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn journal(
        &self,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<JournalEntry>, MetaError> {
        // Ids start at 1 (AUTOINCREMENT / identity), so 0 means "from the beginning".
        let sql = format!("SELECT {COLUMNS} FROM tag_journal WHERE id > $1 ORDER BY id LIMIT $2");
        let rows: Vec<Row> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(after.unwrap_or(0))
            .bind(i64::from(limit))
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(entry).collect()
    }
}
