//! The byok server: reads configuration, wires the crates, serves.

/// mimalloc: the gateway allocates many small buffers per request; the
/// system allocator's locks showed in profiles (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod settings;
mod setup;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::settings::Settings;

/// Bring your own AI provider keys: store them encrypted, test them, route requests.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// A TOML file with settings (environment variables override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create a user and print their first token (shown once).
    CreateUser {
        /// 1 to 64 characters of A-Z a-z 0-9 . _ @ -
        user_id: String,
    },
    /// Issue another token for a user, or an admin token; printed once.
    CreateToken {
        /// The user the token acts for.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        user: Option<String>,
        /// Issue an admin token instead.
        #[arg(long)]
        admin: bool,
    },
    /// Revoke a token by its public id (the part after `byok_`, before the second `_`).
    RevokeToken {
        /// The token's public id.
        token_id: String,
    },
    /// Reseal every stored key with the active master key (idempotent, resumable).
    Rewrap {
        /// Keys per batch.
        #[arg(long, default_value_t = 100)]
        batch: u32,
    },
    /// Export a user's provider keys to a file sealed under
    /// `BYOK_EXPORT_PASSPHRASE` (Argon2id and AES-256-GCM; nothing in plain
    /// text), for byok Desktop or another server.
    ExportKeys {
        /// The user whose keys to export.
        #[arg(long)]
        user: String,
        /// The file to write (created owner-only; never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add the keys of an export file (opened with `BYOK_EXPORT_PASSPHRASE`)
    /// to a user's keys, each as a new key.
    ImportKeys {
        /// The user to add them to.
        #[arg(long)]
        user: String,
        /// The export file.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Price catalog tools (no database needed).
    Catalog {
        #[command(subcommand)]
        action: CatalogAction,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walks the audit trail's hash chain and reports the first event that
    /// was edited, inserted or had its predecessor deleted by hand; prints the
    /// chain's head (record it elsewhere to notice a rewritten tail). Exits 1
    /// when the chain is broken. Needs the database, not the master key.
    Verify,
}

#[derive(Debug, Subcommand)]
enum CatalogAction {
    /// Report unknown fields, missing prices, routes to models no catalog
    /// prices and retired (or soon retired) defaults in a catalog file, as an
    /// override of the built-in catalog; without a file, the built-in one.
    /// Exits 1 when the file has problems.
    Check {
        /// The catalog file (`BYOK_PRICE_CATALOG_FILE`'s format).
        file: Option<PathBuf>,
    },
}

fn export_passphrase(settings: &Settings) -> anyhow::Result<secrecy::SecretString> {
    settings.export_passphrase.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "set BYOK_EXPORT_PASSPHRASE (or BYOK_EXPORT_PASSPHRASE_FILE): the export is sealed with it"
        )
    })
}

/// `audit verify`: the chain's state on stdout; an error when it is broken.
async fn audit_verify(settings: &Settings) -> anyhow::Result<()> {
    let store = byok_store::Store::connect(byok_store::StoreConfig::new(
        settings.database_url.expose_secret(),
    ))
    .await?;
    let report = store.run(byok_store::audit::verify_chain).await?;
    say(&format!(
        "audit chain: {} events checked; head {}",
        report.checked,
        report.head.as_deref().unwrap_or("(none)")
    ));
    match report.first_broken {
        None => {
            say("intact");
            Ok(())
        }
        Some(id) => anyhow::bail!(
            "the audit chain is broken at event {id}: it, or the event before it, was changed, inserted or deleted outside byok"
        ),
    }
}

/// `catalog check`: every finding on stdout, one a line.
fn catalog_check(file: Option<&std::path::Path>) -> ExitCode {
    let text = match file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => return fail(&format!("cannot read {}: {error}", path.display())),
        },
        None => String::new(),
    };
    let report = byok_router::check::check(&text, chrono::Utc::now().date_naive());
    for problem in &report.problems {
        say(&format!("problem: {problem}"));
    }
    for warning in &report.warnings {
        say(&format!("warning: {warning}"));
    }
    say(&format!(
        "{} problems, {} warnings",
        report.problems.len(),
        report.warnings.len()
    ));
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Checking a catalog must work when the server's settings would not load
    // (a broken catalog file is what it is for).
    if let Some(Command::Catalog {
        action: CatalogAction::Check { file },
    }) = &cli.command
    {
        return catalog_check(file.as_deref());
    }
    #[expect(
        clippy::disallowed_methods,
        reason = "the binary is where configuration is read"
    )]
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let (settings, warnings) = match Settings::load(cli.config.as_deref(), &env) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&error),
    };
    setup::init_tracing(&settings);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio_runtime() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error),
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn tokio_runtime() -> std::io::Result<actix_web::rt::Runtime> {
    actix_web::rt::Runtime::new()
}

/// One line on stderr naming what failed, and a non-zero exit.
fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "byok-server: error: {error:#}");
    ExitCode::from(2)
}

fn say(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    if let Command::Audit {
        action: AuditCommand::Verify,
    } = command
    {
        return audit_verify(&settings).await;
    }
    let (service, _lock) = setup::service(&settings).await?;
    match command {
        Command::Serve => setup::serve(service, &settings).await,
        Command::CreateUser { user_id } => {
            let user = byok_core::UserId::parse(user_id)?;
            let issued = service.operator().create_user(&user).await?;
            say(&format!("created user {user}; token id {}", issued.id));
            say(&format!(
                "token (shown once, store it now): {}",
                issued.token.expose_secret()
            ));
            Ok(())
        }
        Command::CreateToken { user, admin } => {
            let user = user
                .filter(|_| !admin)
                .map(byok_core::UserId::parse)
                .transpose()?;
            let issued = service.operator().issue_token(user.as_ref()).await?;
            say(&format!("token id {}", issued.id));
            say(&format!(
                "token (shown once, store it now): {}",
                issued.token.expose_secret()
            ));
            Ok(())
        }
        Command::ExportKeys { user, out } => {
            let passphrase = export_passphrase(&settings)?;
            let user = byok_core::UserId::parse(user)?;
            let keys = service.operator().export_keys(&user).await?;
            let text = byok_vault::seal_export(&keys, &passphrase)?;
            byok_vault::export::write_export_file(&out, &text).with_context(|| {
                format!("cannot create {} (it must not exist yet)", out.display())
            })?;
            say(&format!(
                "exported {} keys of {user} to {}",
                keys.len(),
                out.display()
            ));
            Ok(())
        }
        Command::ImportKeys { user, input } => {
            let passphrase = export_passphrase(&settings)?;
            let user = byok_core::UserId::parse(user)?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let keys = byok_vault::open_export(&text, &passphrase).map_err(|error| match error {
                byok_vault::VaultError::Open => anyhow::anyhow!(
                    "the export does not open with BYOK_EXPORT_PASSPHRASE (a wrong passphrase, or a changed file)"
                ),
                other => other.into(),
            })?;
            let added = service.operator().import_keys(&user, keys).await?;
            say(&format!("imported {added} keys for {user}"));
            Ok(())
        }
        Command::RevokeToken { token_id } => {
            service.operator().revoke_token(&token_id).await?;
            say(&format!("revoked token {token_id}"));
            Ok(())
        }
        Command::Rewrap { batch } => {
            let report = service.operator().rewrap(batch.max(1)).await?;
            say(&format!(
                "rewrapped {}, already current {}, failed {}",
                report.rewrapped, report.skipped, report.failed
            ));
            anyhow::ensure!(
                report.failed == 0,
                "{} keys do not open with the configured master keys",
                report.failed
            );
            Ok(())
        }
        Command::Catalog { .. } | Command::Audit { .. } => Ok(()), // handled above
    }
}
