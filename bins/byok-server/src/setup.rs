//! Turning settings into running parts: logging, the vault, the store, the
//! service and the HTTP server.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use byok_api::KeyService;
use byok_store::{Store, StoreConfig};
use byok_vault::{KeyVault, MasterKey, MasterKeyId};
use secrecy::ExposeSecret;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, MasterKeySource, Settings, parse_retired};

/// Logs go to stderr; stdout carries only what a command prints for the operator.
pub(crate) fn init_tracing(settings: &Settings) {
    // HTTP client internals stay at warn: their debug output can include headers.
    let filter = EnvFilter::try_new(format!("{},hyper=warn,reqwest=warn,h2=warn", settings.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match settings.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The master key, and the file it was just generated into (if it was).
fn master_key(settings: &Settings) -> anyhow::Result<(MasterKey, Option<std::path::PathBuf>)> {
    let text = match &settings.master_key {
        MasterKeySource::Given(text) => {
            return MasterKey::from_base64(text.expose_secret())
                .map(|key| (key, None))
                .context("BYOK_MASTER_KEY: not a usable key; give 32 random bytes in base64 (`openssl rand -base64 32`)");
        }
        MasterKeySource::DefaultFile(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                if let Some(dir) = path.parent() {
                    private_dir(dir)?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("BYOK_DATA_DIR: cannot write {}", path.display()))?;
                writeln!(file, "{}", key.to_base64().expose_secret())?;
                file.sync_all()?;
                tracing::warn!(
                    path = %path.display(),
                    "no BYOK_MASTER_KEY or BYOK_MASTER_KEY_FILE given: generated a new master key into this file; \
                     back it up, since the stored keys cannot be opened without it"
                );
                return Ok((key, Some(path.clone())));
            }
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("cannot read the master key file {}", path.display())
                });
            }
        },
    };
    MasterKey::from_base64(&text)
        .map(|key| (key, None))
        .context("master key file: not a usable key; it must hold 32 bytes in base64")
}

/// Creates `dir` if needed, readable by its owner only (0700): it holds the
/// sealed keys, token hashes, audit trail and usage.
fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("BYOK_DATA_DIR: cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("BYOK_DATA_DIR: cannot make {} private", dir.display()))
}

/// The SQLite files (database, WAL, shared memory), owner-only (0600);
/// the database is created that way before SQLite opens it.
fn private_database(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("BYOK_DATABASE_URL: cannot create {}", path.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if file.exists() {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot make {} private", file.display()))?;
        }
    }
    Ok(())
}

/// An exclusive lock on the SQLite data directory for the life of the
/// process: a second server on the same files refuses to start.
#[derive(Debug)]
pub(crate) struct DataLock(
    #[expect(dead_code, reason = "held for its lock")] Option<std::fs::File>,
);

fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<DataLock> {
    let path = dir.join("byok.lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DataLock(Some(file))),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "BYOK_DATA_DIR: another byok server is using {}; stop it first (SQLite serves one process — use PostgreSQL for several replicas)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Builds the vault, opens (and migrates) the store, and checks that the
/// master keys open the stored keys.
pub(crate) async fn service(settings: &Settings) -> anyhow::Result<(KeyService, DataLock)> {
    let url = settings.database_url.expose_secret();
    // SQLite: one process, owner-only files, locked before anything is read.
    let mut lock = DataLock(None);
    if byok_store::Backend::from_url(url)? == byok_store::Backend::Sqlite {
        let path = std::path::Path::new(url.strip_prefix("sqlite://").unwrap_or(url));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
            lock = lock_data_dir(dir)?;
        }
        private_database(path)?;
    }
    let (master, generated) = master_key(settings)?;
    let mut vault = KeyVault::new(MasterKeyId::new(settings.master_key_id), master);
    if let Some(retired) = &settings.retired_master_keys {
        for (id, key) in parse_retired(retired.expose_secret())? {
            vault = vault.with_retired(MasterKeyId::new(id), key).context(
                "BYOK_RETIRED_MASTER_KEYS: each id may appear once, and not as BYOK_MASTER_KEY_ID",
            )?;
        }
    }
    let mut config = StoreConfig::new(url);
    config.max_connections = settings.database_max_connections;
    let store = Store::connect(config)
        .await
        .context("BYOK_DATABASE_URL: cannot open the database")?;
    let clients = byok_providers::HttpClients::new(settings.providers.clone())
        .context("cannot initialise the HTTP client (TLS)")?;
    if settings.providers.allow_private_endpoints {
        tracing::warn!(
            "BYOK_ALLOW_PRIVATE_ENDPOINTS is on: Azure endpoints may point at any host, including internal ones"
        );
    }
    let mut service = KeyService::new(store, Arc::new(vault))
        .with_providers(&clients)
        .with_max_keys_per_provider(settings.max_keys_per_provider)
        .with_budget_policy(settings.budget_policy);
    if let Some(token) = &settings.admin_token {
        service = service.with_admin_token(token);
    }
    if let Some(file) = generated {
        // Never a new master key for a database that already has one.
        let checks = service
            .store()
            .run(byok_store::keys::master_key_checks)
            .await?;
        let sealed = service
            .store()
            .run(byok_store::keys::master_key_ids)
            .await?;
        if !checks.is_empty() || !sealed.is_empty() {
            let _ = std::fs::remove_file(&file);
            anyhow::bail!(
                "no master key is configured, but this database already uses one (key id {}): set BYOK_MASTER_KEY or BYOK_MASTER_KEY_FILE, or restore {}; no new key was generated",
                checks
                    .first()
                    .map(|c| c.0)
                    .or(sealed.first().copied())
                    .unwrap_or(0),
                file.display()
            );
        }
    }
    service.check_master_keys().await?;
    Ok((service, lock))
}

/// Serves until SIGTERM (graceful: in-flight requests finish) or SIGINT.
pub(crate) async fn serve(service: KeyService, settings: &Settings) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(settings.bind)
        .with_context(|| format!("BYOK_BIND: cannot listen on {}", settings.bind))?;
    // Only once the port is ours: a token printed before a failed bind is lost.
    if let Some(issued) = service.operator().ensure_admin_token().await? {
        let _ = writeln!(
            std::io::stdout(),
            "\n================ byok first start ================\n\
             An admin token was created. It is shown only now:\n\n    {}\n\n\
             Use it as `Authorization: Bearer <token>` on /api/admin/... routes,\n\
             e.g. to create users. Set BYOK_ADMIN_TOKEN to manage your own instead.\n\
             ===================================================\n",
            issued.token.expose_secret()
        );
    }
    tracing::info!(address = %listener.local_addr()?, backend = service.store().backend().as_str(), "byok listening");
    tracing::info!(version = settings.catalog.version(), "price catalog loaded");
    // The one wiring path (the tests use it too); usage records are written
    // in the background, and drained at shutdown.
    let mut application = byok_api::Application::new(service);
    if let Some(webhook) = settings.alert_webhook.clone() {
        application = application.alert_webhook(webhook);
    }
    let started = application
        .catalog(settings.catalog.clone())
        .limits(settings.gateway_limits)
        .durability(settings.usage_durability)
        .usage_batch_window(Duration::from_millis(settings.usage_batch_window_ms))
        .usage_queue(10_000, 200)
        .request_limits(
            Duration::from_secs(settings.body_read_timeout_secs.max(1)),
            settings.max_requests_per_address.max(1),
        )
        .shutdown_timeout(Duration::from_secs(settings.shutdown_timeout_secs))
        .rate_limits(settings.rate_limits)
        .browser_access(byok_api::cors::BrowserAccess::new(
            settings.cors_origins.clone(),
            settings.frame_ancestors.clone(),
        ))
        .start(listener)?;
    let writer_task = actix_web::rt::spawn(started.usage_task);
    started.server.await?;
    started.usage.shutdown();
    writer_task
        .await
        .context("the usage writer stopped abnormally")?;
    tracing::info!("byok stopped");
    Ok(())
}
