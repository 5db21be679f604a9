//! The `hearth` binary: `serve` (default), `migrate`, `check-config`, `import`,
//! `audit verify`, `user set|lock|unlock`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hearth::app;
use hearth::config::{Config, ProcessEnv};

#[derive(Parser)]
#[command(name = "hearth", version, about = "FHIR R4 and SMART-on-FHIR server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Load batch/transaction Bundles (.json, .json.gz) and NDJSON files
    /// (.ndjson, .ndjson.gz), or directories of them; files already loaded
    /// are skipped.
    Import {
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Files loaded at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Local users (the `basic` module's `local` source). Running servers
    /// see a change within about a second.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Adds a user or replaces one's password and roles. The password is
    /// read from HEARTH_USER_PASSWORD, or else from the first line of
    /// standard input; it must meet the password policy.
    Set {
        name: String,
        /// A role (repeat for several), as named in `[security.roles]`.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Stops a user from signing in.
    Lock { name: String },
    /// Lets a locked user sign in again (also ends a lockout).
    Unlock { name: String },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit chain: every row present, unedited and in order
    /// (exit status 1 at the first row that is not).
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hearth: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    hearth::telemetry::init(&config.log);
    app::install_crypto_provider();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => {
            print!("{}", config.to_masked_toml());
            eprintln!("hearth: configuration is valid");
            Ok(())
        }
        Command::Migrate => actix_web::rt::System::new().block_on(async {
            let store = app::open_store(&config)?;
            let applied = app::migrate(&store).await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for m in applied {
                println!("applied {m}");
            }
            Ok(())
        }),
        Command::Serve => actix_web::rt::System::new().block_on(serve(config)),
        Command::Import { paths, jobs } => {
            return import(config, paths, jobs);
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            return actix_web::rt::System::new().block_on(audit_verify(config));
        }
        Command::User { command } => actix_web::rt::System::new().block_on(user(config, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "hearth stopped");
            eprintln!("hearth: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn user(config: Config, command: UserCommand) -> Result<(), app::StartError> {
    let store = app::open_store(&config)?;
    app::migrate(&store).await?;
    let refused = app::StartError::Security;
    match command {
        UserCommand::Set { name, roles } => {
            let password = match std::env::var("HEARTH_USER_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| refused(format!("reading the password: {e}")))?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            hearth::auth::set_local_user(&store, &name, &password, &roles)
                .await
                .map_err(|e| refused(e.to_string()))?;
            println!("user {name} saved");
        }
        UserCommand::Lock { name } => {
            hearth::auth::set_user_locked(&store, &name, true)
                .await
                .map_err(|e| refused(e.to_string()))?;
            println!("user {name} locked");
        }
        UserCommand::Unlock { name } => {
            hearth::auth::set_user_locked(&store, &name, false)
                .await
                .map_err(|e| refused(e.to_string()))?;
            println!("user {name} unlocked");
        }
    }
    Ok(())
}

async fn audit_verify(config: Config) -> ExitCode {
    let checked = async {
        let store = app::open_store(&config)?;
        app::migrate(&store).await?;
        let keys = hearth::crypto::KeyRing::new(app::master_key(&config)?);
        keys.load_tenant(&store, hearth::store::DEFAULT_TENANT)
            .await?;
        hearth::audit::verify(&store, &keys, hearth::store::DEFAULT_TENANT)
            .await
            .map_err(app::StartError::Database)
    };
    match checked.await {
        Ok(hearth::audit::Verdict::Intact { rows }) => {
            println!("audit chain intact: {rows} rows");
            ExitCode::SUCCESS
        }
        Ok(hearth::audit::Verdict::Broken { seq, reason }) => {
            println!("audit chain broken at row {seq}: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("hearth: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: Config) -> Result<(), app::StartError> {
    let state = app::build_state(&config).await?;
    let mut servers = Vec::new();
    for l in &config.listeners {
        let (server, addr) = app::listener_server(l, app::listener_state(&state, l)?, None)?;
        servers.push((server, addr));
    }
    let (server, addr) = app::http_server(&config, state, None)?;
    let scheme = if config.http.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        url = %format!("{scheme}://{addr}{}", config.http.base_path),
        "FHIR listener ready"
    );
    servers.push((server, addr));
    // Every listener runs until the process is told to stop (the main one
    // handles the signals and stops the System, and with it the others).
    let results = futures_util::future::join_all(servers.into_iter().map(|(s, addr)| async move {
        s.await.map_err(|source| app::StartError::Bind {
            addr: addr.to_string(),
            source,
        })
    }))
    .await;
    results.into_iter().collect()
}

/// `hearth import`: exit 0 when every file is in (loaded now or before), 1
/// with a per-file report when any failed, 2 on bad arguments.
fn import(config: Config, paths: Vec<std::path::PathBuf>, jobs: Option<usize>) -> ExitCode {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let files = match hearth::import::collect_files(&paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hearth import: {e}");
            return ExitCode::from(2);
        }
    };
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hearth import: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let state = match app::build_state(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hearth import: {e}");
                return ExitCode::FAILURE;
            }
        };
        let total_bytes = files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        let progress = Arc::new(hearth::import::Progress::default());
        let stop = Arc::new(AtomicBool::new(false));
        let shown = tokio::spawn(hearth::import::show_progress(
            progress.clone(),
            files.len(),
            total_bytes,
            std::time::Duration::from_millis(500),
            stop.clone(),
        ));
        let tenant = hearth::store::DEFAULT_TENANT;
        let summary = hearth::import::run(&state.service, tenant, files, jobs, progress).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = shown.await;
        let failed: Vec<_> = summary.failed().collect();
        println!(
            "imported {} resources from {} files in {:.1} s ({:.0} resources/s); {} skipped as already imported, {} failed",
            summary.resources,
            summary.files.len() - summary.skipped() - failed.len(),
            summary.elapsed.as_secs_f64(),
            summary.rate(),
            summary.skipped(),
            failed.len()
        );
        for f in &failed {
            if let hearth::import::FileOutcome::Failed { loaded, error } = &f.outcome {
                println!("FAILED {} ({loaded} resources in): {error}", f.path.display());
            }
        }
        if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
