//! `pinfold diff A B`: opens both images with `pinfold-inspect`, compares them
//! (`pinfold_inspect::diff::diff_images`) and prints the report as text, JSON or Markdown.
//! Exit code 0 when the images are equal, 1 when they differ, 2 on error.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pinfold_inspect::diff::{self, render, DiffOptions, Progress};
use pinfold_inspect::image::{self, ImageSource, OpenOptions, Platform};
use pinfold_inspect::layer::cache::LayerCache;
use pinfold_oci::Digest;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Sections for people: summary, ranked explanation, config, layers, packages, files.
    Text,
    /// The whole report as JSON (every file change included).
    Json,
    /// Markdown tables, for pull requests and issues.
    Markdown,
}

/// Arguments of `pinfold diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The image before: `oci:<dir>[:<ref>]`, `docker-archive:<file.tar>[:<ref>]`, or a
    /// registry reference (`ruby:3.3`, `ghcr.io/org/app@sha256:...`).
    #[arg(value_name = "A")]
    pub a: String,
    /// The image after, in the same forms.
    #[arg(value_name = "B")]
    pub b: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Platform to pick from multi-platform images, `os/arch[/variant]` (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Where extracted layer metadata is cached (default: $XDG_CACHE_HOME/pinfold, else
    /// ~/.cache/pinfold).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Read every layer; neither use nor fill the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Use plain HTTP for registries that are not on loopback (loopback always is).
    #[arg(long)]
    pub insecure: bool,
}

/// Progress bars on stderr, one per layer being read.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Bars {
    fn bar(&self, layer: &Digest) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(layer).cloned()
    }
}

impl Progress for Bars {
    fn layer_started(&self, layer: &Digest, size: Option<u64>) {
        let bar = match size {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let bar = self.multi.add(bar);
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        let hex = layer.encoded();
        bar.set_prefix(hex[..hex.len().min(12)].to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(layer.clone(), bar);
        }
    }

    fn layer_read(&self, layer: &Digest, bytes: u64) {
        if let Some(bar) = self.bar(layer) {
            bar.inc(bytes);
        }
    }

    fn layer_finished(&self, layer: &Digest, _cached: bool) {
        let bar = self.bars.lock().ok().and_then(|mut b| b.remove(layer));
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
}

/// Compares the two images and prints the report.
///
/// Returns exit code 0 when they are equal and 1 when they differ.
///
/// # Errors
/// An image that cannot be opened or a layer that cannot be read (the caller exits 2).
pub async fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let format = if args.json { Format::Json } else { args.format };
    let platform = match &args.platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let mut open_options = OpenOptions {
        platform,
        ..OpenOptions::default()
    };
    open_options.client.insecure = args.insecure;
    let source_a: ImageSource = args.a.parse()?;
    let source_b: ImageSource = args.b.parse()?;
    let (a, b) = tokio::try_join!(
        async {
            image::open(&source_a, &open_options)
                .await
                .with_context(|| format!("opening {}", args.a))
        },
        async {
            image::open(&source_b, &open_options)
                .await
                .with_context(|| format!("opening {}", args.b))
        },
    )?;

    let cache = if args.no_cache {
        LayerCache::disabled()
    } else if let Some(dir) = &args.cache_dir {
        LayerCache::at(dir)
    } else {
        LayerCache::user_default()
    };
    let bars = std::io::stderr().is_terminal().then(|| {
        Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        })
    });
    let options = DiffOptions {
        cache,
        progress: bars.clone().map(|b| b as Arc<dyn Progress>),
        ..DiffOptions::default()
    };
    let report = diff::diff_images(&a, &b, &options)
        .await
        .with_context(|| format!("comparing {} and {}", args.a, args.b))?;
    if let Some(bars) = bars {
        let _ = bars.multi.clear();
    }

    // anstream drops the styles when stdout is not a terminal or NO_COLOR is set.
    let mut out = anstream::stdout().lock();
    match format {
        Format::Json => {
            // Streamed: a diff of large images lists every changed file.
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Markdown => write!(out, "{}", render::to_markdown(&report))?,
        Format::Text => render::write_text(&mut out, &report, true)?,
    }
    out.flush()?;
    Ok(if report.equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
