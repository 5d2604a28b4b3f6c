//! The suite on the filesystem backend, in a temporary directory per test.

use pinfold_store::BlobStore;

/// Opens one store per "replica" over the same directory: on the filesystem, a second process
/// over one data directory is what a restart looks like.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl crate::suite::Backend for Fixture {
    async fn open(&self) -> BlobStore {
        BlobStore::open(self.dir.path().join("store")).unwrap()
    }
}

macro_rules! filesystem_suite {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                crate::suite::$name(&Fixture::new()).await;
            }
        )*
    };
}

crate::for_each_suite_test!(filesystem_suite);
