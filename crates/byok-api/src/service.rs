//! The key-management service: authentication, authorisation, key storage
//! through the vault, tokens, users, audit and rotation. No HTTP types: the
//! actix handlers translate to and from it, and another program (a desktop
//! app, a CLI) can drive it directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use byok_core::{ApiKey, KeyStatus, MaskedKey, ProviderKind, UserId};
use byok_store::audit::{self, Actor, AuditAction, AuditEvent, AuditOutcome, NewAuditEvent};
use byok_store::keys::{self, KeyChanges, NewProviderKey, PutOutcome, StoredKey};
use byok_store::tokens::{self, Door, NewToken, StoredToken, TokenMeta, TokenRole, TokenScope};
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
    /// A user acting with one of their tokens, or a service token acting
    /// for the user.
    User {
        /// The user.
        user: UserId,
        /// The public id of the token used.
        token_id: String,
        /// What the token may do.
        scope: Arc<TokenScope>,
        /// Whether `token_id` is a service token acting for `user`.
        via_service: bool,
    },
    /// An administrator.
    Admin {
        /// The public id of the token used (`env` for `BYOK_ADMIN_TOKEN`).
        token_id: String,
    },
    /// A service token that has not named the user it acts for.
    Service {
        /// The service token's public id.
        token_id: String,
        /// The users it may act for, and what it may do.
        scope: Arc<TokenScope>,
    },
}

impl Principal {
    /// A user's own, unrestricted token (for programs that drive the service
    /// directly).
    #[must_use]
    pub fn user(user: UserId, token_id: impl Into<String>) -> Self {
        Self::User {
            user,
            token_id: token_id.into(),
            scope: Arc::default(),
            via_service: false,
        }
    }

    fn actor(&self) -> Actor {
        match self {
            Self::User {
                token_id,
                via_service: true,
                ..
            }
            | Self::Service { token_id, .. } => Actor::Service {
                token_id: token_id.clone(),
            },
            Self::User { user, .. } => Actor::User(user.clone()),
            Self::Admin { token_id } => Actor::Admin {
                token_id: token_id.clone(),
            },
        }
    }

    /// The token's scope (unrestricted for an admin).
    #[must_use]
    pub fn scope(&self) -> Option<&TokenScope> {
        match self {
            Self::User { scope, .. } | Self::Service { scope, .. } => Some(scope),
            Self::Admin { .. } => None,
        }
    }

    /// The public id of the token used.
    #[must_use]
    pub fn token_id(&self) -> &str {
        match self {
            Self::User { token_id, .. }
            | Self::Admin { token_id }
            | Self::Service { token_id, .. } => token_id,
        }
    }
}

/// Where the service reads the time: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

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
    /// The key's id: address it with `…/keys/{provider}/{id}`.
    #[schema(example = "0b4e1c8e-2f5a-4a0e-9a53-5d1c3a9b7f10")]
    pub id: String,
    /// The user's label for it.
    pub label: String,
    /// Its place in the provider's order (lowest first; the first key is
    /// the provider's default key).
    pub position: i32,
    /// Its share of traffic among keys with the same position.
    pub weight: i32,
    /// Whether routing uses it.
    pub enabled: bool,
    /// The provider.
    #[schema(value_type = String, example = "openai")]
    pub provider: ProviderKind,
    /// The masked key: first 4 and last 4 characters around `********`.
    #[schema(value_type = String, example = "sk-p********x7Qa")]
    pub masked_key: MaskedKey,
    /// When the key was first saved.
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
            id: key.id,
            label: key.label,
            position: key.position,
            weight: key.weight,
            enabled: key.enabled,
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
    /// A label (at most 64 characters); `None` keeps a replaced key's label.
    pub label: Option<String>,
}

impl std::fmt::Debug for KeyInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInput")
            .field("api_key", &"[REDACTED]")
            .field("options", &self.options)
            .field("label", &self.label)
            .finish()
    }
}

/// The result of a key test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyTestReport {
    /// The key tested (absent for a candidate that was not saved).
    pub key_id: Option<String>,
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

/// A token as its owner (or an operator) sees it: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenView {
    /// The public id (the part of the token before its secret).
    pub id: String,
    /// `user` or `service`.
    pub role: &'static str,
    /// The owner's label.
    pub label: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was last used (written at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops working, if it does.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    /// What it may do (absent parts are unrestricted).
    #[schema(value_type = Object)]
    pub scope: TokenScope,
    /// Gateway requests made with it.
    pub requests: u64,
    /// Their exact cost in USD (a decimal string, to the picodollar).
    pub cost_usd: String,
    /// Requests whose cost is unknown (unpriced models).
    pub unpriced_requests: u64,
}

impl TokenView {
    fn new(token: StoredToken, usage: byok_store::usage::TokenUsage, now: DateTime<Utc>) -> Self {
        let status = if token.revoked_at.is_some() {
            "revoked"
        } else if token.is_active(now) {
            "active"
        } else {
            "expired"
        };
        Self {
            role: match token.role {
                TokenRole::User(_) => "user",
                TokenRole::Admin => "admin",
                TokenRole::Service => "service",
            },
            id: token.id,
            label: token.meta.label,
            created_at: token.created_at,
            last_used_at: token.last_used_at,
            expires_at: token.meta.expires_at,
            revoked_at: token.revoked_at,
            status,
            scope: token.meta.scope,
            requests: usage.requests,
            cost_usd: byok_router::Money::from_picodollars(
                u64::try_from(usage.picodollars.max(0)).unwrap_or(u64::MAX),
            )
            .to_usd_string(),
            unpriced_requests: usage.unpriced,
        }
    }
}

/// A token to issue: label, expiry and scope.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    /// A label (at most 64 characters).
    pub label: String,
    /// When it stops working; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it may do.
    pub scope: TokenScope,
}

/// A page of users, for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    #[schema(value_type = String)]
    pub id: UserId,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
    /// When an operator disabled them, if they are disabled.
    pub disabled_at: Option<DateTime<Utc>>,
}

fn check_label(label: Option<&str>) -> Result<()> {
    // Labels are shown in plain text: a key pasted into one is refused.
    if let Some(label) = label
        && let Ok(key) = ApiKey::parse(label)
        && ProviderKind::ALL
            .iter()
            .any(|p| byok_providers::key_format::check(*p, &key).is_ok())
    {
        return Err(ServiceError::invalid(
            "label_looks_like_key",
            "that label looks like an API key; labels are shown in plain text",
        ));
    }
    match label {
        Some(label)
            if label.chars().count() > MAX_LABEL_LEN || label.chars().any(char::is_control) =>
        {
            Err(ServiceError::invalid(
                "invalid_label",
                "label must be at most 64 characters, without control characters",
            ))
        }
        _ => Ok(()),
    }
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
    clock: Clock,
    max_keys_per_provider: u32,
    /// When each token's `last_used_at` was last written: at most once a
    /// minute per token, so use costs no write per request.
    touched: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    budget_policy: BudgetPolicy,
    cache: Arc<crate::cache::HotCache>,
}

/// What an operator decides about budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// A hard monthly budget every new user starts with.
    pub default_monthly: Option<byok_router::Money>,
    /// The most a user's monthly budget for all providers may be; with it,
    /// every user has one (created at the ceiling when missing) and cannot
    /// remove it.
    pub ceiling_monthly: Option<byok_router::Money>,
}

/// A budget to set, as a client sent it.
#[derive(Debug, Clone)]
pub struct BudgetInput {
    /// Per day or month.
    pub period: byok_store::budgets::Period,
    /// One provider's spend, or all.
    pub provider: Option<ProviderKind>,
    /// One of the user's tokens (its public id), or all.
    pub token_id: Option<String>,
    /// The limit in dollars (`"5"`, `"0.50"`).
    pub limit_usd: String,
    /// Refuse (`true`) or only flag (`false`) requests over it.
    pub hard: bool,
    /// An IANA time zone (`Europe/Paris`); UTC when absent.
    pub time_zone: Option<String>,
}

/// A budget and where its current period stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BudgetView {
    /// Its id.
    pub id: String,
    /// `day` or `month`.
    #[schema(value_type = String, example = "month")]
    pub period: byok_store::budgets::Period,
    /// The provider it covers, or absent for all.
    #[schema(value_type = Option<String>)]
    pub provider: Option<ProviderKind>,
    /// The token it covers, or absent for all the user's tokens.
    pub token_id: Option<String>,
    /// The limit in dollars.
    pub limit_usd: String,
    /// Hard (requests over it are refused) or soft (flagged).
    pub hard: bool,
    /// The time zone of its days and months.
    pub time_zone: String,
    /// Spent in the current period (exact, settled).
    pub spent_usd: String,
    /// Reserved by requests in flight.
    pub reserved_usd: String,
    /// Spent and reserved, in percent of the limit.
    pub used_percent: u32,
    /// When the current period began.
    pub period_start: DateTime<Utc>,
    /// When it resets.
    pub resets_at: DateTime<Utc>,
}

impl From<byok_store::budgets::BudgetState> for BudgetView {
    fn from(state: byok_store::budgets::BudgetState) -> Self {
        let usd = |pico: i64| {
            byok_router::Money::from_picodollars(u64::try_from(pico).unwrap_or(0)).to_usd_string()
        };
        let taken = i128::from(state.spent.saturating_add(state.reserved));
        let limit = i128::from(state.budget.limit_picodollars.max(1));
        Self {
            id: state.budget.id,
            period: state.budget.period,
            provider: state.budget.provider,
            token_id: state.budget.token_id.clone(),
            limit_usd: usd(state.budget.limit_picodollars),
            hard: state.budget.hard,
            time_zone: state.budget.time_zone.name().to_owned(),
            spent_usd: usd(state.spent),
            reserved_usd: usd(state.reserved),
            used_percent: u32::try_from(taken * 100 / limit).unwrap_or(u32::MAX),
            period_start: state.period.0,
            resets_at: state.period.1,
        }
    }
}

/// Most keys a user may keep for one provider, unless configured.
pub const DEFAULT_MAX_KEYS_PER_PROVIDER: u32 = 10;
/// How often a token's `last_used_at` is written at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Longest key or token label.
const MAX_LABEL_LEN: usize = 64;

/// Which of a provider's keys a save writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyTarget {
    /// The provider's default (first) key: replaced, or created when there
    /// is none — the one-key-per-provider routes.
    Default,
    /// A new key, last in the provider's order.
    New,
    /// The key with this id.
    Id(String),
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
            .field("max_keys_per_provider", &self.max_keys_per_provider)
            .finish_non_exhaustive()
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
            clock: Arc::new(now),
            max_keys_per_provider: DEFAULT_MAX_KEYS_PER_PROVIDER,
            touched: Arc::default(),
            budget_policy: BudgetPolicy::default(),
            cache: Arc::default(),
        }
    }

    /// Starts listening for other replicas' changes (PostgreSQL), so this
    /// server's caches drop what they change. Call once per server.
    pub fn listen_for_changes(&self) {
        crate::cache::listen(&self.store, &self.cache);
    }

    /// Drops what `change` makes stale here, and tells the other replicas.
    pub(crate) async fn changed(&self, change: crate::cache::Change) {
        self.cache.forget(&change);
        crate::cache::announce(&self.store, &change).await;
    }

    /// `user`'s state from the cache, or read once and kept.
    pub(crate) async fn user_state(&self, user: &UserId) -> Result<Arc<crate::cache::UserState>> {
        if let Some(state) = self.cache.user(user) {
            return Ok(state);
        }
        let u = user.clone();
        let state = self
            .store
            .run(move |c| {
                let found = users::find(c, &u)?;
                Ok(crate::cache::UserState {
                    active: found.is_some_and(|f| f.disabled_at.is_none()),
                    keys: keys::list_for_user(c, &u)?,
                    budgets: byok_store::budgets::list_for_user(c, &u)?,
                    limits: byok_store::rates::user_limits(c, &u)?,
                })
            })
            .await?;
        Ok(self.cache.put_user(user.clone(), state))
    }

    /// Applies the operator's budget `policy` (a default for new users, a
    /// ceiling users cannot raise).
    #[must_use]
    pub fn with_budget_policy(mut self, policy: BudgetPolicy) -> Self {
        self.budget_policy = policy;
        self
    }

    /// Reads the time from `clock` (token expiry; tests move it).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// At most `max` keys per user and provider (default
    /// [`DEFAULT_MAX_KEYS_PER_PROVIDER`]).
    #[must_use]
    pub fn with_max_keys_per_provider(mut self, max: u32) -> Self {
        self.max_keys_per_provider = max.max(1);
        self
    }

    /// The time now, by the service's clock.
    #[must_use]
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
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
        let stored = self.cached_token(id).await?;
        // Compare even when there is no row, so both paths cost the same.
        let stored_hash = stored
            .as_ref()
            .map_or([0u8; 32].as_slice(), |t| t.secret_hash.as_slice());
        let matches = token::hashes_match(stored_hash, &parsed.secret_hash);
        let now = self.now();
        let Some(t) = stored.filter(|t| matches && t.is_active(now)) else {
            return Ok(None);
        };
        // Revoked, expired and disabled-owner tokens look exactly like unknown ones.
        if let TokenRole::User(owner) = &t.role
            && !self.user_state(owner).await?.active
        {
            return Ok(None);
        }
        let t = Arc::unwrap_or_clone(t);
        self.touch(&t.id);
        Ok(Some(match t.role {
            TokenRole::Admin => Principal::Admin { token_id: t.id },
            TokenRole::Service => Principal::Service {
                token_id: t.id,
                scope: Arc::new(t.meta.scope),
            },
            TokenRole::User(user) => Principal::User {
                user,
                token_id: t.id,
                scope: Arc::new(t.meta.scope),
                via_service: false,
            },
        }))
    }

    /// The token with public id `id`, from the cache or read once and kept.
    async fn cached_token(&self, id: String) -> Result<Option<Arc<StoredToken>>> {
        if let Some(token) = self.cache.token(&id) {
            return Ok(Some(token));
        }
        let found = self.store.run(move |c| tokens::find(c, &id)).await?;
        Ok(found.map(|t| {
            self.cache.put_token(t.clone());
            Arc::new(t)
        }))
    }

    /// Writes a token's `last_used_at`, at most once a minute, off the
    /// request's path.
    fn touch(&self, token_id: &str) {
        let now = Instant::now();
        {
            let mut touched = self
                .touched
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if touched
                .get(token_id)
                .is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY)
            {
                return;
            }
            if touched.len() >= 100_000 {
                touched.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
            }
            touched.insert(token_id.to_owned(), now);
        }
        let (store, id, at) = (self.store.clone(), token_id.to_owned(), self.now());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.run(move |c| tokens::touch(c, &id, at)).await {
                    tracing::debug!(%error, "could not record a token's last use");
                }
            });
        }
    }

    /// The principal a service token becomes when it names, with
    /// `X-BYOK-User`, the user it acts for: that user, with the service
    /// token's scope — if the token may act for them and they exist and are
    /// enabled. Any other principal naming a user is refused.
    ///
    /// # Errors
    /// [`ServiceError::BadHeader`] for a malformed id or a token that is not
    /// a service token, [`ServiceError::Denied`] for a user outside the
    /// token's users, [`ServiceError::UserNotFound`].
    pub async fn act_for(
        &self,
        principal: Principal,
        named: &str,
        ctx: &RequestContext,
    ) -> Result<Principal> {
        let Principal::Service { token_id, scope } = principal else {
            return Err(ServiceError::BadHeader {
                code: "user_header_not_allowed",
                message: "X-BYOK-User is accepted only with a service token",
            });
        };
        let Ok(user) = UserId::parse(named) else {
            return Err(ServiceError::BadHeader {
                code: "invalid_user_header",
                message: "X-BYOK-User must be a user id: 1 to 64 characters of A-Z a-z 0-9 . _ @ -",
            });
        };
        if !scope.allows_user(&user) {
            let event = ctx
                .event(
                    Actor::Service {
                        token_id: token_id.clone(),
                    },
                    AuditAction::AuthFailure,
                    AuditOutcome::Denied,
                )
                .detail("user_not_in_service_scope");
            self.append(event).await?;
            return Err(ServiceError::denied(
                "user_not_allowed",
                "this service token may not act for that user",
            ));
        }
        if !self.user_state(&user).await?.active {
            return Err(ServiceError::UserNotFound);
        }
        Ok(Principal::User {
            user,
            token_id,
            scope,
            via_service: true,
        })
    }

    /// Lets `principal` act on `user`'s resources through `door`, or
    /// answers [`ServiceError::UserNotFound`] — the same for a user that does
    /// not exist and one that is not the caller — recording a denial. A
    /// token whose scope lacks the door gets [`ServiceError::Denied`].
    pub(crate) async fn authorize(
        &self,
        principal: &Principal,
        user: &UserId,
        doors: &[Door],
        ctx: &RequestContext,
    ) -> Result<()> {
        match principal {
            Principal::User {
                user: me, scope, ..
            } if me == user => {
                if doors.iter().any(|d| scope.allows_door(*d)) {
                    Ok(())
                } else {
                    let event = ctx
                        .event(
                            principal.actor(),
                            AuditAction::AuthFailure,
                            AuditOutcome::Denied,
                        )
                        .user(me)
                        .detail("door_not_in_token_scope");
                    self.append(event).await?;
                    Err(ServiceError::denied(
                        "token_door_not_allowed",
                        "this token's scope does not include this part of byok",
                    ))
                }
            }
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
            Principal::Service { .. } => Err(ServiceError::BadHeader {
                code: "service_token_needs_user",
                message: "a service token must name the user it acts for in X-BYOK-User",
            }),
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
            Principal::User { .. } | Principal::Service { .. } => Err(ServiceError::Forbidden),
        }
    }

    async fn append(&self, event: NewAuditEvent) -> Result<()> {
        self.store
            .run(move |c| audit::append(c, &event, now()))
            .await?;
        Ok(())
    }

    /// `user`'s keys, opened, for an export the caller seals under a
    /// passphrase ([`byok_vault::seal_export`]) to move them to another byok
    /// (a desktop app, another server). Needs an unrestricted token or the
    /// admin; audited (`key.export`, with the count).
    ///
    /// # Errors
    /// As [`KeyService::list_keys`]; [`ServiceError::KeyUnusable`] when a
    /// stored key does not open (nothing is exported then).
    pub async fn export_keys(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<byok_vault::ExportedKey>> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        Self::require_full_token(principal)?;
        let u = user.clone();
        let stored = self.store.run(move |c| keys::list_for_user(c, &u)).await?;
        let mut exported = Vec::with_capacity(stored.len());
        for key in &stored {
            let api_key = self.open_sealed(key).ok_or(ServiceError::KeyUnusable)?;
            exported.push(byok_vault::ExportedKey {
                provider: key.provider,
                label: key.label.clone(),
                position: key.position,
                weight: key.weight,
                enabled: key.enabled,
                settings: key.settings.clone(),
                api_key,
            });
        }
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyExport,
                AuditOutcome::Success,
            )
            .user(user)
            .detail_count("keys", u64::try_from(exported.len()).unwrap_or(u64::MAX));
        self.append(event).await?;
        Ok(exported)
    }

    /// Adds exported keys to `user`'s, each as a new key, last in its
    /// provider's order (validated, sealed and audited as a save is, with its
    /// label, settings, weight and on/off switch). All or nothing: when one
    /// cannot be added, the ones added before it are removed again. Returns
    /// how many were added.
    ///
    /// # Errors
    /// As [`KeyService::save_key`], for the first key that cannot be added.
    pub async fn import_keys(
        &self,
        principal: &Principal,
        user: &UserId,
        imported: Vec<byok_vault::ExportedKey>,
        ctx: &RequestContext,
    ) -> Result<usize> {
        Self::require_full_token(principal)?;
        let mut added: Vec<(ProviderKind, String)> = Vec::with_capacity(imported.len());
        for key in imported {
            match self.import_one(principal, user, key, ctx).await {
                Ok(id) => added.push(id),
                Err(error) => {
                    for (provider, id) in added {
                        if let Err(undo) = self
                            .delete_key_by_id(principal, user, provider, &id, ctx)
                            .await
                        {
                            tracing::error!(error = %undo, "an imported key could not be removed after a failed import");
                        }
                    }
                    return Err(error);
                }
            }
        }
        Ok(added.len())
    }

    async fn import_one(
        &self,
        principal: &Principal,
        user: &UserId,
        key: byok_vault::ExportedKey,
        ctx: &RequestContext,
    ) -> Result<(ProviderKind, String)> {
        let setting = |name: &str| key.settings.get(name).cloned();
        let input = KeyInput {
            api_key: SecretString::from(key.api_key.expose_secret().to_owned()),
            options: KeyOptions {
                endpoint: setting("endpoint"),
                deployment: setting("deployment"),
                api_version: setting("api_version"),
                embedding_deployment: setting("embedding_deployment"),
                workspace_id: setting("workspace_id"),
            },
            label: Some(key.label.clone()).filter(|l| !l.is_empty()),
        };
        let (_, view) = self
            .save_key(principal, user, key.provider, KeyTarget::New, input, ctx)
            .await?;
        if !key.enabled || key.weight != 1 {
            let changes = KeyChanges {
                enabled: Some(key.enabled),
                weight: Some(key.weight),
                ..KeyChanges::default()
            };
            self.update_key(
                principal,
                user,
                key.provider,
                &view.id,
                (changes, None),
                ctx,
            )
            .await?;
        }
        Ok((key.provider, view.id))
    }

    /// `user`'s keys, masked, by provider and then in each provider's order.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn list_keys(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyView>> {
        self.authorize(principal, user, &[Door::Keys, Door::Reports], ctx)
            .await?;
        let u = user.clone();
        let stored = self.store.run(move |c| keys::list_for_user(c, &u)).await?;
        Ok(stored.into_iter().map(KeyView::from).collect())
    }

    /// Validates, seals and saves `input` as `user`'s default key for
    /// `provider`, replacing the earlier one atomically (or creating it).
    ///
    /// # Errors
    /// As [`KeyService::save_key`].
    pub async fn put_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        input: KeyInput,
        ctx: &RequestContext,
    ) -> Result<(PutOutcome, KeyView)> {
        self.save_key(principal, user, provider, KeyTarget::Default, input, ctx)
            .await
    }

    /// Validates, seals (bound to the key's id) and saves `input` as the key
    /// `target` names, atomically. A rejected key is recorded in the audit
    /// trail with its error code, never its value.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a malformed key, settings or label, or
    /// when the provider already has the most keys allowed
    /// (`too_many_keys`); [`ServiceError::KeyNotFound`] for an unknown key
    /// id; [`ServiceError::UserNotFound`], [`ServiceError::Busy`].
    pub async fn save_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        target: KeyTarget,
        input: KeyInput,
        ctx: &RequestContext,
    ) -> Result<(PutOutcome, KeyView)> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        let label = input.label.clone();
        let validated = match check_label(label.as_deref()) {
            Ok(()) => self.validate_full(provider, input).await,
            Err(error) => Err(error),
        };
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
        let masked = key.masked();
        let master_key_id = self.vault.active_key_id().get();
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyCreate,
                AuditOutcome::Success,
            )
            .user(user)
            .provider(provider);
        let (u, vault, max) = (
            user.clone(),
            Arc::clone(&self.vault),
            self.max_keys_per_provider,
        );
        let result = self
            .store
            .run(move |c| {
                write_transaction(c, |c| {
                    let id = match &target {
                        KeyTarget::Default => keys::default_id(c, &u, provider)?,
                        KeyTarget::New => None,
                        KeyTarget::Id(id) => Some(
                            keys::get_by_id(c, &u, id)?
                                .filter(|k| k.provider == provider)
                                .ok_or(StoreError::NotFound)?
                                .id,
                        ),
                    };
                    let id = if let Some(id) = id {
                        id
                    } else {
                        if keys::count(c, &u, provider)? >= max {
                            return Err(StoreError::Conflict);
                        }
                        uuid::Uuid::new_v4().to_string()
                    };
                    let sealed = vault
                        .seal(&key, &Binding::for_key(&u, provider, &id))
                        .map_err(|_| StoreError::Corrupt("seal"))?;
                    let new = NewProviderKey {
                        id: &id,
                        user_id: &u,
                        provider,
                        sealed_key: sealed.as_bytes(),
                        master_key_id,
                        masked_key: &masked,
                        settings: &settings,
                        label: label.as_deref(),
                    };
                    let outcome = keys::put(c, &new, event.clone(), now())?;
                    let stored = keys::get_by_id(c, &u, &id)?.ok_or(StoreError::NotFound)?;
                    Ok((outcome, stored))
                })
            })
            .await;
        match result {
            Ok((outcome, stored)) => {
                // A new secret starts with a clean bill of health.
                self.health.reset_key(user, provider, &stored.id);
                self.changed(crate::cache::Change::User(user.clone())).await;
                Ok((outcome, stored.into()))
            }
            Err(StoreError::NotFound) => Err(if self.user_exists(user).await? {
                ServiceError::KeyNotFound
            } else {
                ServiceError::UserNotFound
            }),
            Err(StoreError::Conflict) => Err(ServiceError::invalid(
                "too_many_keys",
                "this provider already has the most keys allowed; delete one first",
            )),
            Err(other) => Err(other.into()),
        }
    }

    async fn user_exists(&self, user: &UserId) -> Result<bool> {
        let u = user.clone();
        Ok(self.store.run(move |c| users::find(c, &u)).await?.is_some())
    }

    /// Changes `user`'s key `key_id` for `provider`: label, place in the
    /// order, weight, on/off. Promoting a key is moving it to position 0.
    ///
    /// # Errors
    /// [`ServiceError::KeyNotFound`], [`ServiceError::Invalid`] for a bad
    /// label, position or weight.
    pub async fn update_key(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        key_id: &str,
        (mut changes, options): (KeyChanges, Option<KeyOptions>),
        ctx: &RequestContext,
    ) -> Result<KeyView> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        check_label(changes.label.as_deref())?;
        if let Some(options) = options {
            // Settings change without the key: merged over the stored ones,
            // then checked as on a save.
            let (u, id) = (user.clone(), key_id.to_owned());
            let existing = self
                .store
                .run(move |c| keys::get_by_id(c, &u, &id))
                .await?
                .filter(|k| k.provider == provider)
                .ok_or(ServiceError::KeyNotFound)?;
            let stored = |name: &str| existing.settings.get(name).cloned();
            let merged = KeyOptions {
                endpoint: options.endpoint.or_else(|| stored("endpoint")),
                deployment: options.deployment.or_else(|| stored("deployment")),
                api_version: options.api_version.or_else(|| stored("api_version")),
                embedding_deployment: options
                    .embedding_deployment
                    .or_else(|| stored("embedding_deployment")),
                workspace_id: options.workspace_id.or_else(|| stored("workspace_id")),
            };
            let settings = validate_options(provider, merged, self.allow_private_endpoints)?;
            self.check_endpoint(provider, &settings).await?;
            changes.settings = Some(settings);
        }
        if changes.position.is_some_and(|p| !(0..=1000).contains(&p)) {
            return Err(ServiceError::invalid(
                "invalid_position",
                "position must be 0 to 1000",
            ));
        }
        if changes.weight.is_some_and(|w| !(1..=1000).contains(&w)) {
            return Err(ServiceError::invalid(
                "invalid_weight",
                "weight must be 1 to 1000",
            ));
        }
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyUpdate,
                AuditOutcome::Success,
            )
            .user(user)
            .provider(provider);
        let (u, id) = (user.clone(), key_id.to_owned());
        let updated = self
            .store
            .run(move |c| {
                write_transaction(c, |c| {
                    match keys::get_by_id(c, &u, &id)? {
                        Some(k) if k.provider == provider => {}
                        _ => return Ok(None),
                    }
                    keys::update(c, &u, &id, &changes, &event, now())
                })
            })
            .await?;
        self.changed(crate::cache::Change::User(user.clone())).await;
        updated.map(KeyView::from).ok_or(ServiceError::KeyNotFound)
    }

    /// Deletes every key `user` has for `provider`; the sealed blobs are gone.
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
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
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
            self.changed(crate::cache::Change::User(user.clone())).await;
            Ok(())
        } else {
            Err(ServiceError::KeyNotFound)
        }
    }

    /// Deletes `user`'s key `key_id` for `provider`; the sealed blob is gone
    /// and the id is never served again.
    ///
    /// # Errors
    /// [`ServiceError::KeyNotFound`] when there is none.
    pub async fn delete_key_by_id(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        key_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::KeyDelete,
                AuditOutcome::Success,
            )
            .user(user)
            .provider(provider);
        let (u, id) = (user.clone(), key_id.to_owned());
        let deleted = self
            .store
            .run(move |c| {
                write_transaction(c, |c| match keys::get_by_id(c, &u, &id)? {
                    Some(k) if k.provider == provider => {
                        keys::delete_by_id(c, &u, &id, &event, now())
                    }
                    _ => Ok(false),
                })
            })
            .await?;
        if deleted {
            self.health.reset_key(user, provider, key_id);
            self.changed(crate::cache::Change::User(user.clone())).await;
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
        self.authorize(principal, user, &[Door::Keys, Door::Reports], ctx)
            .await?;
        let u = user.clone();
        Ok(self
            .store
            .run(move |c| {
                let since = users::find(c, &u)?.map(|found| found.created_at);
                audit::list_for_user_since(c, &u, since, before, limit)
            })
            .await?)
    }

    /// Opens `user`'s default key for `provider`: for the provider adapters
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
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        self.open_stored(principal, user, provider, None, ctx)
            .await
            .map(|(key, _)| key)
    }

    /// Opens a stored key with the binding to its own id; a key that does
    /// not open is counted, logged (without the key) and left to the caller.
    pub(crate) fn open_sealed(&self, stored: &StoredKey) -> Option<ApiKey> {
        let sealed = SealedKey::from_bytes(stored.sealed_key.clone());
        let binding = Binding::for_key(&stored.user_id, stored.provider, &stored.id);
        self.vault.open(&sealed, &binding).ok()
    }

    /// The stored row and its opened key (the provider's default key, or
    /// `key_id`), read once (no check of the caller).
    async fn open_stored(
        &self,
        principal: &Principal,
        user: &UserId,
        provider: ProviderKind,
        key_id: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<(ApiKey, StoredKey)> {
        let (u, id) = (user.clone(), key_id.map(str::to_owned));
        let stored = self
            .store
            .run(move |c| match id {
                Some(id) => keys::get_by_id(c, &u, &id),
                None => keys::get(c, &u, provider),
            })
            .await?
            .filter(|k| k.provider == provider)
            .ok_or(ServiceError::KeyNotFound)?;
        if let Some(key) = self.open_sealed(&stored) {
            return Ok((key, stored));
        }
        let sealed = SealedKey::from_bytes(stored.sealed_key.clone());
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
            key_id = %stored.id,
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

    /// [`KeyService::validate_key`], then, for Azure, the endpoint's DNS
    /// answer: every address must be public (unless private endpoints are
    /// allowed).
    async fn validate_full(
        &self,
        provider: ProviderKind,
        input: KeyInput,
    ) -> Result<(ApiKey, keys::KeySettings)> {
        let (key, settings) = self.validate_key(provider, input)?;
        self.check_endpoint(provider, &settings).await?;
        Ok((key, settings))
    }

    /// For Azure, the endpoint's DNS answer: every address must be public
    /// (unless private endpoints are allowed).
    async fn check_endpoint(
        &self,
        provider: ProviderKind,
        settings: &keys::KeySettings,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Tests `user`'s stored key for `provider` (the default key, or
    /// `key_id`) — or, with `candidate`, that key without saving it — with
    /// the provider's cheapest authenticated
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
        key_id: Option<&str>,
        candidate: Option<KeyInput>,
        ctx: &RequestContext,
    ) -> Result<KeyTestReport> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
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
            let (key, stored) = self
                .open_stored(principal, user, provider, key_id, ctx)
                .await?;
            (key, stored.settings, Some((stored.id, stored.sealed_key)))
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
        if let Some((id, _)) = &tested {
            self.health.record_key(
                user,
                provider,
                id,
                test_outcome(&outcome, started.elapsed()),
                Instant::now(),
            );
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
        let test = keys::KeyTest {
            status,
            at: checked_at,
            latency_ms: answered.then_some(latency_ms),
        };
        let tested_id = tested.as_ref().map(|(id, _)| id.clone());
        let recorded = self
            .store
            .run(move |c| {
                if let Some((id, sealed)) = &tested {
                    keys::record_test_if_unchanged(c, id, sealed, &test, &event)
                } else {
                    audit::append(c, &event, test.at).map(|()| false)
                }
            })
            .await?;
        if recorded {
            self.changed(crate::cache::Change::User(user.clone())).await;
        }
        Ok(KeyTestReport {
            key_id: tested_id,
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
                        meta: TokenMeta::default(),
                    };
                    tokens::insert(c, &new, &issue, at)
                })
            })
            .await;
        match result {
            Ok(()) => {
                self.changed(crate::cache::Change::User(user.clone())).await;
                if let Some(default) = self
                    .budget_policy
                    .default_monthly
                    .or(self.budget_policy.ceiling_monthly)
                {
                    self.insert_budget(Actor::System, user, default, ctx)
                        .await?;
                }
                Ok(issued)
            }
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
            self.health.forget_user(user);
            self.changed(crate::cache::Change::User(user.clone())).await;
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
                        meta: TokenMeta::default(),
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
        self.changed(crate::cache::Change::Token(token_id.to_owned()))
            .await;
        if revoked || stored.revoked_at.is_some() {
            Ok(())
        } else {
            Err(ServiceError::TokenNotFound)
        }
    }

    /// Token management needs a token that can do everything its owner can:
    /// a scoped token must not mint or revoke tokens.
    fn require_full_token(principal: &Principal) -> Result<()> {
        match principal {
            Principal::Admin { .. } => Ok(()),
            Principal::User { scope, .. }
                if scope.doors.is_none() && scope.providers.is_none() && scope.models.is_none() =>
            {
                Ok(())
            }
            _ => Err(ServiceError::denied(
                "token_scope_too_narrow",
                "managing tokens needs an unrestricted token",
            )),
        }
    }

    fn check_token_request(&self, request: &TokenRequest, service: bool) -> Result<()> {
        check_label(Some(&request.label))?;
        if request.expires_at.is_some_and(|at| at <= self.now()) {
            return Err(ServiceError::invalid(
                "invalid_expiry",
                "expires_at must be in the future",
            ));
        }
        let scope = &request.scope;
        if !service && (scope.users.is_some() || scope.user_prefix.is_some()) {
            return Err(ServiceError::invalid(
                "invalid_scope",
                "users and user_prefix are for service tokens only",
            ));
        }
        if scope.doors.as_ref().is_some_and(Vec::is_empty)
            || scope.providers.as_ref().is_some_and(Vec::is_empty)
            || scope.models.as_ref().is_some_and(Vec::is_empty)
        {
            return Err(ServiceError::invalid(
                "invalid_scope",
                "a scope list must not be empty (leave it out for no restriction)",
            ));
        }
        let too_long = scope.models.as_ref().is_some_and(|m| {
            m.len() > 100 || m.iter().any(|model| model.is_empty() || model.len() > 200)
        }) || scope.users.as_ref().is_some_and(|u| u.len() > 1000)
            || scope
                .user_prefix
                .as_ref()
                .is_some_and(|p| p.is_empty() || UserId::parse(p.as_str()).is_err());
        crate::limits::RateLimits::of_token(scope).check()?;
        if too_long {
            return Err(ServiceError::invalid(
                "invalid_scope",
                "models: at most 100 names of 1 to 200 characters; users: at most 1000; user_prefix: user-id characters",
            ));
        }
        Ok(())
    }

    /// Issues a token for `user` with `request`'s label, expiry and scope;
    /// the secret is in the result, once.
    ///
    /// # Errors
    /// [`ServiceError::Denied`] for a scoped token, [`ServiceError::Invalid`]
    /// for a bad label, expiry or scope, [`ServiceError::UserNotFound`].
    pub async fn create_token(
        &self,
        principal: &Principal,
        user: &UserId,
        request: TokenRequest,
        ctx: &RequestContext,
    ) -> Result<(IssuedToken, TokenView)> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        Self::require_full_token(principal)?;
        self.check_token_request(&request, false)?;
        let issued = self
            .insert_token(
                principal.actor(),
                TokenRole::User(user.clone()),
                request,
                ctx,
            )
            .await?;
        let view = self.token_view(user, &issued.id).await?;
        Ok((issued, view))
    }

    async fn insert_token(
        &self,
        actor: Actor,
        role: TokenRole,
        request: TokenRequest,
        ctx: &RequestContext,
    ) -> Result<IssuedToken> {
        let (issued, hash) = token::issue().map_err(ServiceError::internal)?;
        let mut event = ctx.event(actor, AuditAction::TokenIssue, AuditOutcome::Success);
        match &role {
            TokenRole::User(user) => event = event.user(user),
            TokenRole::Admin => event = event.detail("admin_token"),
            TokenRole::Service => event = event.detail("service_token"),
        }
        let id = issued.id.clone();
        let meta = TokenMeta {
            label: request.label,
            expires_at: request.expires_at,
            scope: request.scope,
        };
        let result = self
            .store
            .run(move |c| {
                let new = NewToken {
                    id: &id,
                    role: role.clone(),
                    secret_hash: &hash,
                    meta: meta.clone(),
                };
                tokens::insert(c, &new, &event, now())
            })
            .await;
        match result {
            Ok(()) => Ok(issued),
            Err(StoreError::NotFound) => Err(ServiceError::UserNotFound),
            Err(other) => Err(other.into()),
        }
    }

    async fn token_view(&self, user: &UserId, token_id: &str) -> Result<TokenView> {
        self.user_tokens(user)
            .await?
            .into_iter()
            .find(|t| t.id == token_id)
            .ok_or(ServiceError::TokenNotFound)
    }

    async fn user_tokens(&self, user: &UserId) -> Result<Vec<TokenView>> {
        let u = user.clone();
        let (tokens, usage) = self
            .store
            .run(move |c| {
                Ok((
                    tokens::list_for_user(c, &u)?,
                    byok_store::usage::totals_by_token(c, &u)?,
                ))
            })
            .await?;
        let now = self.now();
        Ok(tokens
            .into_iter()
            .map(|t| {
                let usage = usage.get(&t.id).copied().unwrap_or_default();
                TokenView::new(t, usage, now)
            })
            .collect())
    }

    /// `user`'s tokens (revoked and expired ones included), newest first,
    /// each with its own usage; never a secret.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn list_tokens(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<TokenView>> {
        self.authorize(principal, user, &[Door::Keys, Door::Reports], ctx)
            .await?;
        self.user_tokens(user).await
    }

    /// Revokes `user`'s token `token_id`.
    ///
    /// # Errors
    /// [`ServiceError::Denied`] for a scoped token,
    /// [`ServiceError::TokenNotFound`] when `user` has no such token.
    pub async fn revoke_user_token(
        &self,
        principal: &Principal,
        user: &UserId,
        token_id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        Self::require_full_token(principal)?;
        let id = token_id.to_owned();
        let stored = self.store.run(move |c| tokens::find(c, &id)).await?;
        match stored {
            Some(t) if t.role == TokenRole::User(user.clone()) => {}
            _ => return Err(ServiceError::TokenNotFound),
        }
        self.revoke_token_as(principal.actor(), token_id, ctx).await
    }

    /// Issues a service token (admin only): it acts for the users its scope
    /// names (`users`, `user_prefix`; neither means any user), per request
    /// with `X-BYOK-User`, never on admin routes.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::Invalid`].
    pub async fn issue_service_token(
        &self,
        principal: &Principal,
        request: TokenRequest,
        ctx: &RequestContext,
    ) -> Result<(IssuedToken, TokenView)> {
        Self::require_admin(principal)?;
        self.check_token_request(&request, true)?;
        let issued = self
            .insert_token(principal.actor(), TokenRole::Service, request, ctx)
            .await?;
        let view = self
            .list_service_tokens(principal)
            .await?
            .into_iter()
            .find(|t| t.id == issued.id)
            .ok_or(ServiceError::TokenNotFound)?;
        Ok((issued, view))
    }

    /// Every service token (admin only), newest first.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin.
    pub async fn list_service_tokens(&self, principal: &Principal) -> Result<Vec<TokenView>> {
        Self::require_admin(principal)?;
        let tokens = self.store.run(tokens::list_service).await?;
        let now = self.now();
        Ok(tokens
            .into_iter()
            .map(|t| TokenView::new(t, byok_store::usage::TokenUsage::default(), now))
            .collect())
    }

    /// Users whose id starts with `prefix`, in id order, `limit` at a time
    /// after `after` (admin only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin.
    pub async fn list_users(
        &self,
        principal: &Principal,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<UserView>> {
        Self::require_admin(principal)?;
        let (prefix, after) = (prefix.to_owned(), after.map(str::to_owned));
        let found = self
            .store
            .run(move |c| users::list(c, &prefix, after.as_deref(), i64::from(limit)))
            .await?;
        Ok(found
            .into_iter()
            .map(|u| UserView {
                id: u.id,
                created_at: u.created_at,
                disabled_at: u.disabled_at,
            })
            .collect())
    }

    /// Disables (`true`) or enables `user` (admin only). A disabled user's
    /// tokens are refused like unknown ones; their keys and data stay.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-admin, [`ServiceError::UserNotFound`].
    pub async fn set_user_disabled(
        &self,
        principal: &Principal,
        user: &UserId,
        disabled: bool,
        ctx: &RequestContext,
    ) -> Result<()> {
        Self::require_admin(principal)?;
        let action = if disabled {
            AuditAction::UserDisable
        } else {
            AuditAction::UserEnable
        };
        let event = ctx
            .event(principal.actor(), action, AuditOutcome::Success)
            .user(user);
        let u = user.clone();
        let found = self
            .store
            .run(move |c| users::set_disabled(c, &u, disabled, &event, now()))
            .await?;
        if found {
            self.changed(crate::cache::Change::User(user.clone())).await;
            Ok(())
        } else {
            Err(ServiceError::UserNotFound)
        }
    }

    fn budget_limit(&self, input: &BudgetInput) -> Result<i64> {
        let limit = byok_router::Money::parse_usd(&input.limit_usd).map_err(|_| {
            ServiceError::invalid(
                "invalid_limit",
                "limit_usd must be dollars with at most six decimals, such as \"5\" or \"0.50\"",
            )
        })?;
        if input.period == byok_store::budgets::Period::Month
            && input.provider.is_none()
            && self
                .budget_policy
                .ceiling_monthly
                .is_some_and(|c| limit > c)
        {
            return Err(ServiceError::invalid(
                "budget_above_ceiling",
                "the operator caps monthly budgets lower than that",
            ));
        }
        i64::try_from(limit.picodollars())
            .map_err(|_| ServiceError::invalid("invalid_limit", "limit_usd is too large"))
    }

    fn time_zone(input: Option<&str>) -> Result<chrono_tz::Tz> {
        input.map_or(Ok(chrono_tz::UTC), |zone| {
            zone.parse().map_err(|_| {
                ServiceError::invalid(
                    "invalid_time_zone",
                    "time_zone must be an IANA time zone such as Europe/Paris or UTC",
                )
            })
        })
    }

    /// `user`'s budgets, each with its current period's spend.
    ///
    /// # Errors
    /// [`ServiceError::UserNotFound`] unless `principal` may act on `user`.
    pub async fn list_budgets(
        &self,
        principal: &Principal,
        user: &UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<BudgetView>> {
        self.authorize(principal, user, &[Door::Keys, Door::Reports], ctx)
            .await?;
        self.budget_states(user).await
    }

    pub(crate) async fn budget_states(&self, user: &UserId) -> Result<Vec<BudgetView>> {
        self.ensure_ceiling_budget(user).await?;
        let (u, at) = (user.clone(), self.now());
        let states = self
            .store
            .run(move |c| byok_store::budgets::states(c, &u, None, at))
            .await?;
        Ok(states.into_iter().map(BudgetView::from).collect())
    }

    /// With an operator ceiling, a user without a monthly budget for all
    /// providers gets one at the ceiling.
    pub(crate) async fn ensure_ceiling_budget(&self, user: &UserId) -> Result<()> {
        // Checked per request only when the operator set a ceiling.
        let Some(ceiling) = self.budget_policy.ceiling_monthly else {
            return Ok(());
        };
        let state = self.user_state(user).await?;
        if !state.active
            || state.budgets.iter().any(|b| {
                b.period == byok_store::budgets::Period::Month
                    && b.provider.is_none()
                    && b.token_id.is_none()
            })
        {
            return Ok(());
        }
        let created = self
            .insert_budget(Actor::System, user, ceiling, &RequestContext::default())
            .await;
        match created {
            Ok(_) | Err(ServiceError::Invalid { .. }) => Ok(()), // another request made it
            Err(other) => Err(other),
        }
    }

    /// The operator's monthly budget for `user` (a default or the ceiling).
    async fn insert_budget(
        &self,
        actor: Actor,
        user: &UserId,
        limit: byok_router::Money,
        ctx: &RequestContext,
    ) -> Result<BudgetView> {
        let event = ctx
            .event(actor, AuditAction::BudgetCreate, AuditOutcome::Success)
            .user(user)
            .detail("operator_policy");
        let spec = (
            byok_store::budgets::Period::Month,
            None,
            None,
            i64::try_from(limit.picodollars()).unwrap_or(i64::MAX),
            true,
            chrono_tz::UTC,
        );
        self.write_budget(user, spec, event).await
    }

    /// Stores a budget (period, provider, token, limit, hard, zone) and its
    /// audit event; the budget with its current spend.
    async fn write_budget(
        &self,
        user: &UserId,
        (period, provider, token_id, limit, hard, zone): (
            byok_store::budgets::Period,
            Option<ProviderKind>,
            Option<String>,
            i64,
            bool,
            chrono_tz::Tz,
        ),
        event: NewAuditEvent,
    ) -> Result<BudgetView> {
        let (u, at) = (user.clone(), self.now());
        let created = self
            .store
            .run(move |c| {
                let budget = byok_store::budgets::create(
                    c,
                    &byok_store::budgets::NewBudget {
                        user_id: &u,
                        period,
                        provider,
                        token_id: token_id.as_deref(),
                        limit_picodollars: limit,
                        hard,
                        time_zone: zone,
                    },
                    &event,
                    at,
                )?;
                byok_store::budgets::states(c, &u, provider, at)
                    .map(|states| states.into_iter().find(|s| s.budget.id == budget.id))
            })
            .await;
        match created {
            Ok(Some(state)) => {
                self.changed(crate::cache::Change::User(user.clone())).await;
                Ok(state.into())
            }
            Ok(None) | Err(StoreError::NotFound) => Err(ServiceError::UserNotFound),
            Err(StoreError::Conflict) => Err(ServiceError::invalid(
                "budget_exists",
                "there is already a budget for this period and provider; change it instead",
            )),
            Err(other) => Err(other.into()),
        }
    }

    /// Sets a budget on `user`'s spend.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a bad limit or time zone, one above the
    /// operator's ceiling, or a second budget for the same period and
    /// provider (`budget_exists`).
    pub async fn create_budget(
        &self,
        principal: &Principal,
        user: &UserId,
        input: BudgetInput,
        ctx: &RequestContext,
    ) -> Result<BudgetView> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        let limit = self.budget_limit(&input)?;
        let zone = Self::time_zone(input.time_zone.as_deref())?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::BudgetCreate,
                AuditOutcome::Success,
            )
            .user(user);
        let event = match input.provider {
            Some(p) => event.provider(p),
            None => event,
        };
        if let Some(token_id) = &input.token_id {
            let id = token_id.clone();
            let owned = self.store.run(move |c| tokens::find(c, &id)).await?;
            if !owned.is_some_and(|t| t.role == TokenRole::User(user.clone())) {
                return Err(ServiceError::TokenNotFound);
            }
        }
        let spec = (
            input.period,
            input.provider,
            input.token_id,
            limit,
            input.hard,
            zone,
        );
        self.write_budget(user, spec, event).await
    }

    /// Changes `user`'s budget `id` (limit, kind, time zone; its period and
    /// provider stay).
    ///
    /// # Errors
    /// As [`KeyService::create_budget`]; [`ServiceError::BudgetNotFound`].
    pub async fn update_budget(
        &self,
        principal: &Principal,
        user: &UserId,
        id: &str,
        input: BudgetInput,
        ctx: &RequestContext,
    ) -> Result<BudgetView> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        let zone = Self::time_zone(input.time_zone.as_deref())?;
        let (u, budget_id) = (user.clone(), id.to_owned());
        let Some(existing) = self
            .store
            .run(move |c| byok_store::budgets::get(c, &u, &budget_id))
            .await?
        else {
            return Err(ServiceError::BudgetNotFound);
        };
        let limit = self.budget_limit(&BudgetInput {
            period: existing.period,
            provider: existing.provider,
            token_id: existing.token_id.clone(),
            ..input.clone()
        })?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::BudgetUpdate,
                AuditOutcome::Success,
            )
            .user(user);
        let (u, budget_id, at) = (user.clone(), id.to_owned(), self.now());
        let updated = self
            .store
            .run(move |c| {
                let Some(budget) = byok_store::budgets::update(
                    c,
                    &u,
                    &budget_id,
                    (limit, input.hard, zone),
                    &event,
                    at,
                )?
                else {
                    return Ok(None);
                };
                byok_store::budgets::states(c, &u, budget.provider, at)
                    .map(|states| states.into_iter().find(|s| s.budget.id == budget.id))
            })
            .await?;
        self.changed(crate::cache::Change::User(user.clone())).await;
        updated
            .map(BudgetView::from)
            .ok_or(ServiceError::BudgetNotFound)
    }

    /// Removes `user`'s budget `id`.
    ///
    /// # Errors
    /// [`ServiceError::BudgetNotFound`]; [`ServiceError::Invalid`]
    /// (`budget_required`) for the monthly budget an operator ceiling needs.
    pub async fn delete_budget(
        &self,
        principal: &Principal,
        user: &UserId,
        id: &str,
        ctx: &RequestContext,
    ) -> Result<()> {
        self.authorize(principal, user, &[Door::Keys], ctx).await?;
        let (u, budget_id) = (user.clone(), id.to_owned());
        let Some(existing) = self
            .store
            .run(move |c| byok_store::budgets::get(c, &u, &budget_id))
            .await?
        else {
            return Err(ServiceError::BudgetNotFound);
        };
        if self.budget_policy.ceiling_monthly.is_some()
            && existing.period == byok_store::budgets::Period::Month
            && existing.provider.is_none()
            && existing.token_id.is_none()
        {
            return Err(ServiceError::invalid(
                "budget_required",
                "the operator requires a monthly budget; lower or raise it instead",
            ));
        }
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::BudgetDelete,
                AuditOutcome::Success,
            )
            .user(user);
        let (u, budget_id, at) = (user.clone(), id.to_owned(), self.now());
        self.store
            .run(move |c| byok_store::budgets::delete(c, &u, &budget_id, &event, at))
            .await?;
        self.changed(crate::cache::Change::User(user.clone())).await;
        Ok(())
    }

    /// `user`'s own rate limits, set by an operator over the defaults
    /// (admin only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::UserNotFound`].
    pub async fn user_limits(
        &self,
        principal: &Principal,
        user: &UserId,
    ) -> Result<crate::limits::RateLimits> {
        Self::require_admin(principal)?;
        let u = user.clone();
        let (found, limits) = self
            .store
            .run(move |c| {
                Ok((
                    users::find(c, &u)?.is_some(),
                    byok_store::rates::user_limits(c, &u)?,
                ))
            })
            .await?;
        if !found {
            return Err(ServiceError::UserNotFound);
        }
        Ok(limits
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Sets `user`'s own rate limits (admin only); all `None` goes back to
    /// the defaults.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::UserNotFound`],
    /// [`ServiceError::Invalid`] for a zero limit.
    pub async fn set_user_limits(
        &self,
        principal: &Principal,
        user: &UserId,
        limits: crate::limits::RateLimits,
        ctx: &RequestContext,
    ) -> Result<()> {
        Self::require_admin(principal)?;
        limits.check()?;
        let json = (!limits.is_unlimited())
            .then(|| serde_json::to_string(&limits))
            .transpose()
            .map_err(ServiceError::internal)?;
        let event = ctx
            .event(
                principal.actor(),
                AuditAction::UserLimits,
                AuditOutcome::Success,
            )
            .user(user);
        let (u, at) = (user.clone(), self.now());
        let found = self
            .store
            .run(move |c| byok_store::rates::set_user_limits(c, &u, json.as_deref(), &event, at))
            .await?;
        if found {
            self.changed(crate::cache::Change::User(user.clone())).await;
            Ok(())
        } else {
            Err(ServiceError::UserNotFound)
        }
    }

    /// Operator actions that run with the server's own authority (the CLI).
    #[must_use]
    pub fn operator(&self) -> Operator<'_> {
        Operator { service: self }
    }

    /// Checks that every master key id the stored keys name is in the ring,
    /// and that each opens a sample of its keys: a changed master key stops
    /// the server at start-up instead of failing every request later. Then
    /// binds any key sealed before keys had ids to its id.
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
        // Keys sealed before keys had ids are bound to their ids now, before
        // anything is served: afterwards a key opens only with its own id.
        self.operator().bind_key_ids().await?;
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
                if self.vault.open(&sealed, &stored_binding(stored)).is_err() {
                    return Err(MasterKeyCheckError::Wrong(id));
                }
            }
        }
    }
}

/// What a key test tells the key's circuit breaker.
fn test_outcome(
    outcome: &std::result::Result<(), byok_providers::ProviderError>,
    latency: Duration,
) -> byok_router::Outcome {
    match outcome {
        Ok(()) => byok_router::Outcome::Success { latency },
        Err(error) if error.is_auth_failure() => byok_router::Outcome::KeyRejected,
        Err(error) => byok_router::Outcome::Failure {
            retry_after: error.retry_after(),
        },
    }
}

/// The binding a stored key was sealed with: its id, or (keys from before
/// keys had ids, until the start-up upgrade binds them) user and provider only.
fn stored_binding(stored: &StoredKey) -> Binding<'_> {
    if stored.binding_version == keys::BINDING_LEGACY {
        Binding::new(&stored.user_id, stored.provider)
    } else {
        Binding::for_key(&stored.user_id, stored.provider, &stored.id)
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

    /// `user`'s keys, opened, for a passphrase-sealed export (the
    /// operator's command line; audited as the admin `cli`).
    ///
    /// # Errors
    /// As [`KeyService::export_keys`].
    pub async fn export_keys(&self, user: &UserId) -> Result<Vec<byok_vault::ExportedKey>> {
        self.service
            .export_keys(&Self::principal(), user, &RequestContext::default())
            .await
    }

    /// Adds exported keys to `user`'s (the operator's command line).
    ///
    /// # Errors
    /// As [`KeyService::import_keys`].
    pub async fn import_keys(
        &self,
        user: &UserId,
        keys: Vec<byok_vault::ExportedKey>,
    ) -> Result<usize> {
        self.service
            .import_keys(&Self::principal(), user, keys, &RequestContext::default())
            .await
    }

    fn principal() -> Principal {
        Principal::Admin {
            token_id: "cli".to_owned(),
        }
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

    /// Binds every key sealed before keys had ids to its id (envelope
    /// version 2), with a compare-and-set per row; run at start-up, before
    /// serving, so that afterwards a key opens only with its own id (a blob
    /// copied into another row, or a legacy blob put back by SQL, does not).
    /// Returns how many keys were bound; keys that do not open are logged
    /// and left (they were unusable anyway).
    ///
    /// # Errors
    /// A database error.
    pub async fn bind_key_ids(&self) -> Result<u64, StoreError> {
        let service = self.service;
        let active = service.vault.active_key_id().get();
        let mut bound = 0;
        let mut after = String::new();
        loop {
            let from = after.clone();
            let rows = service
                .store
                .run(move |c| keys::legacy_bound_page(c, &from, 500))
                .await?;
            let Some(last) = rows.last() else { break };
            after.clone_from(&last.id);
            for row in rows {
                let Ok(rebound) = service.vault.rebind(
                    &SealedKey::from_bytes(row.sealed_key.clone()),
                    &stored_binding(&row),
                    &Binding::for_key(&row.user_id, row.provider, &row.id),
                ) else {
                    tracing::error!(key_row = %row.id, master_key_id = row.master_key_id, "key does not open; not bound to its id");
                    continue;
                };
                let event = NewAuditEvent::new(
                    Actor::System,
                    AuditAction::KeyRewrap,
                    AuditOutcome::Success,
                )
                .user(&row.user_id)
                .provider(row.provider)
                .detail("bound_to_key_id");
                let owner = row.user_id.clone();
                let swapped = service
                    .store
                    .run(move |c| {
                        keys::swap_sealed(
                            c,
                            &row.id,
                            &row.sealed_key,
                            rebound.as_bytes(),
                            active,
                            &event,
                            now(),
                        )
                    })
                    .await?;
                if swapped {
                    service.changed(crate::cache::Change::User(owner)).await;
                }
                bound += u64::from(swapped);
            }
        }
        if bound > 0 {
            tracing::info!(bound, "stored keys bound to their ids");
        }
        Ok(bound)
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
                let Ok(resealed) = service.vault.rebind(
                    &SealedKey::from_bytes(row.sealed_key.clone()),
                    &stored_binding(&row),
                    &Binding::for_key(&row.user_id, row.provider, &row.id),
                ) else {
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
                let owner = row.user_id.clone();
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
                    service.changed(crate::cache::Change::User(owner)).await;
                    report.rewrapped += 1;
                } else {
                    report.skipped += 1;
                }
            }
        }
        Ok(report)
    }
}
