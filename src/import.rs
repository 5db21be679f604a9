//! `hearth import PATH...`: loads batch and transaction Bundles (`.json`,
//! `.json.gz`) and NDJSON files (`.ndjson`, `.ndjson.gz`, one resource a
//! line), or whole directories of them, through the API's write path
//! (validation, index rows, encryption), several files at once.
//!
//! A transaction Bundle is one store transaction, and the file's record (by
//! content digest) is written in it: a re-run skips exactly the files that are
//! in. A batch Bundle or an NDJSON file is recorded once all of it is in;
//! NDJSON lines go in transactions of [`NDJSON_CHUNK`] (a line with an `id` is
//! an update, so loading it again only adds a version).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth_store::Store;
use hearth_store::schema::ImportedFile;

use crate::bundle::{BundleKind, BundleRequest, EntryResult};
use crate::error::ApiError;
use crate::json::{Json, Object};
use crate::service::Service;

/// NDJSON lines per transaction.
pub const NDJSON_CHUNK: usize = 500;

/// Most entries of one imported Bundle (a file is trusted more than a request,
/// but stays bounded).
const MAX_FILE_ENTRIES: usize = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Bundle,
    Ndjson,
}

fn file_kind(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".ndjson") {
        Some(FileKind::Ndjson)
    } else if name.ends_with(".json") {
        Some(FileKind::Bundle)
    } else {
        None
    }
}

/// The files named, directories expanded (sorted, recursively); other files
/// in a directory are passed over, a named file of an unknown kind is an error.
pub fn collect_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else if file_kind(&e).is_some() {
                        out.push(e);
                    }
                }
            }
        } else if file_kind(p).is_some() {
            if !p.is_file() {
                return Err(format!("{}: no such file", p.display()));
            }
            out.push(p.clone());
        } else {
            return Err(format!(
                "{}: not a directory, .json(.gz) Bundle or .ndjson(.gz) file",
                p.display()
            ));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileOutcome {
    Loaded { resources: u64 },
    Skipped,
    Failed { loaded: u64, error: String },
}

#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

/// The whole run.
#[derive(Debug, Default)]
pub struct Summary {
    pub files: Vec<FileReport>,
    pub resources: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn failed(&self) -> impl Iterator<Item = &FileReport> {
        self.files
            .iter()
            .filter(|f| matches!(f.outcome, FileOutcome::Failed { .. }))
    }

    pub fn skipped(&self) -> usize {
        self.files
            .iter()
            .filter(|f| matches!(f.outcome, FileOutcome::Skipped))
            .count()
    }

    pub fn rate(&self) -> f64 {
        self.resources as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Progress shared by the workers and the progress line.
#[derive(Default)]
pub struct Progress {
    pub resources: AtomicU64,
    pub bytes: AtomicU64,
    pub files: AtomicUsize,
}

/// Imports `files` for `tenant` with `jobs` files in flight.
pub async fn run(
    service: &Service,
    tenant: &str,
    files: Vec<PathBuf>,
    jobs: usize,
    progress: Arc<Progress>,
) -> Summary {
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(
        files.into_iter().enumerate().rev().collect::<Vec<_>>(),
    ));
    let mut workers = Vec::new();
    for _ in 0..jobs.max(1) {
        let (service, tenant, queue, progress) = (
            service.clone(),
            tenant.to_owned(),
            queue.clone(),
            progress.clone(),
        );
        // The operator's own work: its writes are not limited.
        workers.push(tokio::spawn(crate::limits::trusted(async move {
            let mut done = Vec::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop());
                let Some((i, path)) = next else {
                    return done;
                };
                let outcome = import_file(&service, &tenant, &path, &progress).await;
                progress.files.fetch_add(1, Ordering::Relaxed);
                done.push((i, FileReport { path, outcome }));
            }
        })));
    }
    let mut reports = Vec::new();
    for w in workers {
        match w.await {
            Ok(done) => reports.extend(done),
            Err(e) => tracing::error!(error = %e, "an import worker stopped"),
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    let files: Vec<FileReport> = reports.into_iter().map(|(_, r)| r).collect();
    let resources = files
        .iter()
        .map(|f| match f.outcome {
            FileOutcome::Loaded { resources } => resources,
            FileOutcome::Failed { loaded, .. } => loaded,
            FileOutcome::Skipped => 0,
        })
        .sum();
    Summary {
        files,
        resources,
        elapsed: started.elapsed(),
    }
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
    {
        let mut out = Vec::with_capacity(raw.len() * 8);
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An error as a report line: the OperationOutcome's diagnostics.
fn describe(e: &ApiError) -> String {
    let issues: Vec<&str> = e.issues.iter().map(|i| i.diagnostics.as_str()).collect();
    format!("{}: {}", e.status(), issues.join("; "))
}

async fn import_file(
    service: &Service,
    tenant: &str,
    path: &Path,
    progress: &Progress,
) -> FileOutcome {
    let failed = |loaded, error| FileOutcome::Failed { loaded, error };
    let bytes = match read_file(path) {
        Ok(b) => b,
        Err(e) => return failed(0, format!("cannot read: {e}")),
    };
    let compressed = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let digest = hex_digest(&bytes);
    match service.store().is_imported(tenant, &digest).await {
        Ok(true) => {
            progress.bytes.fetch_add(compressed, Ordering::Relaxed);
            return FileOutcome::Skipped;
        }
        Ok(false) => {}
        Err(e) => return failed(0, describe(&ApiError::from(e))),
    }
    let record = |resources: u64| ImportedFile {
        tenant: tenant.to_owned(),
        digest: digest.clone(),
        path: path.display().to_string(),
        resources: i64::try_from(resources).unwrap_or(i64::MAX),
        imported_at: crate::time::now_micros(),
    };
    let outcome = match file_kind(path) {
        Some(FileKind::Bundle) => import_bundle(service, tenant, &bytes, record, progress).await,
        Some(FileKind::Ndjson) => import_ndjson(service, tenant, &bytes, record, progress).await,
        None => failed(0, "not a Bundle or NDJSON file".to_owned()),
    };
    progress.bytes.fetch_add(compressed, Ordering::Relaxed);
    outcome
}

fn count_writes(results: &[EntryResult]) -> (u64, Option<String>) {
    let mut n = 0;
    let mut first_error = None;
    for (i, r) in results.iter().enumerate() {
        match r {
            EntryResult::Written { .. } | EntryResult::Deleted { .. } => n += 1,
            EntryResult::Read(_) | EntryResult::Matched(_) | EntryResult::SearchSet(_) => {}
            EntryResult::Failed(e) => {
                first_error.get_or_insert_with(|| format!("entry {i}: {}", describe(e)));
            }
        }
    }
    (n, first_error)
}

async fn import_bundle(
    service: &Service,
    tenant: &str,
    bytes: &[u8],
    record: impl Fn(u64) -> ImportedFile,
    progress: &Progress,
) -> FileOutcome {
    let failed = |loaded, error| FileOutcome::Failed { loaded, error };
    let json = match crate::json::parse(bytes) {
        Ok(j) => j,
        Err(e) => return failed(0, format!("invalid JSON: {e}")),
    };
    let request = match BundleRequest::parse(json, MAX_FILE_ENTRIES, None) {
        Ok(r) => r,
        Err(e) => return failed(0, describe(&e)),
    };
    let kind = request.kind;
    let writes = request.writes() as u64;
    let in_transaction = (kind == BundleKind::Transaction).then(|| record(writes));
    let results = match service.bundle(tenant, request, in_transaction).await {
        Ok(r) => r,
        Err(e) => return failed(0, describe(&e)),
    };
    let (n, first_error) = count_writes(&results);
    progress.resources.fetch_add(n, Ordering::Relaxed);
    if let Some(error) = first_error {
        return failed(n, error);
    }
    if kind == BundleKind::Batch
        && let Err(e) = service.store().record_import(record(n)).await
    {
        return failed(n, describe(&ApiError::from(e)));
    }
    FileOutcome::Loaded { resources: n }
}

/// One NDJSON line as a bundle entry: an update when it has an id, else a
/// create.
fn ndjson_entry(line: &[u8]) -> Result<Json, String> {
    let resource = crate::json::parse(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Json::Object(obj) = &resource else {
        return Err("a line must be a JSON object".to_owned());
    };
    let res_type = obj
        .get("resourceType")
        .and_then(Json::as_str)
        .ok_or("a line has no resourceType")?
        .to_owned();
    let mut request = Object::default();
    match obj.get("id").and_then(Json::as_str) {
        Some(id) => {
            request.push("method", Json::string("PUT"));
            request.push("url", Json::string(format!("{res_type}/{id}")));
        }
        None => {
            request.push("method", Json::string("POST"));
            request.push("url", Json::string(res_type));
        }
    }
    let mut entry = Object::default();
    entry.push("resource", resource);
    entry.push("request", Json::Object(request));
    Ok(Json::Object(entry))
}

async fn import_ndjson(
    service: &Service,
    tenant: &str,
    bytes: &[u8],
    record: impl Fn(u64) -> ImportedFile,
    progress: &Progress,
) -> FileOutcome {
    let failed = |loaded, error| FileOutcome::Failed { loaded, error };
    let lines: Vec<(usize, &[u8])> = bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| l.iter().any(|b| !b.is_ascii_whitespace()))
        .collect();
    let mut loaded = 0;
    for chunk in lines.chunks(NDJSON_CHUNK) {
        let mut entries = Vec::with_capacity(chunk.len());
        for (n, line) in chunk {
            match ndjson_entry(line) {
                Ok(e) => entries.push(e),
                Err(e) => return failed(loaded, format!("line {}: {e}", n + 1)),
            }
        }
        let mut bundle = Object::default();
        bundle.push("resourceType", Json::string("Bundle"));
        bundle.push("type", Json::string("transaction"));
        bundle.push("entry", Json::Array(entries));
        let first_line = chunk.first().map_or(0, |(n, _)| n + 1);
        let request = match BundleRequest::parse(Json::Object(bundle), MAX_FILE_ENTRIES, None) {
            Ok(r) => r,
            Err(e) => return failed(loaded, format!("from line {first_line}: {}", describe(&e))),
        };
        match service.bundle(tenant, request, None).await {
            Ok(results) => {
                let (n, _) = count_writes(&results);
                loaded += n;
                progress.resources.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                // The entry index in the message counts from the chunk's first line.
                return failed(
                    loaded,
                    format!("in the lines from {first_line}: {}", describe(&e)),
                );
            }
        }
    }
    match service.store().record_import(record(loaded)).await {
        Ok(()) => FileOutcome::Loaded { resources: loaded },
        Err(e) => failed(loaded, describe(&ApiError::from(e))),
    }
}

/// The progress line: resources, rate, files, ETA from the bytes still to
/// read. Printed to stderr every `every` until `stop` is set.
pub async fn show_progress(
    progress: Arc<Progress>,
    total_files: usize,
    total_bytes: u64,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let resources = progress.resources.load(Ordering::Relaxed);
        let bytes = progress.bytes.load(Ordering::Relaxed);
        let eta = if bytes > 0 {
            let left = total_bytes.saturating_sub(bytes) as f64 * secs / bytes as f64;
            format!("{:.0} s", left)
        } else {
            "?".to_owned()
        };
        let done = progress.files.load(Ordering::Relaxed);
        let width = 30;
        let filled = (done * width).checked_div(total_files).unwrap_or(width);
        eprint!(
            "\r[{}{}] {done}/{total_files} files, {resources} resources, {:.0}/s, ETA {eta}   ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            resources as f64 / secs,
        );
    }
    eprintln!();
}
