//! byok Desktop's core, without a window: where the data and the master key
//! live, the single local user and its token, and the local gateway — the
//! same service, vault, store, router and routes the server runs, in this
//! process, on a loopback listener. The Tauri shell (`main.rs`) only opens a
//! window on it.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use byok_api::KeyService;
use byok_core::UserId;
use byok_store::{Store, StoreConfig};
use byok_vault::{KeyVault, MasterKey, MasterKeyId};
use secrecy::{ExposeSecret as _, SecretString};

/// The one user of a desktop install.
pub const LOCAL_USER: &str = "me";

/// Where secrets (the master key, the local token) are kept: the OS
/// keychain, or anything that stands in for it in tests.
pub trait Secrets: Send + Sync {
    /// The secret named `name`, if there is one.
    ///
    /// # Errors
    /// The keychain cannot be reached.
    fn get(&self, name: &str) -> anyhow::Result<Option<SecretString>>;

    /// Stores `value` as `name`.
    ///
    /// # Errors
    /// The keychain cannot be reached or refuses it.
    fn set(&self, name: &str, value: &SecretString) -> anyhow::Result<()>;
}

/// The OS keychain (Secret Service on Linux, Keychain on macOS, Credential
/// Manager on Windows), through the `keyring` crate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keychain;

const SERVICE: &str = "byok-desktop";

impl Secrets for Keychain {
    fn get(&self, name: &str) -> anyhow::Result<Option<SecretString>> {
        match keyring::Entry::new(SERVICE, name)?.get_password() {
            Ok(value) => Ok(Some(SecretString::from(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn set(&self, name: &str, value: &SecretString) -> anyhow::Result<()> {
        keyring::Entry::new(SERVICE, name)?.set_password(value.expose_secret())?;
        Ok(())
    }
}

/// Where a secret ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHome {
    /// In the OS keychain.
    Keychain,
    /// In this owner-only (0600) file, because no keychain could be reached.
    File(PathBuf),
}

/// A secret from its fallback file in `dir` (an earlier fallback wins: the
/// data was sealed with it, even if a keychain has appeared since), or from
/// the keychain.
fn find_secret(
    secrets: &dyn Secrets,
    dir: &Path,
    name: &str,
) -> anyhow::Result<Option<(SecretString, SecretHome)>> {
    let file = dir.join(name);
    if let Some(value) = read_secret_file(&file)? {
        return Ok(Some((value, SecretHome::File(file))));
    }
    match secrets.get(name) {
        Ok(found) => Ok(found.map(|value| (value, SecretHome::Keychain))),
        Err(error) => {
            tracing::warn!(%error, "no OS keychain to read the {name} from");
            Ok(None)
        }
    }
}

/// Keeps a secret in the keychain, or, when none can be reached, in an
/// owner-only (0600) file in `dir`, with a warning.
fn keep_secret(
    secrets: &dyn Secrets,
    dir: &Path,
    name: &str,
    value: &SecretString,
) -> anyhow::Result<SecretHome> {
    match secrets.set(name, value) {
        Ok(()) => Ok(SecretHome::Keychain),
        Err(error) => {
            let file = dir.join(name);
            tracing::warn!(%error, path = %file.display(), "no OS keychain: the {name} is kept in an owner-only file");
            write_secret_file(&file, value)?;
            Ok(SecretHome::File(file))
        }
    }
}

/// The master key: found, or — only when `may_create`, that is when no key
/// is sealed yet — generated and kept. A keychain that cannot be read (locked,
/// unlock refused) never leads to a new key over sealed ones.
///
/// # Errors
/// No master key to be found while keys are sealed; the fallback file cannot
/// be read or written, or holds no usable key.
pub fn master_key(
    secrets: &dyn Secrets,
    dir: &Path,
    may_create: bool,
) -> anyhow::Result<(MasterKey, SecretHome)> {
    let (text, home) = if let Some(found) = find_secret(secrets, dir, "master-key")? {
        found
    } else if may_create {
        let text = MasterKey::generate().to_base64();
        let home = keep_secret(secrets, dir, "master-key", &text)?;
        (text, home)
    } else {
        anyhow::bail!(
            "the master key is neither in the OS keychain nor in {}: unlock the keychain (or restore that file) and start byok again; no new key was made, since your saved keys are sealed with it",
            dir.join("master-key").display()
        );
    };
    let key = MasterKey::from_base64(text.expose_secret())
        .context("the stored master key is not a usable key")?;
    Ok((key, home))
}

fn read_secret_file(path: &Path) -> anyhow::Result<Option<SecretString>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(SecretString::from(text.trim().to_owned()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_secret_file(path: &Path, value: &SecretString) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{}", value.expose_secret())?;
    file.sync_all()?;
    Ok(())
}

/// Creates `dir` if needed, owner-only (0700).
fn private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))
}

/// What the desktop app runs with.
#[derive(Debug, Clone)]
pub struct DesktopConfig {
    /// The per-user app-data directory (the database, and fallback files).
    pub data_dir: PathBuf,
    /// The local gateway's port on 127.0.0.1 (`0`: any free port).
    pub port: u16,
    /// Where the providers are (tests point them at mocks).
    pub providers: byok_providers::ProviderSettings,
}

/// The running local gateway.
pub struct Running {
    /// The service it serves (for the desktop's own notices).
    pub service: KeyService,
    /// Pauses and resumes the gateway's doors (`/v1`); the page stays up.
    pub switch: byok_api::gateway::GatewaySwitch,
    /// `http://127.0.0.1:PORT`.
    pub origin: String,
    /// The local user's token (for the window and for tools).
    pub token: SecretString,
    /// Where the master key is kept.
    pub master_key_home: SecretHome,
    /// The HTTP server: await it (on an actix runtime); its handle stops it.
    pub server: actix_web::dev::Server,
    /// The usage writer: run it next to the server.
    pub usage_task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// Stops the usage writer once the server has stopped.
    pub usage: byok_api::usage::UsageWriterHandle,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("origin", &self.origin)
            .field("master_key_home", &self.master_key_home)
            .finish_non_exhaustive()
    }
}

/// Opens (or creates) the desktop's data: its database and vault, as the
/// service the gateway and the export and import run on.
///
/// # Errors
/// The data directory, the keychain fallback or the database.
pub async fn open(
    config: &DesktopConfig,
    secrets: &dyn Secrets,
) -> anyhow::Result<(KeyService, SecretHome)> {
    private_dir(&config.data_dir)?;
    let database = config.data_dir.join("byok.db");
    let store = Store::connect(StoreConfig::new(format!("sqlite://{}", database.display())))
        .await
        .context("cannot open the desktop database")?;
    // A new master key only for a database with nothing sealed yet.
    let sealed = store.run(byok_store::keys::master_key_ids).await?;
    let checks = store.run(byok_store::keys::master_key_checks).await?;
    let (master, master_key_home) = master_key(
        secrets,
        &config.data_dir,
        sealed.is_empty() && checks.is_empty(),
    )?;
    let clients = byok_providers::HttpClients::new(config.providers.clone())
        .context("cannot initialise the HTTP client (TLS)")?;
    let service = KeyService::new(store, Arc::new(KeyVault::new(MasterKeyId::new(1), master)))
        .with_providers(&clients);
    service.check_master_keys().await?;
    Ok((service, master_key_home))
}

/// Opens the desktop's data and starts the local gateway on a loopback
/// listener. Call on an actix runtime.
///
/// # Errors
/// As [`open`], and the listener.
pub async fn start(config: &DesktopConfig, secrets: &dyn Secrets) -> anyhow::Result<Running> {
    let (service, master_key_home) = open(config, secrets).await?;
    let token = local_token(&service, secrets, &config.data_dir).await?;
    let listener = std::net::TcpListener::bind(("127.0.0.1", config.port)).with_context(|| {
        format!(
            "cannot listen on 127.0.0.1:{} (another program uses it? set BYOK_DESKTOP_PORT to another port)",
            config.port
        )
    })?;
    let origin = format!("http://{}", listener.local_addr()?);
    // The app stops the gateway itself when it quits (its usage is written).
    let started = byok_api::Application::new(service.clone())
        .without_signal_handlers()
        .shutdown_timeout(std::time::Duration::from_secs(5))
        .start(listener)?;
    let switch = started
        .state
        .gateway
        .as_ref()
        .map(byok_api::gateway::Gateway::switch)
        .unwrap_or_default();
    Ok(Running {
        service,
        switch,
        origin,
        token,
        master_key_home,
        server: started.server,
        usage_task: Box::pin(started.usage_task),
        usage: started.usage,
    })
}

/// The local user's token: created with the user on first start and kept
/// like the master key; a new one is issued if it was lost.
async fn local_token(
    service: &KeyService,
    secrets: &dyn Secrets,
    dir: &Path,
) -> anyhow::Result<SecretString> {
    let user = UserId::parse(LOCAL_USER).context("the local user id")?;
    let issued = match service.operator().create_user(&user).await {
        Ok(issued) => issued.token,
        Err(byok_api::ServiceError::UserExists) => {
            // A kept token that still works (it may have been revoked on
            // the Tokens tab, or expired): else a new one.
            if let Some((token, _)) = find_secret(secrets, dir, "local-token")?
                && service.lookup(Some(token.expose_secret())).await?.is_some()
            {
                return Ok(token);
            }
            service.operator().issue_token(Some(&user)).await?.token
        }
        Err(error) => return Err(error.into()),
    };
    keep_secret(secrets, dir, "local-token", &issued)?;
    Ok(issued)
}

/// The script the window runs before the page: it hands the local token to
/// the settings page in this tab's session storage, and tells the page it
/// is in the desktop app — only on the local gateway's own origin, never in
/// a URL.
#[must_use]
pub fn sign_in_script(origin: &str, token: &SecretString) -> String {
    format!(
        "if (location.origin === {origin}) {{ window.byokDesktop = {{ origin: {origin} }}; sessionStorage.setItem('byok.token', {token}); }}",
        origin = serde_json::Value::String(origin.to_owned()),
        token = serde_json::Value::String(token.expose_secret().to_owned()),
    )
}

/// The local user's keys as an export file's text, sealed under
/// `passphrase` (for a server's `import-keys`, or another desktop).
///
/// # Errors
/// As [`open`]; a key that does not open; a short passphrase.
pub async fn export_keys(
    config: &DesktopConfig,
    secrets: &dyn Secrets,
    passphrase: &SecretString,
) -> anyhow::Result<(String, usize)> {
    let (service, _) = open(config, secrets).await?;
    let user = local_user(&service).await?;
    let keys = service.operator().export_keys(&user).await?;
    let count = keys.len();
    Ok((byok_vault::seal_export(&keys, passphrase)?, count))
}

/// Adds the keys of an export file (from a server's `export-keys`, or
/// another desktop) to the local user's.
///
/// # Errors
/// As [`open`]; a wrong passphrase or a changed file; a key byok refuses.
pub async fn import_keys(
    config: &DesktopConfig,
    secrets: &dyn Secrets,
    text: &str,
    passphrase: &SecretString,
) -> anyhow::Result<usize> {
    let keys = byok_vault::open_export(text, passphrase).map_err(|error| match error {
        byok_vault::VaultError::Open => anyhow::anyhow!(
            "the export does not open with this passphrase (a wrong passphrase, or a changed file)"
        ),
        other => other.into(),
    })?;
    let (service, _) = open(config, secrets).await?;
    let user = local_user(&service).await?;
    Ok(service.operator().import_keys(&user, keys).await?)
}

/// The local user, created if this is the first start.
async fn local_user(service: &KeyService) -> anyhow::Result<UserId> {
    let user = UserId::parse(LOCAL_USER).context("the local user id")?;
    match service.operator().create_user(&user).await {
        Ok(_) | Err(byok_api::ServiceError::UserExists) => Ok(user),
        Err(error) => Err(error.into()),
    }
}

/// Something the person at the desktop should know, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// A short title.
    pub title: String,
    /// One or two sentences.
    pub body: String,
}

/// The alerts raised since the last call — a key its provider refused, a
/// budget crossed, a model about to retire — in words, marked delivered.
///
/// # Errors
/// The database.
pub async fn take_notices(service: &KeyService) -> anyhow::Result<Vec<Notice>> {
    let now = service.now();
    let due = service
        .store()
        .run(move |c| byok_store::alerts::due(c, now, 20))
        .await?;
    let mut notices = Vec::with_capacity(due.len());
    for alert in due {
        let body: serde_json::Value = serde_json::from_str(&alert.body).unwrap_or_default();
        notices.push(notice(&alert.event, &body));
        let (id, at) = (alert.id, service.now());
        service
            .store()
            .run(move |c| byok_store::alerts::delivered(c, id, at))
            .await?;
    }
    Ok(notices)
}

fn provider_name(body: &serde_json::Value) -> String {
    body["provider"]
        .as_str()
        .and_then(|p| p.parse::<byok_core::ProviderKind>().ok())
        .map_or_else(
            || "your providers".to_owned(),
            |p| p.display_name().to_owned(),
        )
}

fn notice(event: &str, body: &serde_json::Value) -> Notice {
    let text = |name: &str| body[name].as_str().unwrap_or("").to_owned();
    match event {
        "key.refused" => Notice {
            title: format!("{} refused a key", provider_name(body)),
            body: if text("status") == "no_credit" {
                "Its account is out of credit; byok uses your other keys meanwhile.".to_owned()
            } else {
                "The key was rejected; replace it in byok. Your other keys are used meanwhile."
                    .to_owned()
            },
        },
        "budget.crossed" => Notice {
            title: format!("{}% of a spending limit used", body["percent"]),
            body: format!(
                "${} of ${} this {}{}.",
                text("spent_usd"),
                text("limit_usd"),
                text("period"),
                if body["provider"].is_string() {
                    format!(" for {}", provider_name(body))
                } else {
                    String::new()
                }
            ),
        },
        "model.retiring" => Notice {
            title: "A model you use is retiring".to_owned(),
            body: format!(
                "{} stops serving {} soon; byok will route around it.",
                provider_name(body),
                text("model")
            ),
        },
        other => Notice {
            title: "byok".to_owned(),
            body: other.to_owned(),
        },
    }
}
