//! Removes upload sessions that received nothing for a long time: clients that died mid-push
//! would otherwise leave their partial bytes on disk forever.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::{WorkResult, Worker};
use crate::registry::Registry;

/// Temp files of interrupted blob writes are removed after this long (a write in progress
/// touches its file continuously; an hour of silence means its process died).
const TEMP_FILE_EXPIRY: Duration = Duration::from_secs(3600);

/// The upload janitor.
pub struct UploadJanitor {
    registry: Registry,
    idle_expiry: Duration,
    interval: Duration,
}

impl UploadJanitor {
    /// A janitor removing uploads idle for longer than `idle_expiry`, checking every `interval`.
    pub fn new(registry: Registry, idle_expiry: Duration, interval: Duration) -> UploadJanitor {
        UploadJanitor {
            registry,
            idle_expiry,
            interval,
        }
    }

    async fn sweep(&self) -> WorkResult {
        let now = SystemTime::now();
        let cutoff = now
            .checked_sub(self.idle_expiry)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let store = self.registry.store();
        let meta = self.registry.meta();
        let removed = store
            .remove_stale_uploads(cutoff)
            .await
            .map_err(|e| e.to_string())?;
        for id in &removed {
            meta.delete_upload(id.as_str())
                .await
                .map_err(|e| e.to_string())?;
        }
        // Sessions whose file is gone (a crash between the two creates, or a removal above that
        // failed half-way) are forgotten too, once they are old enough.
        let mut forgotten = 0;
        let started_before = time::OffsetDateTime::from(cutoff);
        for record in meta
            .uploads_started_before(started_before)
            .await
            .map_err(|e| e.to_string())?
        {
            let alive = match record.id.parse::<pinfold_store::UploadId>() {
                Ok(id) => store
                    .upload_offset(&id)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some(),
                Err(_) => false,
            };
            if !alive {
                meta.delete_upload(&record.id)
                    .await
                    .map_err(|e| e.to_string())?;
                forgotten += 1;
            }
        }
        let temp_cutoff = now
            .checked_sub(TEMP_FILE_EXPIRY)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let temps = store
            .remove_stale_temp_files(temp_cutoff)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "removed {} idle uploads, {forgotten} orphaned records, {temps} temp files",
            removed.len()
        ))
    }
}

impl Worker for UploadJanitor {
    fn name(&self) -> &'static str {
        "upload-janitor"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn work(&mut self) -> Pin<Box<dyn Future<Output = WorkResult> + Send + '_>> {
        Box::pin(self.sweep())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open_registry, ServerConfig};

    #[tokio::test]
    async fn idle_uploads_are_removed_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = open_registry(
            dir.path(),
            &Default::default(),
            &ServerConfig::default(),
            &Default::default(),
        )
        .await
        .unwrap();
        let repo: pinfold_oci::RepoName = "team/app".parse().unwrap();
        let idle = registry.start_upload(&repo, "user:t").await.unwrap();

        // Nothing is idle for a day yet.
        let keep_all = UploadJanitor::new(
            registry.clone(),
            Duration::from_secs(86_400),
            Duration::from_secs(1),
        );
        let summary = keep_all.sweep().await.unwrap();
        assert!(summary.starts_with("removed 0 idle uploads"), "{summary}");
        assert!(registry.upload_offset(&repo, idle.as_str()).await.is_ok());

        // With a zero expiry, the untouched upload goes, in the store and in the metadata.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let expire_now =
            UploadJanitor::new(registry.clone(), Duration::ZERO, Duration::from_secs(1));
        let summary = expire_now.sweep().await.unwrap();
        assert!(summary.starts_with("removed 1 idle uploads"), "{summary}");
        let err = registry
            .upload_offset(&repo, idle.as_str())
            .await
            .unwrap_err();
        assert_eq!(err.code(), crate::v2::error::ErrorCode::BlobUploadUnknown);
        assert!(registry
            .meta()
            .upload(idle.as_str())
            .await
            .unwrap()
            .is_none());
        assert!(std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .next()
            .is_none());
    }
}
