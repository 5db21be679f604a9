//! The `hearth` binary: `serve` (default), `migrate`, `check-config`.

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

async fn serve(config: Config) -> Result<(), app::StartError> {
    let state = app::build_state(&config).await?;
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
    server.await.map_err(|source| app::StartError::Bind {
        addr: addr.to_string(),
        source,
    })
}
