//! pinfold-inspect's integration tests: images crafted byte by byte ([`fixture`]) written as
//! OCI layouts and `docker save` archives, opened and compared through the public API.

mod bad_input;
mod fixture;
mod formats;
mod story;

use std::path::Path;

use pinfold_inspect::diff::{diff_images, DiffError, DiffOptions, DiffReport};
use pinfold_inspect::image::{self, Image, ImageSource, OpenOptions};
use pinfold_inspect::layer::cache::LayerCache;

/// Opens `source` for linux/amd64.
pub async fn open(source: &str) -> Image {
    try_open(source)
        .await
        .unwrap_or_else(|e| panic!("open {source}: {e}"))
}

pub async fn try_open(source: &str) -> Result<Image, image::ImageError> {
    let source: ImageSource = source.parse()?;
    let options = OpenOptions {
        platform: "linux/amd64".parse()?,
        ..OpenOptions::default()
    };
    image::open(&source, &options).await
}

/// Compares with the layer cache in `cache`.
pub async fn try_diff(a: &Image, b: &Image, cache: &Path) -> Result<DiffReport, DiffError> {
    let options = DiffOptions {
        cache: LayerCache::at(cache),
        ..DiffOptions::default()
    };
    diff_images(a, b, &options).await
}

pub async fn diff(a: &Image, b: &Image, cache: &Path) -> DiffReport {
    try_diff(a, b, cache)
        .await
        .unwrap_or_else(|e| panic!("diff {} {}: {e}", a.name, b.name))
}
