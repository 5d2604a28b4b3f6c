//! Upload session ids.

use std::fmt;
use std::str::FromStr;

/// The id of an upload session: a random UUID (v4) in its hyphenated lowercase form.
///
/// `FromStr` accepts exactly that form, so an id taken from a URL can never name a path
/// outside `uploads/`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn new_random() -> UploadId {
        UploadId(uuid::Uuid::new_v4().hyphenated().to_string())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UploadId {
    type Err = crate::StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| u.hyphenated().to_string());
        match canonical {
            Some(c) if c == s => Ok(UploadId(c)),
            _ => Err(crate::StoreError::UploadUnknown(s.to_owned())),
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}
