//! The key-management service: authentication, authorisation, key storage
//! through the vault, tokens, users, audit and rotation. No HTTP types: the
//! actix handlers translate to and from it, and another program (a desktop
//! app, a CLI) can drive it directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use byok_core::{ApiKey, KeyStatus, MaskedKey, ProviderKind, UserId};
use byok_store::audit::{self, Actor, AuditAction, AuditEvent, AuditOutcome, NewAuditEvent};
use byok_store::keys::{self, NewProviderKey, PutOutcome, StoredKey};
use byok_store::tokens::{self, NewToken, TokenRole};
use byok_store::{Store, StoreError, now, users, write_transaction};
use byok_vault::{Binding, KeyVault, MasterKeyId, SealedKey};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use crate::providers::{KeyOptions, validate_options};
use crate::throttle::FixedWindow;
use crate::token::{self, AdminTokenHash, IssuedToken};
use crate::{Result, ServiceError};
use byok_providers::{Credentials, HttpClients, ProviderSet};

/// Who is calling, established from their token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user acting with one of their tokens.
    User {
        /// The user.
        user: UserId,
        /// The public id of the token used.
        token_id: String,
    },
    /// An administrator.
    Admin {
        /// The public id of the token used (`env` for `BYOK_ADMIN_TOKEN`).
        token_id: String,
    },
}

impl Principal {
    fn actor(&self) -> Actor {
        match self {
            Self::User { user, .. } => Actor::User(user.clone()),
            Self::Admin { token_id } => Actor::Admin {
                token_id: token_id.clone(),
            },
        }
    }
}

/// Per-request facts the audit trail records.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The request's id, for correlating the audit trail with logs.
    pub request_id: Option<String>,
}

impl RequestContext {
    fn event(&self, actor: Actor, action: AuditAction, outcome: AuditOutcome) -> NewAuditEvent {
        let mut event = NewAuditEvent::new(actor, action, outcome);
        event.request_id.clone_from(&self.request_id);
        event
    }
}

/// A stored key as callers see it: masked, with its non-secret settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyView {
    /// The provider.
    #[schema(value_type = String, example = "openai")]
    pub provider: ProviderKind,
    /// The masked key: first 4 and last 4 characters around `********`.
    #[schema(value_type = String, example = "sk-p********x7Qa")]
    pub masked_key: MaskedKey,
    /// When the first key for this provider was saved.
    pub created_at: DateTime<Utc>,
    /// When the key was last replaced.
    pub updated_at: DateTime<Utc>,
    /// The last test's result, if the key was tested since it was saved.
    #[schema(value_type = Option<String>, example = "valid")]
    pub last_test_status: Option<KeyStatus>,
    /// When the last test ran.
    pub last_tested_at: Option<DateTime<Utc>>,
    /// How fast the provider answered the last test.
    pub last_test_latency_ms: Option<u64>,
    /// Non-secret settings (Azure's endpoint and deployments).
    pub settings: std::collections::BTreeMap<String, String>,
}

impl From<StoredKey> for KeyView {
    fn from(key: StoredKey) -> Self {
        let (status, at, latency) = match key.last_test {
            Some(test) => (Some(test.status), Some(test.at), test.latency_ms),
            None => (None, None, None),
        };
        Self {
            provider: key.provider,
            masked_key: key.masked_key,
            created_at: key.created_at,
            updated_at: key.updated_at,
            last_test_status: status,
            last_tested_at: at,
            last_test_latency_ms: latency,
            settings: key.settings,
        }
    }
}

/// A key to save, as a client sent it.
pub struct KeyInput {
    /// The pasted key; validated and trimmed by the service.
    pub api_key: SecretString,
    /// Provider settings (Azure's).
    pub options: KeyOptions,
}

impl std::fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInput")
            .field("api_key", &"[REDACTED]")
            .field("options", &self.options)
            .finish()
    }
}

/// The result of a key test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyTestReport {
    /// The provider.
    #[schema(value_type = String, example = "openai")]
    pub provider: ProviderKind,
    /// Whether the provider accepted the key.
    pub valid: bool,
    /// `valid`, `invalid`, `no_credit`, `rate_limited`, `unavailable` or `unreachable`.
    #[schema(value_type = String, example = "valid")]
    pub status: KeyStatus,
    /// How long the provider took to answer.
    pub latency_ms: u64,
    /// When the test ran.
    pub checked_at: DateTime<Utc>,
    /// What happened, in words (never the provider's own text).
    pub message: String,
    /// Things to act on even when the key works (a key kind the provider is
    /// retiring).
    pub warnings: Vec<String>,
}

/// What a rewrap did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RewrapReport {
    /// Keys moved onto the active master key.
    pub rewrapped: u64,
    /// Keys replaced by their owner while the rewrap ran (already current).
    pub skipped: u64,
    /// Keys that do not open with any configured master key.
    pub failed: u64,
}

/// Why the configured master keys do not fit the stored keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyCheckError {
    /// Keys are sealed with a master key id the ring does not have.
    #[error(
        "stored keys are sealed with master key id {0}, which is not configured; add it to BYOK_RETIRED_MASTER_KEYS"
    )]
    Missing(u32),
    /// The configured key with this id does not open keys it supposedly sealed.
    #[error(
        "master key id {0} does not open the keys stored under that id; was the master key changed?"
    )]
    Wrong(u32),
    /// The configured key with this id is not the one this database has
    /// used under that id (another replica's, or a regenerated one).
    #[error(
        "the configured master key with id {0} is not the key this database uses under that id; give every replica the same BYOK_MASTER_KEY (or restore the original key file)"
    )]
    Mismatch(u32),
    /// The database could not be read.
    #[error("could not read stored keys")]
    Store(#[from] StoreError),
}

/// The key-management service.
#[derive(Clone)]
pub struct KeyService {
    store: Store,
    vault: Arc<KeyVault>,
    admin_token: Option<AdminTokenHash>,
    providers: Option<ProviderSet>,
    clients: Option<HttpClients>,
    allow_private_endpoints: bool,
    test_limit: Arc<FixedWindow<UserId>>,
    health: Arc<byok_router::HealthTracker>,
    open_failures: crate::metrics::KeyOpenFailures,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("store", &self.store)
            .field("providers", &self.providers.is_some())
            .field("clients", &self.clients.is_some())
            .field("vault", &self.vault)
            .field("admin_token", &self.admin_token.is_some())
            .field("allow_private_endpoints", &self.allow_private_endpoints)
            .field("test_limit", &self.test_limit)
            .field("health", &"HealthTracker")
            .field("open_failures", &"Family")
            .finish()
    }
}

impl KeyService {
    /// A service over `store`, sealing with `vault`.
    #[must_use]
    pub fn new(store: Store, vault: Arc<KeyVault>) -> Self {
        Self {
            store,
            vault,
            admin_token: None,
            providers: None,
            clients: None,
            allow_private_endpoints: false,
            test_limit: Arc::new(FixedWindow::new(10, Duration::from_secs(60))),
            health: Arc::new(byok_router::HealthTracker::default()),
            open_failures: crate::metrics::KeyOpenFailures::default(),
        }
    }

    /// Stored keys that did not open, for `/metrics`.
    pub(crate) fn open_failures(&self) -> &crate::metrics::KeyOpenFailures {
        &self.open_failures
    }

    /// Provider health per user, fed by key tests and gateway calls.
    #[must_use]
    pub fn health(&self) -> &byok_router::HealthTracker {
        &self.health
    }

    /// Uses `health` (shared with other services, or with a custom config).
    #[must_use]
    pub fn with_health(mut self, health: Arc<byok_router::HealthTracker>) -> Self {
        self.health = health;
        self
    }

    /// Lets the service call providers (key tests) through `clients`, and
    /// applies their endpoint policy (`allow_private_endpoints`) when keys are
    /// saved.
    #[must_use]
    pub fn with_providers(mut self, clients: &HttpClients) -> Self {
        self.allow_private_endpoints = clients.settings().allow_private_endpoints;
        self.providers = Some(ProviderSet::new(clients));
        self.clients = Some(clients.clone());
        self
    }

    /// At most `max` key tests per user per `window` (default 10 a minute):
    /// each test calls a provider.
    #[must_use]
    pub fn with_test_limit(mut self, max: u32, window: Duration) -> Self {
        self.test_limit = Arc::new(FixedWindow::new(max, window));
        self
    }

    /// Also accepts `token` (the operator's `BYOK_ADMIN_TOKEN`) as an admin token.
    #[must_use]
    pub fn with_admin_token(mut self, token: &SecretString) -> Self {
        self.admin_token = Some(AdminTokenHash::of(token));
        self
    }

    /// The store, for readiness checks.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn vault(&self) -> &KeyVault {
        &self.vault
    }

    pub(crate) fn providers(&self) -> Option<&ProviderSet> {
        self.providers.as_ref()
    }

    /// Establishes who presented `bearer`. A failure is recorded in the audit
    /// trail (without the token) and looks the same whatever went wrong.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`].
    pub async fn authenticate(
        &self,
        bearer: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Principal> {
        if let Some(principal) = self.lookup(bearer).await? {
            return Ok(principal);
        }
        self.audit_refused_authentication(bearer.is_some(), ctx)
            .await?;
        Err(ServiceError::Unauthenticated)
    }

    /// The principal `bearer` stands for, if any; writes nothing.
    ///
    /// # Errors
    /// A database error.
    pub async fn lookup(&self, bearer: Option<&str>) -> Result<Option<Principal>> {
        match bearer {
            Some(presented) => self.lookup_token(presented).await,
            None => Ok(None),
        }
    }

    /// Appends a refused authentication to the audit trail.
    ///
    /// # Errors
    /// A database error.
    pub async fn audit_refused_authentication(
        &self,
        token_presented: bool,
        ctx: &RequestContext,
    ) -> Result<()> {
        let detail = if token_presented {
            "invalid_token"
        } else {
            "missing_token"
        };
        let event = ctx
            .event(
                Actor::Anonymous,
                AuditAction::AuthFailure,
                AuditOutcome::Denied,
            )
            .detail(detail);
        self.append(event).await
    }

    /// Records how many authentications one client address had refused in
    /// a throttle window that has ended (detail `refused_in_window:N`; the
    /// window's length is in the docs, the address is not stored).
    ///
    /// # Errors
    /// When the audit trail cannot be written.
    pub async fn audit_refusal_window(&self, refused: u32, ctx: &RequestContext) -> Result<()> {
        let event = ctx
            .event(
                Actor::Anonymous,
                AuditAction::AuthFailure,
                AuditOutcome::Denied,
            )
            .detail_count("refused_in_window", u64::from(refused));
        self.append(event).await
    }

    async fn lookup_token(&self, presented: &str) -> Result<Option<Principal>> {
        if let Some(admin) = &self.admin_token
            && admin.matches(presented)
        {
            return Ok(Some(Principal::Admin {
                token_id: "env".to_owned(),
            }));
        }
        let Some(parsed) = token::parse(presented) else {
            return Ok(None);
        };
        let id = parsed.id.clone();
        let stored = self.store.run(move |c| tokens::find(c, &id)).await?;
        // Compare even when there is no row, so both paths cost the same.
        let stored_hash = stored
            .as_ref()
            .map_or([0u8; 32].as_slice(), |t| t.secret_hash.as_slice());
        let matches = token::hashes_match(stored_hash, &parsed.secret_hash);
        Ok(match stored {
            Some(t) if matches && t.revoked_at.is_none() => Some(match t.role {
                TokenRole::Admin => Principal::Admin { token_id: t.id },
                TokenRole::User(user) => Principal::User {
                    user,
                    token_id: t.id,
                },
            }),
            _ => None,
        })
    }

    /// Lets `principal` act on `user`'s resources, or answers
    /// [`ServiceError::UserNotFound`] — the same for a user that does not
    /// exist and one that is not the caller — recording a denial.
    pub(crate) async fn authorize(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<()> {
        match principal {
            Principal::User { user: me, .. } if me == user => Ok(()),
            Principal::User { user: me, .. } => {
                // Recorded in the caller's own trail: writing it under the
                // probed id would let anyone fill any id's trail.
                let event = ctx
                    .event(
                        principal.actor(),
                        AuditAction::AuthFailure,
                        AuditOutcome::Denied,
                    )
                    .user(me)
                    .detail("other_user");
                self.append(event).await?;
                Err(ServiceError::UserNotFound)
            }
            Principal::Admin { .. } => {
                let u = user.clone();
                match self.store.run(move |c| users::find(c, &u)).await? {
                    Some(_) => Ok(()),
                    None => Err(ServiceError::UserNotFound),
                }
            }
        }
    }

    fn require_admin(principal: &Principal) -> Result<()> {
        match principal {
            Principal::Admin { .. } => Ok(()),
            Principal::User { .. } => Err(ServiceError::Forbidden),
        }
    }

    async fn append(&self, event: NewAuditEvent) -> Result<()> {
        self.store
            .run(move |c| audit::append(c, &event, now()))
            .await?;
        Ok(())
    }

    /// `user`'s keys, masked.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn list_keys(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyView>> {
        self.authorize(principal, user, ctx).await?;
        let u = user.clone();
        let stored = self.store.run(move |c| keys::list_for_user(c, &u)).await?;
        Ok(stored.into_iter().map(KeyView::from).collect())
    }

    /// Validates, seals and saves `input` as `user`'s key for `provider`,
    /// replacing any earlier one atomically. A rejected key is recorded in
    /// the audit trail with its error code, never its value.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a malformed key or settings,
    /// [`ServiceError::UserNotFound`], [`ServiceError::Busy`].
    pub async fn put_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        input: KeyInput,
        ctx: &RequestContext,
    ) -> Result<(PutOutcome, KeyView)> {
        self.authorize(principal, user, ctx).await?;
        let validated = self.validate_full(provider, input).await;
        let (key, settings) = match validated {
            Ok(valid) => valid,
            Err(error) => {
                let event = ctx
                    .event(
                        principal.actor(),
                        AuditAction::KeyCreateRejected,
                        AuditOutcome::Failure,
                    )
                    .user(user)
                    .provider(provider)
                    .detail(error.code());
                self.append(event).await?;
                return Err(error);
            }
        };
        let sealed = self
            .vault
            .seal(&key, &Binding::new(user, provider))
            .map_err(ServiceError::internal)?;
        let masked = key.masked();
        drop(key);
        let master_key_id = self.vault.active_key_id().get();
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyCreate,
                AuditOutcome::Success,
            )
            .user(user)
            .provider(provider);
        let u = user.clone();
        let result = self
            .store
            .run(move |c| {
                write_transaction(c, |c| {
                    let new = NewProviderKey {
                        user_id: &u,
                        provider,
                        sealed_key: sealed.as_bytes(),
                        master_key_id,
                        masked_key: &masked,
                        settings: &settings,
                    };
                    let outcome = keys::put(c, &new, event, now())?;
                    let stored = keys::get(c, &u, provider)?.ok_or(StoreError::NotFound)?;
                    Ok((outcome, stored))
                })
            })
            .await;
        match result {
            Ok((outcome, stored)) => {
                // A new key starts with a clean bill of health.
                self.health.reset(user, provider);
                Ok((outcome, stored.into()))
            }
            Err(StoreError::NotFound) => Err(ServiceError::UserNotFound),
            Err(other) => Err(other.into()),
        }
    }

    fn validate_key(
        &self,
        provider: ProviderKind,
        input: KeyInput,
    ) -> Result<(ApiKey, keys::KeySettings)> {
        let raw = input.api_key.expose_secret();
        if MaskedKey::looks_masked(raw.trim_ascii()) {
            return Err(ServiceError::invalid(
                "key_is_masked",
                "api_key is the masked form shown by byok; paste the full key",
            ));
        }
        let key = ApiKey::parse(raw)?;
        let settings = validate_options(provider, input.options, self.allow_private_endpoints)?;
        byok_providers::key_format::check(provider, &key)
            .map_err(ServiceError::InvalidKeyFormat)?;
        Ok((key, settings))
    }

    /// Deletes `user`'s key for `provider`; the sealed blob is gone.
    ///
    /// # Errors
    /// [`ServiceError::KeyNotFound`] when there is none.
    pub async fn delete_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.authorize(principal, user, ctx).await?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyDelete,
                AuditOutcome::Success,
            )
            .user(user)
            .provider(provider);
        let u = user.clone();
        let deleted = self
            .store
            .run(move |c| keys::delete(c, &u, provider, &event, now()))
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::KeyNotFound)
        }
    }

    /// `user`'s audit events, newest first; `before` continues from a page's
    /// last id.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn audit(
        &self,
        principal: &Principal,
        user: &UserId,
        before: Option<i64>,
        limit: u32,
        ctx: &RequestContext,
    ) -> Result<Vec<AuditEvent>> {
        self.authorize(principal, user, ctx).await?;
        let u = user.clone();
        Ok(self
            .store
            .run(move |c| {
                let since = users::find(c, &u)?.map(|found| found.created_at);
                audit::list_for_user_since(c, &u, since, before, limit)
            })
            .await?)
    }

    /// Opens `user`'s stored key for `provider`: for the provider adapters
    /// (the only place a key leaves its wrapper is their request header).
    ///
    /// # Errors
    /// [`ServiceError::KeyNotFound`], or [`ServiceError::KeyUnusable`] when
    /// the blob does not open (recorded in the audit trail).
    pub async fn open_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        ctx: &RequestContext,
    ) -> Result<ApiKey> {
        self.authorize(principal, user, ctx).await?;
        self.open_stored(principal, user, provider, ctx)
            .await
            .map(|(key, _)| key)
    }

    /// The stored row and its opened key, read once (no check of the caller).
    async fn open_stored(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        ctx: &RequestContext,
    ) -> Result<(ApiKey, StoredKey)> {
        let u = user.clone();
        let stored = self
            .store
            .run(move |c| keys::get(c, &u, provider))
            .await?
            .ok_or(ServiceError::KeyNotFound)?;
        let sealed = SealedKey::from_bytes(stored.sealed_key.clone());
        if let Ok(key) = self.vault.open(&sealed, &Binding::new(user, provider)) {
            return Ok((key, stored));
        }
        let missing = sealed
            .master_key_id()
            .filter(|id| !self.vault.key_ids().any(|k| k == *id));
        self.open_failures
            .get_or_create(&crate::metrics::KeyOpenFailure {
                master_key_id: sealed
                    .master_key_id()
                    .map_or_else(|| "unreadable".to_owned(), |id| id.to_string()),
                missing_here: missing.is_some().to_string(),
            })
            .inc();
        tracing::error!(
            user = %user,
            %provider,
            master_key_id = ?sealed.master_key_id(),
            missing_here = missing.is_some(),
            "stored key does not open with the configured master keys{}",
            if missing.is_some() {
                "; this server lacks its master key id: configure it (BYOK_RETIRED_MASTER_KEYS) as on the other replicas"
            } else {
                ""
            }
        );
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyDecryptFailed,
                AuditOutcome::Failure,
            )
            .user(user)
            .provider(provider);
        self.append(event).await?;
        Err(if missing.is_some() {
            ServiceError::KeyUnavailable
        } else {
            ServiceError::KeyUnusable
        })
    }

    /// [`KeyService::validate_key`], then, for Azure, the endpoint's DNS
    /// answer: every address must be public (unless private endpoints are
    /// allowed).
    async fn validate_full(
        &self,
        provider: ProviderKind,
        input: KeyInput,
    ) -> Result<(ApiKey, keys::KeySettings)> {
        let (key, settings) = self.validate_key(provider, input)?;
        if let (ProviderKind::AzureOpenAi, Some(clients), Some(endpoint)) =
            (provider, &self.clients, settings.get("endpoint"))
        {
            clients.check_azure_endpoint(endpoint).await.map_err(|_| {
                ServiceError::invalid(
                    "invalid_endpoint",
                    "the endpoint's host does not resolve, or resolves to an internal address",
                )
            })?;
        }
        Ok((key, settings))
    }

    /// Tests `user`'s stored key for `provider` — or, with `candidate`, that
    /// key without saving it — with the provider's cheapest authenticated
    /// call. The result of testing the stored key is recorded on it; every
    /// test is audited. Tests are limited per user, since each calls a
    /// provider.
    ///
    /// # Errors
    /// [`ServiceError::TooManyTests`], [`ServiceError::KeyNotFound`],
    /// [`ServiceError::Invalid`] for a malformed candidate. A provider's
    /// refusal is not an error: it is the report's status.
    pub async fn test_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        candidate: Option<KeyInput>,
        ctx: &RequestContext,
    ) -> Result<KeyTestReport> {
        self.authorize(principal, user, ctx).await?;
        if let Err(wait) = self.test_limit.try_acquire(user.clone(), Instant::now()) {
            return Err(ServiceError::TooManyTests {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        let adapter = self
            .providers
            .as_ref()
            .and_then(|p| p.get(provider))
            .cloned()
            .ok_or_else(|| {
                ServiceError::internal(std::io::Error::other("no provider adapters configured"))
            })?;
        let stored = candidate.is_none();
        let mut warnings = Vec::new();
        let (key, settings, tested) = if let Some(input) = candidate {
            let (key, settings) = self.validate_full(provider, input).await?;
            (key, settings, None)
        } else {
            let (key, stored) = self.open_stored(principal, user, provider, ctx).await?;
            (key, stored.settings, Some(stored.sealed_key))
        };
        if let Some(warning) = byok_providers::key_format::retiring_kind(provider, &key) {
            warnings.push(warning.to_owned());
        }
        let started = Instant::now();
        let outcome = adapter
            .verify_key(Credentials {
                key: &key,
                settings: &settings,
            })
            .await;
        drop(key);
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let checked_at = now();
        let (status, message) = match &outcome {
            Ok(()) => (
                KeyStatus::Valid,
                format!("{} accepted the key", provider.display_name()),
            ),
            Err(error) => (error.key_status(), error.to_string()),
        };
        let answered = !matches!(status, KeyStatus::Unreachable);
        if stored {
            let outcome = match &outcome {
                Ok(()) => byok_router::Outcome::Success {
                    latency: started.elapsed(),
                },
                Err(error) if error.is_auth_failure() => byok_router::Outcome::KeyRejected,
                Err(error) => byok_router::Outcome::Failure {
                    retry_after: error.retry_after(),
                },
            };
            self.health.record(user, provider, outcome, Instant::now());
        }
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyTest,
                if outcome.is_ok() {
                    AuditOutcome::Success
                } else {
                    AuditOutcome::Failure
                },
            )
            .user(user)
            .provider(provider)
            .detail(if stored { status.as_str() } else { "candidate" });
        let u = user.clone();
        let test = keys::KeyTest {
            status,
            at: checked_at,
            latency_ms: answered.then_some(latency_ms),
        };
        self.store
            .run(move |c| {
                if let Some(tested) = &tested {
                    keys::record_test_if_unchanged(c, &u, provider, tested, &test, &event)?;
                } else {
                    audit::append(c, &event, test.at)?;
                }
                Ok(())
            })
            .await?;
        Ok(KeyTestReport {
            provider,
            valid: outcome.is_ok(),
            status,
            latency_ms,
            checked_at,
            message,
            warnings,
        })
    }

    /// Creates `user` and their first token, in one transaction.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::UserExists`].
    pub async fn create_user(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<IssuedToken> {
        Self::require_admin(principal)?;
        self.create_user_as(principal.actor(), user, ctx).await
    }

    async fn create_user_as(
        &self,
        actor: Actor,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<IssuedToken> {
        let (issued, hash) = token::issue().map_err(ServiceError::internal)?;
        let create = ctx
            .event(
                actor.clone(),
                AuditAction::UserCreate,
                AuditOutcome::Success,
            )
            .user(user);
        let issue = ctx
            .event(actor, AuditAction::TokenIssue, AuditOutcome::Success)
            .user(user)
            .detail("first_token");
        let (u, id) = (user.clone(), issued.id.clone());
        let result = self
            .store
            .run(move |c| {
                write_transaction(c, |c| {
                    let at = now();
                    users::create(c, &u, &create, at)?;
                    let new = NewToken {
                        id: &id,
                        role: TokenRole::User(u.clone()),
                        secret_hash: &hash,
                    };
                    tokens::insert(c, &new, &issue, at)
                })
            })
            .await;
        match result {
            Ok(()) => Ok(issued),
            Err(StoreError::Conflict) => Err(ServiceError::UserExists),
            Err(other) => Err(other.into()),
        }
    }

    /// Deletes `user`, their keys and tokens; the audit trail stays.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::UserNotFound`].
    pub async fn delete_user(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<()> {
        Self::require_admin(principal)?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::UserDelete,
                AuditOutcome::Success,
            )
            .user(user);
        let u = user.clone();
        let deleted = self
            .store
            .run(move |c| users::delete(c, &u, &event, now()))
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(ServiceError::UserNotFound)
        }
    }

    /// Issues another token for `user`, or an admin token when `user` is `None`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::UserNotFound`].
    pub async fn issue_token(
        &self,
        principal: &Principal,
        user: Option<&UserId>,
        ctx: &RequestContext,
    ) -> Result<IssuedToken> {
        Self::require_admin(principal)?;
        self.issue_token_as(principal.actor(), user, ctx).await
    }

    async fn issue_token_as(
        &self,
        actor: Actor,
        user: Option<&UserId>,
        ctx: &RequestContext,
    ) -> Result<IssuedToken> {
        let (issued, hash) = token::issue().map_err(ServiceError::internal)?;
        let mut event = ctx.event(actor, AuditAction::TokenIssue, AuditOutcome::Success);
        event.user_id = user.cloned();
        if user.is_none() {
            event = event.detail("admin_token");
        }
        let role = user.map_or(TokenRole::Admin, |u| TokenRole::User(u.clone()));
        let id = issued.id.clone();
        let result = self
            .store
            .run(move |c| {
                tokens::insert(
                    c,
                    &NewToken {
                        id: &id,
                        role,
                        secret_hash: &hash,
                    },
                    &event,
                    now(),
                )
            })
            .await;
        match result {
            Ok(()) => Ok(issued),
            Err(StoreError::NotFound) => Err(ServiceError::UserNotFound),
            Err(other) => Err(other.into()),
        }
    }

    /// Revokes the token with public id `token_id`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::TokenNotFound`].
    pub async fn revoke_token(
        &self,
        principal: &Principal,
        token_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        Self::require_admin(principal)?;
        self.revoke_token_as(principal.actor(), token_id, ctx).await
    }

    async fn revoke_token_as(
        &self,
        actor: Actor,
        token_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        let id = token_id.to_owned();
        let stored = self
            .store
            .run(move |c| tokens::find(c, &id))
            .await?
            .ok_or(ServiceError::TokenNotFound)?;
        let mut event = ctx.event(actor, AuditAction::TokenRevoke, AuditOutcome::Success);
        if let TokenRole::User(user) = &stored.role {
            event = event.user(user);
        }
        let id = token_id.to_owned();
        let revoked = self
            .store
            .run(move |c| tokens::revoke(c, &id, &event, now()))
            .await?;
        if revoked || stored.revoked_at.is_some() {
            Ok(())
        } else {
            Err(ServiceError::TokenNotFound)
        }
    }

    /// Operator actions that run with the server's own authority (the CLI).
    #[must_use]
    pub fn operator(&self) -> Operator<'_> {
        Operator { service: self }
    }

    /// Checks that every master key id the stored keys name is in the ring,
    /// and that each opens a sample of its keys: a changed master key stops
    /// the server at start-up instead of failing every request later.
    ///
    /// # Errors
    /// [`MasterKeyCheckError`] naming the id that is missing or wrong.
    pub async fn check_master_keys(&self) -> Result<(), MasterKeyCheckError> {
        let checks = self.store.run(keys::master_key_checks).await?;
        // A configured key must be the key its id has always meant here.
        for (id, recorded) in &checks {
            if let Some(check) = self.vault.check_value(MasterKeyId::new(*id))
                && check != recorded
            {
                return Err(MasterKeyCheckError::Mismatch(*id));
            }
        }
        let in_use = self.store.run(keys::master_key_ids).await?;
        for id in &in_use {
            if !self.vault.key_ids().any(|k| k.get() == *id) {
                return Err(MasterKeyCheckError::Missing(*id));
            }
        }
        // Ids without a recorded check (a database from before checks, or a
        // new key): every key sealed under the id must open before its check
        // is recorded — not one sample.
        for key_id in self.vault.key_ids() {
            let id = key_id.get();
            if checks.iter().any(|(known, _)| *known == id) {
                continue;
            }
            if in_use.contains(&id) {
                self.verify_all_sealed_with(id).await?;
            }
            let check = self
                .vault
                .check_value(key_id)
                .unwrap_or_default()
                .to_owned();
            let recorded = self
                .store
                .run(move |c| keys::record_master_key_check(c, id, &check))
                .await?;
            if Some(recorded.as_str()) != self.vault.check_value(key_id) {
                // Another replica recorded a different key a moment ago.
                return Err(MasterKeyCheckError::Mismatch(id));
            }
        }
        Ok(())
    }

    async fn verify_all_sealed_with(&self, id: u32) -> Result<(), MasterKeyCheckError> {
        let mut after = String::new();
        loop {
            let from = after.clone();
            let page = self
                .store
                .run(move |c| keys::sealed_with_page(c, id, &from, 500))
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after.clone_from(last);
            for (_, stored) in &page {
                let sealed = SealedKey::from_bytes(stored.sealed_key.clone());
                if self
                    .vault
                    .open(&sealed, &Binding::new(&stored.user_id, stored.provider))
                    .is_err()
                {
                    return Err(MasterKeyCheckError::Wrong(id));
                }
            }
        }
    }
}

/// Actions an operator runs from the command line, audited as `system`.
#[derive(Debug)]
pub struct Operator<'a> {
    service: &'a KeyService,
}

impl Operator<'_> {
    /// Creates `user` and their first token.
    ///
    /// # Errors
    /// As [`KeyService::create_user`].
    pub async fn create_user(&self, user: &UserId) -> Result<IssuedToken> {
        self.service
            .create_user_as(Actor::System, user, &RequestContext::default())
            .await
    }

    /// Issues a token for `user`, or an admin token.
    ///
    /// # Errors
    /// As [`KeyService::issue_token`].
    pub async fn issue_token(&self, user: Option<&UserId>) -> Result<IssuedToken> {
        self.service
            .issue_token_as(Actor::System, user, &RequestContext::default())
            .await
    }

    /// Revokes a token.
    ///
    /// # Errors
    /// As [`KeyService::revoke_token`].
    pub async fn revoke_token(&self, token_id: &str) -> Result<()> {
        self.service
            .revoke_token_as(Actor::System, token_id, &RequestContext::default())
            .await
    }

    /// Issues the first admin token when there is no admin token at all (none
    /// stored, none configured). Returns it, to be shown once.
    ///
    /// # Errors
    /// A database error.
    pub async fn ensure_admin_token(&self) -> Result<Option<IssuedToken>> {
        if self.service.admin_token.is_some()
            || self.service.store.run(tokens::active_admin_exists).await?
        {
            return Ok(None);
        }
        self.issue_token(None).await.map(Some)
    }

    /// Moves every stored key onto the active master key, `batch` rows at a
    /// time. Idempotent and resumable; safe while other replicas serve (each
    /// row is swapped with a compare-and-set on its old bytes).
    ///
    /// # Errors
    /// A database error; keys that do not open are counted, not fatal.
    pub async fn rewrap(&self, batch: u32) -> Result<RewrapReport> {
        let service = self.service;
        let active = service.vault.active_key_id().get();
        let mut report = RewrapReport::default();
        let mut after: Option<String> = None;
        loop {
            let cursor = after.clone();
            let rows = service
                .store
                .run(move |c| keys::not_sealed_with(c, active, cursor.as_deref(), batch))
                .await?;
            let Some(last) = rows.last() else { break };
            after = Some(last.id.clone());
            for row in rows {
                let binding = Binding::new(&row.user_id, row.provider);
                let Ok(resealed) = service
                    .vault
                    .reseal(&SealedKey::from_bytes(row.sealed_key.clone()), &binding)
                else {
                    tracing::error!(key_row = %row.id, master_key_id = row.master_key_id, "key does not open; not rewrapped");
                    report.failed += 1;
                    continue;
                };
                let event = NewAuditEvent::new(
                    Actor::System,
                    AuditAction::KeyRewrap,
                    AuditOutcome::Success,
                )
                .user(&row.user_id)
                .provider(row.provider);
                let swapped = service
                    .store
                    .run(move |c| {
                        keys::swap_sealed(
                            c,
                            &row.id,
                            &row.sealed_key,
                            resealed.as_bytes(),
                            active,
                            &event,
                            now(),
                        )
                    })
                    .await?;
                if swapped {
                    report.rewrapped += 1;
                } else {
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }
}
