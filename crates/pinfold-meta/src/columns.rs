//! How typed values are stored in columns, and checked on the way back.
//!
//! Both engines store the same representations (see the header of the migrations): identifiers as
//! the exact accepted text, sizes as signed 64-bit integers, times as unix microseconds (UTC),
//! annotations as a JSON object. Everything read back goes through `FromStr` of the pinfold-oci
//! types, so a row written by another tool that does not parse is reported, never served.

use std::collections::BTreeMap;
use std::str::FromStr;

use pinfold_oci::{Digest, RepoName, Tag};
use time::OffsetDateTime;

use crate::{MetaError, TagMoveSource};

/// Parses a column with `FromStr`, naming the column when it does not parse.
fn parse<T: FromStr>(what: &'static str, value: String) -> Result<T, MetaError> {
    value
        .parse()
        .map_err(|_| MetaError::CorruptValue { what, value })
}

pub(crate) fn digest(value: String) -> Result<Digest, MetaError> {
    parse("digest", value)
}

pub(crate) fn opt_digest(value: Option<String>) -> Result<Option<Digest>, MetaError> {
    value.map(digest).transpose()
}

pub(crate) fn repo_name(value: String) -> Result<RepoName, MetaError> {
    parse("repository name", value)
}

pub(crate) fn tag(value: String) -> Result<Tag, MetaError> {
    parse("tag", value)
}

pub(crate) fn size_to_db(size: u64) -> Result<i64, MetaError> {
    i64::try_from(size).map_err(|_| MetaError::SizeTooLarge(size))
}

pub(crate) fn size_from_db(size: i64) -> Result<u64, MetaError> {
    u64::try_from(size).map_err(|_| MetaError::CorruptValue {
        what: "size",
        value: size.to_string(),
    })
}

pub(crate) fn micros(at: OffsetDateTime) -> i64 {
    // Every `OffsetDateTime` (years -9999..=9999 without time's `large-dates`) is within
    // ±3.2e17 µs, far inside i64; the fallback cannot be reached.
    i64::try_from(at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

pub(crate) fn time_from_micros(value: i64) -> Result<OffsetDateTime, MetaError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(value) * 1000).map_err(|_| {
        MetaError::CorruptValue {
            what: "time",
            value: value.to_string(),
        }
    })
}

pub(crate) fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

pub(crate) fn annotations_to_db(
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Option<String>, MetaError> {
    annotations
        .map(serde_json::to_string)
        .transpose()
        .map_err(MetaError::AnnotationsEncoding)
}

pub(crate) fn annotations_from_db(
    value: Option<String>,
) -> Result<Option<BTreeMap<String, String>>, MetaError> {
    match value {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| MetaError::CorruptValue {
                what: "annotations",
                value: text,
            }),
    }
}

pub(crate) fn source(value: String) -> Result<TagMoveSource, MetaError> {
    Ok(match value.as_str() {
        "push" => TagMoveSource::Push,
        "delete" => TagMoveSource::Delete,
        "mirror" => TagMoveSource::Mirror,
        "promote" => TagMoveSource::Promote,
        "restore" => TagMoveSource::Restore,
        "retention" => TagMoveSource::Retention,
        _ => {
            return Err(MetaError::CorruptValue {
                what: "tag move source",
                value,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_round_trips() {
        for s in [
            TagMoveSource::Push,
            TagMoveSource::Delete,
            TagMoveSource::Mirror,
            TagMoveSource::Promote,
            TagMoveSource::Restore,
        ] {
            assert_eq!(source(s.as_str().to_owned()).unwrap(), s);
        }
        assert!(matches!(
            source("pull".into()),
            Err(MetaError::CorruptValue { .. })
        ));
    }

    #[test]
    fn times_round_trip_to_the_microsecond() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap();
        assert_eq!(time_from_micros(micros(at)).unwrap(), at);
        let before_epoch = OffsetDateTime::from_unix_timestamp(-86_400).unwrap();
        assert_eq!(
            time_from_micros(micros(before_epoch)).unwrap(),
            before_epoch
        );
        assert!(time_from_micros(i64::MAX).is_err());
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(matches!(
            size_to_db(u64::MAX),
            Err(MetaError::SizeTooLarge(u64::MAX))
        ));
        assert!(matches!(
            size_from_db(-1),
            Err(MetaError::CorruptValue { what: "size", .. })
        ));
        assert_eq!(size_from_db(size_to_db(42).unwrap()).unwrap(), 42);
    }

    #[test]
    fn bad_text_is_a_corrupt_value() {
        assert!(matches!(
            digest("sha256:nothex".into()),
            Err(MetaError::CorruptValue { what: "digest", .. })
        ));
        assert!(matches!(
            repo_name("Upper/Case".into()),
            Err(MetaError::CorruptValue { .. })
        ));
        assert!(matches!(
            annotations_from_db(Some("[1]".into())),
            Err(MetaError::CorruptValue { .. })
        ));
    }
}
