//! The pull-through mirror's records: what each mirrored tag resolves to upstream
//! (`mirror_tags`) and the drift events raised when the upstream moves a tag that the mirror
//! keeps pinned (`drift_events`).
//!
//! The tag clients get is still the `tags` row, moved only through `tags::move_tag_in` and
//! journaled there. These tables record what the upstream *says*; [`Meta::observe_upstream`]
//! compares the two in one transaction and opens, refreshes or closes drift events, so the
//! drift list can never disagree with the tag it describes.

use pinfold_oci::{Digest, RepoName, Tag};
use serde::Serialize;
use time::OffsetDateTime;

use crate::engine::{on_engine, Dialect};
use crate::{columns, Meta, MetaError};

/// What the mirror last learned about one mirrored tag upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MirrorTagState {
    /// The local repository (`<upstream>/<upstream repository>`).
    pub repository: RepoName,
    /// The tag.
    pub tag: Tag,
    /// The configured upstream's name.
    pub upstream: String,
    /// What the tag resolved to upstream at the last successful check; `None` when the
    /// upstream no longer has it.
    pub upstream_digest: Option<Digest>,
    /// When `upstream_digest` was first observed (the cooldown policy counts from here).
    #[serde(with = "time::serde::rfc3339::option")]
    pub upstream_since: Option<OffsetDateTime>,
    /// The last check attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// Why the last check failed; `None` after a success.
    pub check_error: Option<String>,
}

/// How a drift event ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftResolution {
    /// The tag now points at the upstream's digest (promoted, or followed by policy).
    Accepted,
    /// The upstream went back to the pinned digest.
    Reverted,
    /// The upstream moved on to another digest, which has its own event.
    Superseded,
}

impl DriftResolution {
    /// The text stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftResolution::Accepted => "accepted",
            DriftResolution::Reverted => "reverted",
            DriftResolution::Superseded => "superseded",
        }
    }

    fn parse(value: String) -> Result<DriftResolution, MetaError> {
        match value.as_str() {
            "accepted" => Ok(DriftResolution::Accepted),
            "reverted" => Ok(DriftResolution::Reverted),
            "superseded" => Ok(DriftResolution::Superseded),
            _ => Err(MetaError::CorruptValue {
                what: "drift resolution",
                value,
            }),
        }
    }
}

/// An upstream move of a mirrored tag that the mirror did not follow (yet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftEvent {
    /// Monotonic id.
    pub id: i64,
    /// The local repository.
    pub repository: RepoName,
    /// The tag.
    pub tag: Tag,
    /// The upstream's name.
    pub upstream: String,
    /// What the tag serves locally when the drift was seen.
    pub pinned_digest: Digest,
    /// What the upstream tag points at.
    pub upstream_digest: Digest,
    /// When the upstream was first seen pointing there.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// When it was last seen pointing there.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// When the event closed; `None` while open.
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    /// How it closed.
    pub resolution: Option<DriftResolution>,
    /// What changed between the two images (JSON from `pinfold-inspect`), once computed.
    pub explanation: Option<serde_json::Value>,
}

/// The outcome of [`Meta::observe_upstream`].
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamObservation {
    /// The tag's upstream state after the observation.
    pub state: MirrorTagState,
    /// What the tag serves locally (`None`: not yet mirrored).
    pub pinned: Option<Digest>,
    /// The open drift event for this upstream digest, if the tag differs from it.
    pub drift: Option<DriftEvent>,
    /// True when `drift` was opened by this observation.
    pub new_drift: bool,
}

const STATE_COLUMNS: &str =
    "repository, tag, upstream, upstream_digest, upstream_since, checked_at, check_error";

type StateRow = (
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    i64,
    Option<String>,
);

fn state(row: StateRow) -> Result<MirrorTagState, MetaError> {
    let (repository, tag, upstream, upstream_digest, upstream_since, checked_at, check_error) = row;
    Ok(MirrorTagState {
        repository: columns::repo_name(repository)?,
        tag: columns::tag(tag)?,
        upstream,
        upstream_digest: columns::opt_digest(upstream_digest)?,
        upstream_since: upstream_since.map(columns::time_from_micros).transpose()?,
        checked_at: columns::time_from_micros(checked_at)?,
        check_error,
    })
}

const EVENT_COLUMNS: &str = "id, repository, tag, upstream, pinned_digest, upstream_digest, \
     first_seen, last_seen, resolved_at, resolution, explanation";

type EventRow = (
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn event(row: EventRow) -> Result<DriftEvent, MetaError> {
    let (
        id,
        repository,
        tag,
        upstream,
        pinned,
        upstream_digest,
        first_seen,
        last_seen,
        resolved_at,
        resolution,
        explanation,
    ) = row;
    let explanation = explanation
        .map(|text| {
            serde_json::from_str(&text).map_err(|_| MetaError::CorruptValue {
                what: "drift explanation",
                value: text,
            })
        })
        .transpose()?;
    Ok(DriftEvent {
        id,
        repository: columns::repo_name(repository)?,
        tag: columns::tag(tag)?,
        upstream,
        pinned_digest: columns::digest(pinned)?,
        upstream_digest: columns::digest(upstream_digest)?,
        first_seen: columns::time_from_micros(first_seen)?,
        last_seen: columns::time_from_micros(last_seen)?,
        resolved_at: resolved_at.map(columns::time_from_micros).transpose()?,
        resolution: resolution.map(DriftResolution::parse).transpose()?,
        explanation,
    })
}

/// How an open event for `event_upstream` closes when the tag serves `pinned` and the
/// upstream now says `observed`; `None` keeps it open.
fn closing(event_upstream: &str, pinned: &str, observed: Option<&str>) -> Option<DriftResolution> {
    if event_upstream == pinned {
        Some(DriftResolution::Accepted)
    } else if observed == Some(pinned) {
        Some(DriftResolution::Reverted)
    } else if observed.is_some_and(|o| o != event_upstream) {
        Some(DriftResolution::Superseded)
    } else {
        // Same upstream digest still differs, or the upstream lost the tag: still drifted.
        None
    }
}

impl Meta {
    /// What the mirror last learned about `tag` of `repo` upstream.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn mirror_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<MirrorTagState>, MetaError> {
        let sql =
            format!("SELECT {STATE_COLUMNS} FROM mirror_tags WHERE repository = $1 AND tag = $2");
        let row: Option<StateRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&db.readers)
            .await?);
        row.map(state).transpose()
    }

    /// Records that `tag` of `repo` resolves upstream (`upstream`) to `observed` (`None`: the
    /// upstream does not have it) and reconciles the drift events with what the tag serves,
    /// in one transaction:
    ///
    /// * the tag serves another digest than `observed`: the open event for `observed` is
    ///   refreshed (`last_seen`) or opened;
    /// * open events that no longer describe the situation close: `accepted` when the tag now
    ///   serves the event's digest, `reverted` when the upstream went back to what the tag
    ///   serves, `superseded` when the upstream moved on.
    ///
    /// Call it after every upstream check and after every move of a mirrored tag (with the
    /// last observed digest) so promotions close their events.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`]; nothing changes then.
    #[tracing::instrument(level = "debug", skip_all, fields(%repo, %tag))]
    pub async fn observe_upstream(
        &self,
        repo: &RepoName,
        tag: &Tag,
        upstream: &str,
        observed: Option<&Digest>,
    ) -> Result<UpstreamObservation, MetaError> {
        let now = columns::now_micros();
        let observed = observed.map(Digest::as_str);
        let state_sql =
            format!("SELECT {STATE_COLUMNS} FROM mirror_tags WHERE repository = $1 AND tag = $2");
        let open_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM drift_events \
             WHERE repository = $1 AND tag = $2 AND resolved_at IS NULL ORDER BY id"
        );
        let (state_row, pinned, open, new_drift) = on_engine!(self, |db| {
            let mut tx = db.write().await?;
            tx.lock_tag(repo.as_str(), tag.as_str()).await?;
            let previous: Option<StateRow> = sqlx::query_as(&state_sql)
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let since = match &previous {
                Some(row) if row.3.as_deref() == observed => row.4,
                _ => observed.map(|_| now),
            };
            sqlx::query(
                "INSERT INTO mirror_tags \
                   (repository, tag, upstream, upstream_digest, upstream_since, checked_at, \
                    check_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL) \
                 ON CONFLICT (repository, tag) DO UPDATE SET \
                   upstream = excluded.upstream, upstream_digest = excluded.upstream_digest, \
                   upstream_since = excluded.upstream_since, checked_at = excluded.checked_at, \
                   check_error = NULL",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(upstream)
            .bind(observed)
            .bind(since)
            .bind(now)
            .execute(&mut *tx)
            .await?;

            let pinned: Option<String> = sqlx::query_scalar(
                "SELECT t.digest FROM repositories r JOIN tags t ON t.repo_id = r.id \
                 WHERE r.name = $1 AND t.name = $2",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .fetch_optional(&mut *tx)
            .await?;

            let open: Vec<EventRow> = sqlx::query_as(&open_sql)
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let mut new_drift = false;
            if let Some(pinned) = &pinned {
                for row in &open {
                    if let Some(resolution) = closing(&row.5, pinned, observed) {
                        sqlx::query(
                            "UPDATE drift_events SET resolved_at = $1, resolution = $2 \
                             WHERE id = $3",
                        )
                        .bind(now)
                        .bind(resolution.as_str())
                        .bind(row.0)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                if let Some(observed) = observed.filter(|o| o != pinned) {
                    let refreshed = sqlx::query(
                        "UPDATE drift_events SET last_seen = $1 \
                         WHERE repository = $2 AND tag = $3 AND upstream_digest = $4 \
                           AND resolved_at IS NULL",
                    )
                    .bind(now)
                    .bind(repo.as_str())
                    .bind(tag.as_str())
                    .bind(observed)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if refreshed == 0 {
                        sqlx::query(
                            "INSERT INTO drift_events \
                               (repository, tag, upstream, pinned_digest, upstream_digest, \
                                first_seen, last_seen) \
                             VALUES ($1, $2, $3, $4, $5, $6, $6)",
                        )
                        .bind(repo.as_str())
                        .bind(tag.as_str())
                        .bind(upstream)
                        .bind(pinned.as_str())
                        .bind(observed)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        new_drift = true;
                    }
                }
            }
            let open: Vec<EventRow> = sqlx::query_as(&open_sql)
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_all(&mut *tx)
                .await?;
            let state_row: StateRow = sqlx::query_as(&state_sql)
                .bind(repo.as_str())
                .bind(tag.as_str())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            (state_row, pinned, open, new_drift)
        });
        let drift = match observed {
            Some(observed) => open
                .into_iter()
                .find(|row| row.5 == observed)
                .map(event)
                .transpose()?,
            None => None,
        };
        Ok(UpstreamObservation {
            state: state(state_row)?,
            pinned: columns::opt_digest(pinned)?,
            drift,
            new_drift,
        })
    }

    /// Records that checking `tag` of `repo` upstream failed (the last known upstream digest
    /// and the drift events stay as they are).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`].
    pub async fn record_upstream_failure(
        &self,
        repo: &RepoName,
        tag: &Tag,
        upstream: &str,
        error: &str,
    ) -> Result<(), MetaError> {
        let now = columns::now_micros();
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            sqlx::query(
                "INSERT INTO mirror_tags (repository, tag, upstream, checked_at, check_error) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (repository, tag) DO UPDATE SET \
                   checked_at = excluded.checked_at, check_error = excluded.check_error",
            )
            .bind(repo.as_str())
            .bind(tag.as_str())
            .bind(upstream)
            .bind(now)
            .bind(error)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Mirrored tags last checked before `checked_before`, least recently checked first, at
    /// most `limit`: the drift poller's work list.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn mirror_tags_due(
        &self,
        checked_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<MirrorTagState>, MetaError> {
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM mirror_tags WHERE checked_at < $1 \
             ORDER BY checked_at, repository, tag LIMIT $2"
        );
        let rows: Vec<StateRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(columns::micros(checked_before))
            .bind(i64::from(limit))
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(state).collect()
    }

    /// Drift events, newest first: only open ones with `open_only`, at most `limit`, with an
    /// id below `before` when given (paging backwards).
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn drift_events(
        &self,
        open_only: bool,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DriftEvent>, MetaError> {
        let filter = if open_only {
            "AND resolved_at IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM drift_events WHERE id < $1 {filter} \
             ORDER BY id DESC LIMIT $2"
        );
        let rows: Vec<EventRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&db.readers)
            .await?);
        rows.into_iter().map(event).collect()
    }

    /// One drift event.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::CorruptValue`].
    pub async fn drift_event(&self, id: i64) -> Result<Option<DriftEvent>, MetaError> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM drift_events WHERE id = $1");
        let row: Option<EventRow> = on_engine!(self, |db| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&db.readers)
            .await?);
        row.map(event).transpose()
    }

    /// Attaches the explanation of what changed to a drift event. `false` if there is no such
    /// event.
    ///
    /// # Errors
    ///
    /// [`MetaError::Database`], [`MetaError::AnnotationsEncoding`] if `explanation` cannot be
    /// encoded.
    pub async fn set_drift_explanation(
        &self,
        id: i64,
        explanation: &serde_json::Value,
    ) -> Result<bool, MetaError> {
        let text = serde_json::to_string(explanation).map_err(MetaError::AnnotationsEncoding)?;
        on_engine!(self, |db| {
            let mut tx = db.write().await?;
            let n = sqlx::query("UPDATE drift_events SET explanation = $1 WHERE id = $2")
                .bind(&text)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(n > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_close_for_the_right_reason() {
        use DriftResolution::*;
        // (event's upstream digest, pinned, observed) -> resolution
        let table = [
            ("b", "a", Some("b"), None),
            ("b", "a", None, None),
            ("b", "b", Some("b"), Some(Accepted)),
            ("b", "b", Some("c"), Some(Accepted)),
            ("b", "a", Some("a"), Some(Reverted)),
            ("b", "a", Some("c"), Some(Superseded)),
        ];
        for (event_upstream, pinned, observed, want) in table {
            assert_eq!(
                closing(event_upstream, pinned, observed),
                want,
                "{event_upstream} pinned {pinned} observed {observed:?}"
            );
        }
    }
}
