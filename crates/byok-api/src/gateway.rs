//! The request flow of the gateway, with no HTTP in it: list the user's
//! keys, plan the route, open each candidate's key and call its provider,
//! fall back on retryable failures (never after the first streamed chunk),
//! feed health, and queue the usage record for the background writer.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use byok_core::{
    ApiKey, Capability, ChatChunk, ChatRequest, ChatResponse, CostReport, CostSource,
    EmbeddingRequest, EmbeddingResponse, KeyStatus, ProviderKind, ReasoningEffort, Unsupported,
    Usage, UserId,
};
use byok_providers::{ChatProvider, ChatStream, Credentials, ProviderError};
use byok_router::{
    Candidate, HealthTracker, KeyInfo, Money, Outcome, Preferences, RoutePlan, RoutePlanner,
    RouteRequest, Skipped, Task,
};
use byok_store::keys::{self, StoredKey};
use byok_store::now;
use byok_store::usage::UsageRecord;
use futures_util::{Stream, StreamExt as _};
use serde::Serialize;

use crate::ServiceError;
use crate::service::{KeyService, Principal, RequestContext};
use crate::usage::UsageSender;

/// Output tokens assumed for planning when the request sets no limit.
/// (Anthropic, which needs a limit, is sent 4,096 when none is given.)
const DEFAULT_OUTPUT_BUDGET: u64 = 4096;
/// Most providers tried for one request.
const MAX_ATTEMPTS: usize = 3;

/// One provider (and key) tried, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// The provider.
    pub provider: ProviderKind,
    /// The model.
    pub model: String,
    /// The id of the key used (absent when no key was reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why it failed (a stable code), or `None` for the one that answered.
    pub error: Option<&'static str>,
}

/// Why the gateway could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The gateway is paused by its [`GatewaySwitch`] (byok Desktop's menu).
    #[error("the gateway is paused")]
    Paused,
    /// Only user tokens may use the gateway.
    #[error("the gateway needs a user token")]
    NotAUser,
    /// The requested model is not in the price catalog.
    #[error("no provider serves this model")]
    UnknownModel,
    /// The task is not in the routing policy.
    #[error("no routing policy for this task")]
    UnknownTask,
    /// The request uses a field or capability that none of the user's
    /// providers can honour: a 400, not an outage.
    #[error("no configured provider can honour this request")]
    Unsupported {
        /// Why each option was left out (the mismatches name the field or
        /// capability).
        skipped: Vec<Skipped>,
    },
    /// No provider could be tried.
    #[error("no provider can serve this request")]
    NoCandidate {
        /// Why each option was left out.
        skipped: Vec<Skipped>,
    },
    /// A provider refused the request itself; it was not retried elsewhere.
    #[error("{error}")]
    Rejected {
        /// What was tried.
        attempts: Vec<Attempt>,
        /// The refusal.
        #[source]
        error: ProviderError,
    },
    /// Every candidate failed.
    #[error("every provider failed")]
    AllFailed {
        /// What was tried, in order.
        attempts: Vec<Attempt>,
        /// When every provider that answered was rate-limiting: how long
        /// the longest of them asked to wait (the answer is then a `429`).
        rate_limited: Option<std::time::Duration>,
    },
    /// A rate limit of the user or the token is reached.
    #[error("rate limit reached")]
    RateLimited(crate::limits::RateRefusal),
    /// A hard budget has no room for the request on any candidate.
    #[error("budget exceeded")]
    BudgetExceeded {
        /// The budget that refused (the first one met).
        state: Box<byok_store::budgets::BudgetState>,
        /// What was tried.
        attempts: Vec<Attempt>,
    },
    /// A service failure (database, vault).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Most provider events held before a stream's first piece (a native
/// stream's opening events); past it, the stream is committed to.
const MAX_HELD_EVENTS: usize = 64;

/// A request's input tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// How many.
    pub input_tokens: u64,
    /// Counted by the provider (`true`) or estimated by byok.
    pub exact: bool,
}

/// An answer and how it was obtained.
#[derive(Debug)]
pub struct Answered<T> {
    /// The answer.
    pub value: T,
    /// The provider that answered.
    pub provider: ProviderKind,
    /// The model that answered, as the provider named it (`unknown` when
    /// an Azure deployment named none).
    pub model: String,
    /// What it cost: `None` for streams (known when the stream ends; the
    /// last chunk says) and for models without a price.
    pub cost: Option<Money>,
    /// How `cost` was obtained and the token counts it was computed from;
    /// `None` for streams (their last chunk carries it).
    pub report: Option<CostReport>,
    /// Every provider tried, in order, the answering one last.
    pub attempts: Vec<Attempt>,
    /// Soft budgets this answer goes over, in words (for a header).
    pub budget_warnings: Vec<String>,
}

/// The model an answer is recorded under, and what it cost.
#[derive(Debug, Clone)]
struct Priced {
    /// The model that answered, as the provider named it.
    answered: String,
    /// The catalog row it was priced by, or the answered model when none.
    recorded: String,
    report: CostReport,
}

/// A chat request for the gateway.
#[derive(Debug, Clone)]
pub struct GatewayChat {
    /// The task (routes `model: auto`).
    pub task: Task,
    /// A concrete model id, or `None` for the router's choice.
    pub model: Option<String>,
    /// The conversation and parameters; `model` is filled per candidate.
    pub request: ChatRequest,
    /// The caller's routing preferences for this request.
    pub preferences: Preferences,
    /// The door it came through, as usage records name it: `chat`
    /// (`/v1/chat/completions`), `messages` or `responses`.
    pub door: &'static str,
}

/// Bounds on every wait of a gateway request. A provider that never answers
/// costs at most `attempt` (or `first_byte` for a stream) before the next is
/// tried, and no request outlives `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayLimits {
    /// From the request to its last byte, streams included.
    pub deadline: std::time::Duration,
    /// One attempt at a whole (non-streamed) answer.
    pub attempt: std::time::Duration,
    /// One attempt at a stream, until its first piece.
    pub first_byte: std::time::Duration,
    /// The longest silence between two pieces of a stream.
    pub stall: std::time::Duration,
    /// Requests in flight at once for one user on one provider; more go to
    /// the next provider (a bulkhead: one hanging provider cannot take every
    /// slot before its circuit opens).
    pub per_provider_concurrency: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            deadline: std::time::Duration::from_secs(300),
            attempt: std::time::Duration::from_secs(120),
            first_byte: std::time::Duration::from_secs(30),
            stall: std::time::Duration::from_secs(60),
            per_provider_concurrency: 32,
        }
    }
}

/// In-flight requests per (user, provider).
#[derive(Debug, Default)]
struct Bulkhead {
    in_flight: std::sync::Mutex<std::collections::HashMap<(UserId, ProviderKind), usize>>,
}

/// A slot in the bulkhead, given back when dropped.
struct Slot {
    bulkhead: Arc<Bulkhead>,
    key: (UserId, ProviderKind),
}

impl Bulkhead {
    fn try_enter(
        self: &Arc<Self>,
        user: &UserId,
        provider: ProviderKind,
        cap: usize,
    ) -> Option<Slot> {
        let key = (user.clone(), provider);
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(key.clone()).or_insert(0);
        if *count >= cap {
            return None;
        }
        *count += 1;
        Some(Slot {
            bulkhead: Arc::clone(self),
            key,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .bulkhead
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// One attempt's provider call, owning what it needs.
type AttemptFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// The attempt that answered, and every one before it.
struct Served<T> {
    value: T,
    provider: ProviderKind,
    model: String,
    started: Instant,
    attempts: Vec<Attempt>,
    /// The answering provider's bulkhead slot (held for a stream's life).
    slot: Slot,
    /// Strict durability: the key of the attempt's `incomplete` record.
    record_key: Option<String>,
    /// The id of the key that answered.
    key_id: String,
    /// The budget reservation the answer's usage record settles.
    reservation: Option<String>,
    /// Soft budgets the answer goes over.
    budget_warnings: Vec<String>,
}

/// Pauses and resumes a gateway's doors (`/v1`) while the rest of the API
/// and the settings page keep working: byok Desktop's "Pause the local
/// gateway". Open by default.
#[derive(Debug, Clone)]
pub struct GatewaySwitch(Arc<std::sync::atomic::AtomicBool>);

impl Default for GatewaySwitch {
    fn default() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicBool::new(true)))
    }
}

impl GatewaySwitch {
    /// Stops answering requests (`503 gateway_paused`).
    pub fn pause(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Answers requests again.
    pub fn resume(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether requests are answered.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The gateway: routing, fallback, health and usage over [`KeyService`].
#[derive(Debug, Clone)]
pub struct Gateway {
    switch: GatewaySwitch,
    keys: KeyService,
    planner: Arc<RoutePlanner>,
    usage: UsageSender,
    metrics: Arc<crate::metrics::Metrics>,
    limits: GatewayLimits,
    bulkhead: Arc<Bulkhead>,
    rate_limits: crate::limits::RateLimits,
    streams: Arc<crate::limits::StreamCounts>,
}

struct Prepared {
    user: UserId,
    /// The token the request came with (for its usage).
    token_id: String,
    request_id: Option<String>,
    /// When the request must be over.
    deadline: tokio::time::Instant,
    /// The user's cached state (keys in each provider's order, budgets),
    /// shared, not copied.
    state: Arc<crate::cache::UserState>,
    /// What the token may use.
    scope: Arc<byok_store::tokens::TokenScope>,
    plan: RoutePlan,
    at: chrono::DateTime<chrono::Utc>,
    /// The request's estimated input tokens.
    input_tokens: u64,
    /// The request's own output limit, if it set one.
    max_output: Option<u64>,
    /// Subjects (and the minute) whose tokens-per-minute count the answer's
    /// tokens join.
    rate_subjects: Vec<(String, i64)>,
    /// A stream's places under concurrent-stream limits.
    stream_slots: Option<crate::limits::StreamSlots>,
}

impl Prepared {
    /// The user's enabled keys for the providers the token may use, in
    /// each provider's order.
    fn keys(&self) -> impl Iterator<Item = &StoredKey> + Clone {
        self.state
            .keys
            .iter()
            .filter(|k| k.enabled && self.scope.allows_provider(k.provider))
    }

    /// The user's budgets (a request covered by a hard one reserves its
    /// worst case before each attempt).
    fn budgets(&self) -> &[byok_store::budgets::Budget] {
        &self.state.budgets
    }
}

/// What a failed attempt leads to.
enum AfterFailure {
    /// The provider refused the request itself: another would too.
    Stop(GatewayError),
    /// The key failed (rejected, out of credit, rate limited): try the
    /// provider's next key.
    NextKey,
    /// The provider failed (down, slow, cut off): try the next candidate.
    NextProvider,
}

/// The user, token id and scope a gateway request acts with: a user's token
/// (or a service token acting for the user) whose scope includes the gateway.
fn gateway_caller(
    principal: &Principal,
) -> Result<(&UserId, &str, &Arc<byok_store::tokens::TokenScope>), GatewayError> {
    match principal {
        Principal::User {
            user,
            token_id,
            scope,
            ..
        } => {
            if scope.allows_door(byok_store::tokens::Door::Gateway) {
                Ok((user, token_id, scope))
            } else {
                Err(GatewayError::Service(ServiceError::denied(
                    "token_door_not_allowed",
                    "this token's scope does not include the gateway",
                )))
            }
        }
        Principal::Service { .. } => Err(GatewayError::Service(ServiceError::BadHeader {
            code: "service_token_needs_user",
            message: "a service token must name the user it acts for in X-BYOK-User",
        })),
        Principal::Admin { .. } => Err(GatewayError::NotAUser),
    }
}

/// Why no attempt answered: a hard budget (when budgets refused every
/// candidate that was not skipped anyway), the providers' rate limits, or
/// failures.
fn exhausted(
    attempts: Vec<Attempt>,
    refused_by: Option<byok_store::budgets::BudgetState>,
    waits: &[Option<std::time::Duration>],
) -> GatewayError {
    if let Some(state) = refused_by
        && attempts.iter().all(|a| {
            matches!(
                a.error,
                Some("budget_exceeded" | "circuit_open" | "key_unusable")
            )
        })
    {
        return GatewayError::BudgetExceeded {
            state: Box::new(state),
            attempts,
        };
    }
    let rate_limited = rate_limit_wait(&attempts, waits);
    GatewayError::AllFailed {
        attempts,
        rate_limited,
    }
}

/// When every attempt that reached a provider was refused for rate limits:
/// the longest wait they asked for (a second when none said).
fn rate_limit_wait(
    attempts: &[Attempt],
    waits: &[Option<std::time::Duration>],
) -> Option<std::time::Duration> {
    let reached: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| {
            !matches!(
                a.error,
                Some("circuit_open" | "key_unusable" | "provider_busy" | "budget_exceeded")
            )
        })
        .collect();
    let all_limited = !reached.is_empty()
        && reached
            .iter()
            .all(|a| a.error == Some("provider_rate_limited"));
    all_limited.then(|| {
        waits
            .iter()
            .map(|w| w.unwrap_or(std::time::Duration::from_secs(1)))
            .max()
            .unwrap_or(std::time::Duration::from_secs(1))
    })
}

/// A soft budget an answer goes over, in words (for `X-BYOK-Budget-Warning`).
fn budget_words(state: &byok_store::budgets::BudgetState) -> String {
    let view = crate::service::BudgetView::from(state.clone());
    format!(
        "{}{} budget ${}: {}% used",
        view.period.as_str(),
        view.provider.map_or(String::new(), |p| format!(" {p}")),
        view.limit_usd,
        view.used_percent
    )
}

/// One entry per provider for the planner: its first key that is not known
/// to be bad stands for it.
fn planner_keys<'k>(stored: impl Iterator<Item = &'k StoredKey>) -> Vec<KeyInfo> {
    let mut infos: Vec<KeyInfo> = Vec::new();
    for key in stored {
        let status = key.last_test.as_ref().map(|t| t.status);
        match infos.iter_mut().find(|i| i.provider == key.provider) {
            Some(info) => {
                if matches!(
                    info.status,
                    Some(KeyStatus::Invalid | KeyStatus::Misconfigured | KeyStatus::NoCredit)
                ) && !known_bad(key)
                {
                    info.status = status;
                }
            }
            None => infos.push(KeyInfo {
                provider: key.provider,
                status,
            }),
        }
    }
    infos
}

/// The model a stream answers with: the one it names (Azure names its own),
/// or the one asked for.
fn streamed_model(named: Option<String>, provider: ProviderKind, asked: &str) -> String {
    named.unwrap_or_else(|| {
        if provider == ProviderKind::AzureOpenAi {
            String::new()
        } else {
            asked.to_owned()
        }
    })
}

/// Leaves out the plan's candidates whose model the token may not use.
fn restrict_to_scope(plan: &mut RoutePlan, scope: &byok_store::tokens::TokenScope) {
    if scope.models.is_some() {
        let (allowed, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut plan.candidates)
            .into_iter()
            .partition(|c| scope.allows_model(&c.model));
        plan.candidates = allowed;
        plan.skipped
            .extend(denied.into_iter().map(|c| byok_router::Skipped {
                provider: c.provider,
                model: c.model,
                reason: byok_router::SkipReason::NotInTokenScope,
            }));
    }
}

/// Key statuses a key is skipped for until it is tested again or replaced.
fn known_bad(key: &StoredKey) -> bool {
    matches!(
        key.last_test.as_ref().map(|t| t.status),
        Some(KeyStatus::Invalid | KeyStatus::Misconfigured | KeyStatus::NoCredit)
    )
}

/// A uniform random number in (0, 1].
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 1.0;
    }
    // 53 random bits, as f64 can hold exactly.
    #[expect(clippy::cast_precision_loss, reason = "53 bits fit an f64 exactly")]
    let unit = ((u64::from_le_bytes(bytes) >> 11) + 1) as f64 / (1u64 << 53) as f64;
    unit
}

impl Gateway {
    /// A gateway over `keys`, planning with `planner` and queueing usage on `usage`.
    #[must_use]
    pub fn new(keys: KeyService, planner: Arc<RoutePlanner>, usage: UsageSender) -> Self {
        let mut metrics = crate::metrics::Metrics::default();
        metrics.register_usage(usage.stats());
        metrics.register_key_open_failures(keys.open_failures());
        Self {
            switch: GatewaySwitch::default(),
            keys,
            planner,
            usage,
            metrics: Arc::new(metrics),
            limits: GatewayLimits::default(),
            bulkhead: Arc::default(),
            rate_limits: crate::limits::RateLimits::default(),
            streams: Arc::default(),
        }
    }

    /// The switch that pauses and resumes this gateway.
    #[must_use]
    pub fn switch(&self) -> GatewaySwitch {
        self.switch.clone()
    }

    /// The caller of a gateway request, unless the gateway is paused.
    fn caller<'p>(
        &self,
        principal: &'p Principal,
    ) -> Result<(&'p UserId, &'p str, &'p Arc<byok_store::tokens::TokenScope>), GatewayError> {
        if !self.switch.is_open() {
            return Err(GatewayError::Paused);
        }
        gateway_caller(principal)
    }

    /// Every user's rate limits unless an operator set their own.
    #[must_use]
    pub fn with_rate_limits(mut self, defaults: crate::limits::RateLimits) -> Self {
        self.rate_limits = defaults;
        self
    }

    /// These bounds instead of [`GatewayLimits::default`].
    #[must_use]
    pub fn with_limits(mut self, limits: GatewayLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The bounds in force.
    #[must_use]
    pub fn limits(&self) -> GatewayLimits {
        self.limits
    }

    /// The planner (for reports).
    #[must_use]
    pub fn planner(&self) -> &RoutePlanner {
        &self.planner
    }

    /// The gateway's metrics.
    #[must_use]
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The key service underneath.
    #[must_use]
    pub fn keys(&self) -> &KeyService {
        &self.keys
    }

    /// The health tracker shared with the key service.
    #[must_use]
    pub fn health(&self) -> &HealthTracker {
        self.keys.health()
    }

    /// [`Gateway::prepare`] for a chat request: its estimated input and its
    /// output budget (the request's limit, or a default).
    async fn prepare_chat(
        &self,
        principal: &Principal,
        call: &GatewayChat,
        stream: bool,
    ) -> Result<Prepared, GatewayError> {
        let budget = call
            .request
            .max_output_tokens
            .map_or(DEFAULT_OUTPUT_BUDGET, u64::from);
        let refused = self.refused(|adapter| {
            call.request
                .native_refusal(adapter.kind())
                .or_else(|| adapter.unsupported(&call.request, stream))
        });
        self.prepare(
            principal,
            &call.task,
            call.model.as_deref(),
            estimate_tokens(&call.request),
            (
                budget,
                call.request
                    .max_output_tokens
                    .filter(|_| !call.request.output_ceiling)
                    .map(u64::from),
                stream,
                call.request.output_ceiling,
            ),
            &call.preferences,
            (
                &call.request.needs(),
                &refused,
                call.request.native.as_ref(),
            ),
        )
        .await
    }

    /// The providers whose adapter refuses a field of the request.
    fn refused(
        &self,
        check: impl Fn(&dyn ChatProvider) -> Option<Unsupported>,
    ) -> Vec<(ProviderKind, Unsupported)> {
        let Some(adapters) = self.keys.providers() else {
            return vec![];
        };
        ProviderKind::ALL
            .iter()
            .filter_map(|p| {
                let adapter = adapters.get(*p)?;
                check(adapter.as_ref()).map(|u| (*p, u))
            })
            .collect()
    }

    /// Refuses a request for a model the token may not use, or whose
    /// providers it may not use.
    fn check_model_scope(
        &self,
        scope: &byok_store::tokens::TokenScope,
        model: Option<&str>,
    ) -> Result<(), GatewayError> {
        if let Some(model) = model
            && !scope.allows_model(model)
        {
            return Err(GatewayError::Service(ServiceError::denied(
                "model_not_allowed",
                "this token may not use that model",
            )));
        }
        if let Some(model) = model
            && scope.providers.is_some()
            && self.planner.catalog().models().any(|m| m.model == model)
            && !self
                .planner
                .catalog()
                .models()
                .any(|m| m.model == model && scope.allows_provider(m.provider))
        {
            return Err(GatewayError::Service(ServiceError::denied(
                "provider_not_allowed",
                "this token may not use the providers that serve that model",
            )));
        }
        Ok(())
    }

    #[expect(clippy::too_many_arguments, reason = "one planning input each")]
    async fn prepare(
        &self,
        principal: &Principal,
        task: &Task,
        model: Option<&str>,
        input_tokens: u64,
        (output_budget, max_output, stream, output_ceiling): (u64, Option<u64>, bool, bool),
        preferences: &Preferences,
        (needs, refused, native): (
            &[Capability],
            &[(ProviderKind, Unsupported)],
            Option<&byok_core::NativeRequest>,
        ),
    ) -> Result<Prepared, GatewayError> {
        let (user, token_id, scope) = self.caller(principal)?;
        self.check_model_scope(scope, model)?;
        self.keys.ensure_ceiling_budget(user).await?;
        // From memory once cached: no database read on the hot path.
        let state = self.keys.user_state(user).await?;
        let (rate_subjects, stream_slots) = self
            .admit(user, token_id, scope, state.limits.as_deref(), stream)
            .await?;
        let stored = state
            .keys
            .iter()
            .filter(|k| k.enabled && scope.allows_provider(k.provider));
        let infos = planner_keys(stored.clone());
        // A key whose settings cannot serve this task is not a candidate for
        // it (an Azure key without an embedding deployment, for embeddings).
        let mut refused = refused.to_vec();
        refused.extend(
            stored
                .clone()
                .filter_map(|k| key_cannot_serve(k, task, native).map(|u| (k.provider, u))),
        );
        let refused = refused.as_slice();
        let at = self.keys.now();
        let mut plan = self.planner.plan(
            &RouteRequest {
                task,
                model,
                keys: &infos,
                input_tokens,
                max_output_tokens: output_budget,
                output_ceiling,
                preferences,
                at,
                needs,
                refused,
            },
            &self.health().snapshot_keys(
                user,
                stored.map(|k| (k.provider, k.id.as_str())),
                Instant::now(),
            ),
        );
        restrict_to_scope(&mut plan, scope);
        if plan.candidates.is_empty() {
            return Err(self.no_candidate(plan.skipped, model, task));
        }
        Ok(Prepared {
            user: user.clone(),
            token_id: token_id.to_owned(),
            request_id: None,
            deadline: tokio::time::Instant::now() + self.limits.deadline,
            state,
            scope: Arc::clone(scope),
            plan,
            at,
            input_tokens,
            max_output,
            rate_subjects,
            stream_slots,
        })
    }

    /// Why a request has no candidate: a field or capability none of the
    /// user's providers can honour, an unknown model or task, or no
    /// provider available now.
    fn no_candidate(
        &self,
        skipped: Vec<byok_router::Skipped>,
        model: Option<&str>,
        task: &Task,
    ) -> GatewayError {
        let mismatch = skipped.iter().any(|s| s.reason.is_request_mismatch());
        let only_mismatch = skipped.iter().all(|s| {
            s.reason.is_request_mismatch()
                || matches!(
                    s.reason,
                    byok_router::SkipReason::NoKey
                        | byok_router::SkipReason::Excluded
                        | byok_router::SkipReason::NotInTokenScope
                )
        });
        if mismatch && only_mismatch {
            return GatewayError::Unsupported { skipped };
        }
        if let Some(model) = model
            && !self.planner.catalog().models().any(|m| m.model == model)
        {
            return GatewayError::UnknownModel;
        }
        if model.is_none() && !self.planner.catalog().tasks().any(|t| t == task) {
            return GatewayError::UnknownTask;
        }
        GatewayError::NoCandidate { skipped }
    }

    /// The user's and the token's rate limits: refuses the request when one
    /// is reached; otherwise the subjects whose token counts it joins, and
    /// for a stream its places under concurrent-stream limits.
    async fn admit(
        &self,
        user: &UserId,
        token_id: &str,
        scope: &byok_store::tokens::TokenScope,
        user_limits: Option<&str>,
        stream: bool,
    ) -> Result<(Vec<(String, i64)>, Option<crate::limits::StreamSlots>), GatewayError> {
        let own: crate::limits::RateLimits = user_limits
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        let subjects: Vec<crate::limits::Subject> = [
            crate::limits::Subject {
                key: format!("user:{user}"),
                whose: "user",
                limits: self.rate_limits.overridden_by(own),
            },
            crate::limits::Subject {
                key: format!("token:{token_id}"),
                whose: "token",
                limits: crate::limits::RateLimits::of_token(scope),
            },
        ]
        .into_iter()
        .filter(|s| !s.limits.is_unlimited())
        .collect();
        if subjects.is_empty() {
            return Ok((Vec::new(), None));
        }
        let at = self.keys.now();
        let admitted =
            crate::limits::admit(self.keys.store(), &self.streams, &subjects, at, stream)
                .await
                .map_err(ServiceError::from)?;
        match admitted {
            Ok(slots) => Ok((
                subjects
                    .into_iter()
                    .filter(|s| s.limits.tokens_per_minute.is_some())
                    .map(|s| (s.key, crate::limits::minute(at).0))
                    .collect(),
                slots,
            )),
            Err(refusal) => Err(GatewayError::RateLimited(refusal)),
        }
    }

    /// `provider`'s keys for this request, in the user's order: by
    /// position, keys sharing a position in a random order weighted by their
    /// weights; keys known to be bad (rejected, out of credit) left out.
    fn keys_for(prepared: &Prepared, provider: ProviderKind) -> Vec<&StoredKey> {
        let mut keys: Vec<(i32, f64, &StoredKey)> = prepared
            .keys()
            .filter(|k| k.provider == provider && !known_bad(k))
            .map(|k| {
                // Efraimidis–Spirakis: u^(1/w), largest first.
                let weight = f64::from(k.weight.max(1));
                (k.position, unit_random().powf(1.0 / weight), k)
            })
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        keys.into_iter().map(|(_, _, k)| k).collect()
    }

    fn learn(&self, user: &UserId, key: &StoredKey, error: &ProviderError) {
        let outcome = if error.is_auth_failure() {
            Outcome::KeyRejected
        } else if let ProviderError::RateLimited { .. } = error {
            Outcome::RateLimited {
                retry_after: error.retry_after(),
            }
        } else if error.is_retryable() {
            Outcome::Failure {
                retry_after: error.retry_after(),
            }
        } else {
            // A bad request means the provider is up and answering: it counts
            // as health (and frees a half-open probe slot).
            Outcome::Success {
                latency: std::time::Duration::ZERO,
            }
        };
        if self
            .health()
            .record_key(user, key.provider, &key.id, outcome, Instant::now())
        {
            self.metrics.opened(key.provider);
        }
    }

    /// Health, metrics and the attempt list for the key that answered.
    #[expect(clippy::too_many_arguments, reason = "one fact each")]
    fn succeeded(
        &self,
        user: &UserId,
        provider: ProviderKind,
        key_id: &str,
        model: &str,
        latency: std::time::Duration,
        cost: Option<Money>,
        attempts: &mut Vec<Attempt>,
    ) {
        self.health().record_key(
            user,
            provider,
            key_id,
            Outcome::Success { latency },
            Instant::now(),
        );
        self.metrics.attempt(provider, "success");
        self.metrics
            .answered(provider, latency, cost.unwrap_or(Money::ZERO));
        if !attempts.is_empty() {
            self.metrics.fallback();
        }
        attempts.push(Attempt {
            provider,
            model: model.to_owned(),
            key_id: Some(key_id.to_owned()),
            error: None,
        });
    }

    /// Admission and the opened key for one of a candidate's keys; records
    /// why not in `attempts`.
    fn begin(
        &self,
        prepared: &Prepared,
        key: &StoredKey,
        model: &str,
        attempts: &mut Vec<Attempt>,
    ) -> Option<(ApiKey, Arc<dyn ChatProvider>)> {
        let refuse = |attempts: &mut Vec<Attempt>, error| {
            attempts.push(Attempt {
                provider: key.provider,
                model: model.to_owned(),
                key_id: Some(key.id.clone()),
                error: Some(error),
            });
        };
        if self
            .health()
            .admit_key(&prepared.user, key.provider, &key.id, Instant::now())
            == byok_router::Admission::Denied
        {
            refuse(attempts, "circuit_open");
            return None;
        }
        let Some(opened) = self.keys.open_sealed(key) else {
            tracing::error!(key_id = %key.id, provider = %key.provider, "stored key does not open; skipped");
            refuse(attempts, "key_unusable");
            return None;
        };
        let Some(adapter) = self.keys.providers().and_then(|p| p.get(key.provider)) else {
            refuse(attempts, "key_unusable");
            return None;
        };
        Some((opened, adapter.clone()))
    }

    /// Learns from a failed attempt and says what comes next: a refusal
    /// another provider would repeat ends the request; a key's own failure
    /// (rejected, out of credit, rate limited) moves to the provider's next
    /// key; the provider's failure moves to the next candidate. A rejected
    /// key is also marked in the store (so the page shows it, and a restart
    /// remembers it) — only if it is still the key that was used.
    async fn failed(
        &self,
        prepared: &Prepared,
        key: &StoredKey,
        model: String,
        error: ProviderError,
        attempts: &mut Vec<Attempt>,
    ) -> AfterFailure {
        let provider = key.provider;
        if matches!(error, ProviderError::Timeout { .. }) {
            tracing::warn!(%provider, model, "provider attempt timed out; trying the next");
        }
        self.learn(&prepared.user, key, &error);
        self.metrics.attempt(provider, error.code());
        if error.is_auth_failure() || matches!(error, ProviderError::NoCredit { .. }) {
            let (id, tested) = (key.id.clone(), key.sealed_key.clone());
            let test = keys::KeyTest {
                status: error.key_status(),
                at: now(),
                latency_ms: None,
            };
            let event = byok_store::audit::NewAuditEvent::new(
                byok_store::audit::Actor::System,
                byok_store::audit::AuditAction::KeyUse,
                byok_store::audit::AuditOutcome::Failure,
            )
            .user(&prepared.user)
            .provider(provider)
            .detail(error.code());
            let written = self
                .keys
                .store()
                .run(move |c| keys::record_test_if_unchanged(c, &id, &tested, &test, &event))
                .await;
            match written {
                Ok(true) => {
                    self.keys
                        .changed(crate::cache::Change::User(prepared.user.clone()))
                        .await;
                }
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "could not mark a rejected key invalid"),
            }
        }
        attempts.push(Attempt {
            provider,
            model,
            key_id: Some(key.id.clone()),
            error: Some(error.code()),
        });
        let key_failed = error.is_auth_failure()
            || matches!(
                error,
                ProviderError::NoCredit { .. } | ProviderError::RateLimited { .. }
            );
        if key_failed {
            AfterFailure::NextKey
        } else if error.is_retryable() || matches!(error, ProviderError::IncompleteStream { .. }) {
            AfterFailure::NextProvider
        } else {
            AfterFailure::Stop(GatewayError::Rejected {
                attempts: std::mem::take(attempts),
                error,
            })
        }
    }

    /// The fallback loop every door shares: tries the plan's candidates in
    /// order (at most [`MAX_ATTEMPTS`]) and each candidate's keys in the
    /// user's order, skipping open circuits and keys that do not open,
    /// learning from each failure, moving to the provider's next key when a
    /// key fails and to the next candidate when the provider does, and
    /// stopping at a refusal another provider would repeat.
    async fn attempts<'a, T>(
        &'a self,
        prepared: &'a Prepared,
        (task, door): (&'a Task, &'static str),
        per_attempt: std::time::Duration,
        mut call: impl FnMut(
            Arc<dyn ChatProvider>,
            ApiKey,
            &'a BTreeMap<String, String>,
            &'a Candidate,
        ) -> AttemptFuture<'a, T>,
    ) -> Result<Served<T>, GatewayError> {
        let mut attempts = Vec::new();
        let mut refused_by: Option<byok_store::budgets::BudgetState> = None;
        let mut waits: Vec<Option<std::time::Duration>> = Vec::new();
        'candidates: for candidate in prepared.plan.candidates.iter().take(MAX_ATTEMPTS) {
            let provider = candidate.provider;
            for stored in Self::keys_for(prepared, provider) {
                if tokio::time::Instant::now() >= prepared.deadline {
                    attempts.push(Attempt {
                        provider,
                        model: candidate.model.clone(),
                        key_id: None,
                        error: Some("deadline_exceeded"),
                    });
                    break 'candidates;
                }
                let Some(slot) = self.bulkhead.try_enter(
                    &prepared.user,
                    provider,
                    self.limits.per_provider_concurrency,
                ) else {
                    attempts.push(Attempt {
                        provider,
                        model: candidate.model.clone(),
                        key_id: None,
                        error: Some("provider_busy"),
                    });
                    continue 'candidates;
                };
                let Some((key, adapter)) =
                    self.begin(prepared, stored, &candidate.model, &mut attempts)
                else {
                    continue;
                };
                let booked = self.book(prepared, candidate, (task, door)).await?;
                let (reservation, budget_warnings, record_key) = match booked {
                    Ok(booked) => booked,
                    Err(state) => {
                        attempts.push(Attempt {
                            provider,
                            model: candidate.model.clone(),
                            key_id: None,
                            error: Some("budget_exceeded"),
                        });
                        refused_by.get_or_insert(state);
                        continue 'candidates;
                    }
                };
                let started = Instant::now();
                let until = prepared
                    .deadline
                    .min(tokio::time::Instant::now() + per_attempt);
                let result =
                    tokio::time::timeout_at(until, call(adapter, key, &stored.settings, candidate))
                        .await
                        .unwrap_or(Err(ProviderError::Timeout { provider }));
                let error = match result {
                    Ok(value) => {
                        return Ok(Served {
                            value,
                            provider,
                            model: candidate.model.clone(),
                            started,
                            attempts,
                            slot,
                            record_key,
                            key_id: stored.id.clone(),
                            reservation,
                            budget_warnings,
                        });
                    }
                    Err(error) => error,
                };
                drop(slot);
                self.abandon(reservation, record_key).await;
                if let ProviderError::RateLimited { .. } = &error {
                    waits.push(error.retry_after());
                }
                match self
                    .failed(
                        prepared,
                        stored,
                        candidate.model.clone(),
                        error,
                        &mut attempts,
                    )
                    .await
                {
                    AfterFailure::Stop(rejected) => return Err(rejected),
                    AfterFailure::NextKey => {}
                    AfterFailure::NextProvider => continue 'candidates,
                }
            }
        }
        Err(exhausted(attempts, refused_by, &waits))
    }

    /// Before an attempt: its budget reservation (or the budget that has no
    /// room), soft-budget warnings, and in strict durability its
    /// `incomplete` record.
    async fn book(
        &self,
        prepared: &Prepared,
        candidate: &Candidate,
        (task, door): (&Task, &'static str),
    ) -> Result<
        Result<(Option<String>, Vec<String>, Option<String>), byok_store::budgets::BudgetState>,
        GatewayError,
    > {
        let (reservation, warnings) = match self.reserve(prepared, candidate).await? {
            Ok(held) => held,
            Err(state) => return Ok(Err(state)),
        };
        match self.begin_record(prepared, candidate, (task, door)).await {
            Ok(record_key) => Ok(Ok((reservation, warnings, record_key))),
            Err(error) => {
                self.release(reservation).await;
                Err(error)
            }
        }
    }

    /// Reserves `candidate`'s worst-case cost against the user's hard
    /// budgets covering its provider: the input estimate plus the request's
    /// output limit (or, without one, the model's largest output) at the
    /// model's price. `Ok((None, …))` when no budget covers it; `Err` with
    /// the budget that has no room.
    async fn reserve(
        &self,
        prepared: &Prepared,
        candidate: &Candidate,
    ) -> Result<Result<(Option<String>, Vec<String>), byok_store::budgets::BudgetState>, GatewayError>
    {
        if !prepared
            .budgets()
            .iter()
            .any(|b| b.covers(candidate.provider, Some(&prepared.token_id)))
        {
            return Ok(Ok((None, Vec::new())));
        }
        let catalog = self.planner.catalog();
        let output = prepared.max_output.unwrap_or_else(|| {
            catalog
                .get(candidate.provider, &candidate.model)
                .and_then(|m| m.max_output)
                .unwrap_or(DEFAULT_OUTPUT_BUDGET)
        });
        let worst = catalog
            .estimate(
                candidate.provider,
                &candidate.model,
                prepared.input_tokens,
                output,
                prepared.at,
            )
            .map_or(candidate.estimated_cost, |m| {
                m.max(candidate.estimated_cost)
            });
        let amount = i64::try_from(worst.picodollars()).unwrap_or(i64::MAX);
        // Past the request's deadline, with room for a delayed usage batch.
        let expires = prepared.at
            + chrono::Duration::from_std(self.limits.deadline).unwrap_or_default()
            + chrono::Duration::minutes(5);
        let (user, token, provider, at) = (
            prepared.user.clone(),
            prepared.token_id.clone(),
            candidate.provider,
            prepared.at,
        );
        let reserved = self
            .keys
            .store()
            .run(move |c| {
                byok_store::budgets::reserve(
                    c,
                    (&user, Some(&token)),
                    provider,
                    amount,
                    at,
                    expires,
                )
            })
            .await
            .map_err(ServiceError::from)?;
        Ok(match reserved {
            byok_store::budgets::Reserved::Held { id, over_soft } => {
                Ok((Some(id), over_soft.iter().map(budget_words).collect()))
            }
            byok_store::budgets::Reserved::Refused(state) => Err(state),
        })
    }

    /// After an attempt without an answer: its reservation given back, its
    /// `incomplete` record removed.
    async fn abandon(&self, reservation: Option<String>, record_key: Option<String>) {
        self.release(reservation).await;
        if let Some(key) = record_key {
            self.usage.discard(key).await;
        }
    }

    /// Gives back a reservation whose attempt got no answer.
    async fn release(&self, reservation: Option<String>) {
        let Some(id) = reservation else { return };
        let released = self
            .keys
            .store()
            .run(move |c| byok_store::budgets::release(c, &id))
            .await;
        if let Err(error) = released {
            // It expires on its own.
            tracing::warn!(%error, "could not release a budget reservation");
        }
    }

    /// Strict durability: the `incomplete` record written before `candidate`
    /// is called (a crash during the call leaves it), and its key.
    async fn begin_record(
        &self,
        prepared: &Prepared,
        candidate: &Candidate,
        (task, door): (&Task, &'static str),
    ) -> Result<Option<String>, GatewayError> {
        if self.usage.durability() != crate::usage::Durability::Strict {
            return Ok(None);
        }
        let key = uuid::Uuid::new_v4().simple().to_string();
        let mut record = usage_record(
            &prepared.user,
            candidate.provider,
            &Priced {
                answered: candidate.model.clone(),
                recorded: candidate.model.clone(),
                report: CostReport {
                    picodollars: None,
                    source: CostSource::Unknown,
                    usage: Usage::default(),
                },
            },
            (task, door),
            0,
            std::time::Duration::ZERO,
            "incomplete",
            &RequestContext {
                request_id: prepared.request_id.clone(),
            },
        );
        record.record_key = Some(key.clone());
        record.token_id = Some(prepared.token_id.clone());
        self.usage
            .commit(record, prepared.deadline)
            .await
            .map_err(|e| GatewayError::Service(ServiceError::from(e)))?;
        Ok(Some(key))
    }

    /// The request as `candidate` gets it: its model id, and `reasoning_effort:
    /// none` dropped for a model that does not reason (it already honours it).
    fn request_for(&self, request: &ChatRequest, candidate: &Candidate) -> ChatRequest {
        let mut request = request.clone();
        request.model.clone_from(&candidate.model);
        let row = self
            .planner
            .catalog()
            .get(candidate.provider, &candidate.model);
        let reasons = row.is_some_and(|m| m.capabilities.contains(&Capability::Reasoning));
        // A ceiling above the model's own limit: the model's limit applies.
        if request.output_ceiling
            && let (Some(asked), Some(most)) =
                (request.max_output_tokens, row.and_then(|m| m.max_output))
        {
            request.max_output_tokens = Some(asked.min(u32::try_from(most).unwrap_or(u32::MAX)));
        }
        if request.reasoning == Some(ReasoningEffort::None) && !reasons {
            request.reasoning = None;
        }
        // An effort left to the model applies where the model reasons.
        if request.reasoning.is_none() && reasons {
            request.reasoning = request.reasoning_hint;
        }
        request
    }

    /// A whole chat answer, with fallback.
    ///
    /// # Errors
    /// [`GatewayError`]: no candidate, a provider's refusal, or every attempt failing.
    pub async fn chat(
        &self,
        principal: &Principal,
        call: GatewayChat,
        ctx: &RequestContext,
    ) -> Result<Answered<ChatResponse>, GatewayError> {
        let mut prepared = self.prepare_chat(principal, &call, false).await?;
        prepared.request_id.clone_from(&ctx.request_id);
        let request = &call.request;
        let served = self
            .attempts(
                &prepared,
                (&call.task, call.door),
                self.limits.attempt,
                |adapter, key, settings, candidate| {
                    let request = self.request_for(request, candidate);
                    Box::pin(async move {
                        adapter
                            .chat(
                                Credentials {
                                    key: &key,
                                    settings,
                                },
                                &request,
                            )
                            .await
                    })
                },
            )
            .await?;
        let priced = self.price(
            served.provider,
            &served.value.model,
            served.value.usage,
            prepared.at,
            || estimate_chat(served.provider, request, &served.value),
        );
        self.settle(&prepared, &call.task, call.door, served, priced, ctx)
            .await
    }

    /// A streamed chat answer. Fallback happens only until a provider's
    /// first chunk arrives; after that the stream is committed. Usage is
    /// recorded when the stream ends (or, if the client goes away, when it is
    /// dropped — which also cancels the upstream request).
    ///
    /// # Errors
    /// As [`Gateway::chat`].
    pub async fn chat_stream(
        &self,
        principal: &Principal,
        call: GatewayChat,
        ctx: &RequestContext,
    ) -> Result<Answered<ChatStream>, GatewayError> {
        let mut prepared = self.prepare_chat(principal, &call, true).await?;
        prepared.request_id.clone_from(&ctx.request_id);
        let request = &call.request;
        let served = self
            .attempts(
                &prepared,
                (&call.task, call.door),
                self.limits.first_byte,
                |adapter, key, settings, candidate| {
                    let request = self.request_for(request, candidate);
                    let provider = candidate.provider;
                    Box::pin(async move {
                        let mut stream = adapter
                            .chat_stream(
                                Credentials {
                                    key: &key,
                                    settings,
                                },
                                &request,
                            )
                            .await?;
                        drop(key);
                        let (opening, named) = stream_opening(&mut stream, provider).await?;
                        Ok((opening, named, stream))
                    })
                },
            )
            .await?;
        let Served {
            value: (opening, named, stream),
            provider,
            model,
            started,
            mut attempts,
            slot,
            record_key,
            key_id,
            reservation,
            budget_warnings,
        } = served;
        let answered = streamed_model(named, provider, &model);
        self.succeeded(
            &prepared.user,
            provider,
            &key_id,
            &model,
            started.elapsed(),
            None,
            &mut attempts,
        );
        let tracked = Tracked {
            opening,
            inner: stream,
            usage: None,
            output: String::new(),
            finished: false,
            deadline: prepared.deadline,
            stall: self.limits.stall,
            provider,
            _slot: slot,
            _streams: prepared.stream_slots.take(),
            pending: Some(Pending {
                user: prepared.user.clone(),
                provider,
                answered: answered.clone(),
                task: call.task.clone(),
                door: call.door,
                attempts: attempts.len(),
                started,
                request_id: ctx.request_id.clone(),
                at: prepared.at,
                request: Arc::new(call.request),
                record_key,
                token_id: prepared.token_id.clone(),
                reservation,
                rate_subjects: prepared.rate_subjects.clone(),
                budgeted: !prepared.budgets().is_empty(),
            }),
            gateway: self.clone(),
        };
        Ok(Answered {
            value: Box::pin(tracked.into_stream()),
            provider,
            model: display_model(&answered),
            cost: None,
            report: None,
            attempts,
            budget_warnings,
        })
    }

    /// A request's input tokens: counted by Anthropic (free) with the user's
    /// first working Anthropic key when the token may use it, otherwise
    /// byok's estimate, which says so. Not a model call: nothing is recorded.
    ///
    /// # Errors
    /// A caller that is not a user, or a model the token may not use.
    pub async fn count_tokens(
        &self,
        principal: &Principal,
        model: Option<&str>,
        request: &ChatRequest,
    ) -> Result<TokenCount, GatewayError> {
        let (user, _, scope) = self.caller(principal)?;
        self.check_model_scope(scope, model)?;
        let provider = ProviderKind::Anthropic;
        let catalog = self.planner.catalog();
        // Exact only for the Anthropic model asked for; for another model
        // (or `auto`) Anthropic's count is itself an estimate of it.
        let asked_anthropic = model.is_some_and(|m| catalog.get(provider, m).is_some());
        let counting_model = model
            .filter(|m| catalog.get(provider, m).is_some())
            .or_else(|| {
                catalog
                    .models()
                    .find(|m| m.provider == provider)
                    .map(|m| m.model.as_str())
            });
        let state = self.keys.user_state(user).await?;
        let key = state.keys.iter().find(|k| {
            k.provider == provider && k.enabled && scope.allows_provider(provider) && !known_bad(k)
        });
        if let (Some(key), Some(counting_model)) = (key, counting_model)
            && let Some(opened) = self.keys.open_sealed(key)
            && let Some(adapter) = self.keys.providers().and_then(|p| p.get(provider))
        {
            let mut request = request.clone();
            counting_model.clone_into(&mut request.model);
            let counted = tokio::time::timeout(
                self.limits.attempt,
                adapter.count_tokens(
                    Credentials {
                        key: &opened,
                        settings: &key.settings,
                    },
                    &request,
                ),
            )
            .await;
            match counted {
                Ok(Ok(Some(input_tokens))) => {
                    return Ok(TokenCount {
                        input_tokens,
                        exact: asked_anthropic,
                    });
                }
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, "Anthropic could not count tokens; estimated");
                }
                Err(_) => tracing::warn!("Anthropic's token count timed out; estimated"),
            }
        }
        Ok(TokenCount {
            input_tokens: byok_router::estimate::tokens(provider, request_texts(request)).0,
            exact: false,
        })
    }

    /// Embeddings (task `embeddings`), with fallback.
    ///
    /// # Errors
    /// As [`Gateway::chat`].
    pub async fn embed(
        &self,
        principal: &Principal,
        model: Option<String>,
        request: EmbeddingRequest,
        preferences: &Preferences,
        ctx: &RequestContext,
    ) -> Result<Answered<EmbeddingResponse>, GatewayError> {
        let task = Task::new(Task::EMBEDDINGS).map_err(|_| GatewayError::UnknownModel)?;
        let input: u64 = request
            .inputs
            .iter()
            .map(|t| (t.len() as u64).div_ceil(4))
            .sum();
        let refused = self.refused(|adapter| adapter.unsupported_embedding(&request));
        let prepared = self
            .prepare(
                principal,
                &task,
                model.as_deref(),
                input,
                (0, Some(0), false, false),
                preferences,
                (&[], &refused, None),
            )
            .await?;
        let mut prepared = prepared;
        prepared.request_id.clone_from(&ctx.request_id);
        let request = &request;
        let served = self
            .attempts(
                &prepared,
                (&task, "embeddings"),
                self.limits.attempt,
                |adapter, key, settings, candidate| {
                    let mut call = request.clone();
                    call.model.clone_from(&candidate.model);
                    Box::pin(async move {
                        adapter
                            .embed(
                                Credentials {
                                    key: &key,
                                    settings,
                                },
                                &call,
                            )
                            .await
                    })
                },
            )
            .await?;
        let usage = served.value.input_tokens.map(|input_tokens| Usage {
            input_tokens,
            ..Usage::default()
        });
        let provider = served.provider;
        let priced = self.price(provider, &served.value.model, usage, prepared.at, || {
            Usage {
                input_tokens: byok_router::estimate::tokens(
                    provider,
                    request.inputs.iter().map(String::as_str),
                )
                .0,
                ..Usage::default()
            }
        });
        self.settle(&prepared, &task, "embeddings", served, priced, ctx)
            .await
    }

    /// Health, metrics and the usage record of a whole answer; the answer
    /// with its cost.
    async fn settle<T>(
        &self,
        prepared: &Prepared,
        task: &Task,
        door: &str,
        served: Served<T>,
        priced: Priced,
        ctx: &RequestContext,
    ) -> Result<Answered<T>, GatewayError> {
        let Served {
            value,
            provider,
            model,
            started,
            mut attempts,
            slot,
            record_key,
            key_id,
            reservation,
            budget_warnings,
        } = served;
        drop(slot);
        let latency = started.elapsed();
        let cost = priced.report.picodollars.map(Money::from_picodollars);
        self.succeeded(
            &prepared.user,
            provider,
            &key_id,
            &model,
            latency,
            cost,
            &mut attempts,
        );
        let mut record = usage_record(
            &prepared.user,
            provider,
            &priced,
            (task, door),
            attempts.len(),
            latency,
            "success",
            ctx,
        );
        record.token_id = Some(prepared.token_id.clone());
        // Writing the record settles the reservation to the exact cost.
        record.reservation_id = reservation;
        record.rate_subjects.clone_from(&prepared.rate_subjects);
        record.budgeted = !prepared.budgets().is_empty();
        if record_key.is_some() {
            // Strict: committed (over the incomplete record) before the answer goes out.
            record.record_key = record_key;
            self.usage
                .commit(record, prepared.deadline)
                .await
                .map_err(|e| GatewayError::Service(ServiceError::from(e)))?;
        } else {
            self.usage.record(record).await;
        }
        Ok(Answered {
            value,
            provider,
            model: display_model(&priced.answered),
            cost,
            report: Some(priced.report),
            attempts,
            budget_warnings,
        })
    }

    /// Raises a `model.retiring` alert, once per user, provider, model and
    /// date, for every model in the routing policy that its provider retires
    /// within the catalog's warning period, to every user with a key for
    /// that provider. Returns how many alerts were added.
    ///
    /// # Errors
    /// A database error.
    pub async fn retirement_alerts(&self) -> Result<usize, ServiceError> {
        let at = self.keys.now();
        let today = at.date_naive();
        let retiring = crate::reports::retiring_models(self.planner.catalog(), today);
        if retiring.is_empty() {
            return Ok(0);
        }
        let added = self
            .keys
            .store()
            .run(move |c| {
                let mut added = 0;
                for (user, provider) in keys::users_by_provider(c)? {
                    for (_, model, date, days) in retiring.iter().filter(|r| r.0 == provider) {
                        let body = serde_json::json!({
                            "event": "model.retiring",
                            "user_id": user.as_str(),
                            "provider": provider,
                            "model": model,
                            "retires_on": date,
                            "days_left": (*days).max(0),
                        });
                        let key = format!("model.retiring:{user}:{provider}:{model}:{date}");
                        if byok_store::alerts::enqueue_once(
                            c,
                            "model.retiring",
                            Some(&user),
                            &body,
                            &key,
                            at,
                        )? {
                            added += 1;
                        }
                    }
                }
                Ok(added)
            })
            .await?;
        Ok(added)
    }

    /// The catalog's models the user's providers can serve.
    ///
    /// # Errors
    /// [`GatewayError::NotAUser`] or a database error.
    pub async fn models(
        &self,
        principal: &Principal,
    ) -> Result<Vec<(ProviderKind, String)>, GatewayError> {
        let (user, _, scope) = self.caller(principal)?;
        let state = self.keys.user_state(user).await?;
        let stored: Vec<&StoredKey> = state
            .keys
            .iter()
            .filter(|k| k.enabled && scope.allows_provider(k.provider))
            .collect();
        Ok(self
            .planner
            .catalog()
            .models()
            .filter(|m| scope.allows_model(&m.model))
            .filter(|m| {
                stored.iter().any(|k| {
                    k.provider == m.provider
                        && (m.tasks.is_empty()
                            || m.tasks
                                .iter()
                                .any(|t| key_cannot_serve(k, t, None).is_none()))
                })
            })
            .map(|m| (m.provider, m.model.clone()))
            .collect())
    }

    /// What an answer from `provider`, naming `answered` as its model,
    /// cost: from the provider's `usage` (exact), or from `estimate` when it
    /// reported none (estimated); unknown when the model has no price —
    /// never another model's price, never zero.
    fn price(
        &self,
        provider: ProviderKind,
        answered: &str,
        usage: Option<Usage>,
        at: chrono::DateTime<chrono::Utc>,
        estimate: impl FnOnce() -> Usage,
    ) -> Priced {
        let (usage, source) = match usage {
            Some(usage) => (usage, CostSource::Exact),
            None => (estimate(), CostSource::Estimated),
        };
        let row = self.priced_model(provider, answered);
        let cost = row
            .as_deref()
            .and_then(|row| self.planner.catalog().cost(provider, row, &usage, at).ok());
        if cost.is_none() {
            tracing::warn!(
                %provider,
                model = answered,
                "answer from a model without a price; cost recorded as unknown"
            );
        }
        Priced {
            answered: answered.to_owned(),
            recorded: row.unwrap_or_else(|| display_model(answered)),
            report: CostReport {
                picodollars: cost.map(Money::picodollars),
                source: if cost.is_some() {
                    source
                } else {
                    CostSource::Unknown
                },
                usage,
            },
        }
    }

    /// The catalog row for the model a provider says answered: exact, or the
    /// longest catalog id it is a dated snapshot of (`gpt-4o-2024-11-20` is
    /// `gpt-4o`); `None` otherwise (an Azure deployment's model byok has no
    /// price for, or none named).
    fn priced_model(&self, provider: ProviderKind, reported: &str) -> Option<String> {
        let catalog = self.planner.catalog();
        if reported.is_empty() {
            return None;
        }
        if catalog.get(provider, reported).is_some() {
            return Some(reported.to_owned());
        }
        catalog
            .models()
            .filter(|m| {
                m.provider == provider
                    && reported
                        .strip_prefix(m.model.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|m| m.model.len())
            .map(|m| m.model.clone())
    }
}

/// A stream's first piece, and what came before it: the model it names,
/// and a provider's own events (a native door), held until a piece of the
/// answer comes, so an error before it (an overloaded Anthropic, a failed
/// OpenAI response) still falls back to the next provider.
async fn stream_opening(
    stream: &mut ChatStream,
    provider: ProviderKind,
) -> Result<(std::collections::VecDeque<ChatChunk>, Option<String>), ProviderError> {
    let mut named = None;
    let mut opening = std::collections::VecDeque::new();
    loop {
        match stream.next().await {
            Some(Ok(ChatChunk::Model(model))) => named = Some(model),
            Some(Ok(event @ ChatChunk::Native(_))) if opening.len() < MAX_HELD_EVENTS => {
                opening.push_back(event);
            }
            Some(Ok(first)) => {
                opening.push_back(first);
                return Ok((opening, named));
            }
            Some(Err(error)) => return Err(error),
            None => return Err(ProviderError::IncompleteStream { provider }),
        }
    }
}

/// Why `key` cannot serve `task` (or the client's own request), if it cannot.
fn key_cannot_serve(
    key: &StoredKey,
    task: &Task,
    native: Option<&byok_core::NativeRequest>,
) -> Option<Unsupported> {
    // An Azure key on an API version without the Responses API gets the
    // Chat Completions translation, which cannot carry what only that API has.
    if key.provider == ProviderKind::AzureOpenAi
        && let Some(native) = native
        && native.api == byok_core::NativeApi::OpenAiResponses
        && !byok_providers::azure_serves_responses(&key.settings)
        && let Some(field) = native.only.first()
    {
        return Some(Unsupported::new(
            field.clone(),
            "this Azure OpenAI key's API version has no Responses API (use api_version v1)",
        ));
    }
    (key.provider == ProviderKind::AzureOpenAi
        && task.as_str() == Task::EMBEDDINGS
        && !key.settings.contains_key("embedding_deployment"))
    .then(|| {
        Unsupported::new(
            "input",
            "this Azure OpenAI key has no embedding deployment (add embedding_deployment to its settings)",
        )
    })
}

/// The model name people see: `unknown` when the provider named none.
fn display_model(answered: &str) -> String {
    if answered.is_empty() {
        "unknown".to_owned()
    } else {
        answered.to_owned()
    }
}

/// The texts of a request, for token estimates.
fn request_texts(request: &ChatRequest) -> impl Iterator<Item = &str> {
    request
        .system
        .as_deref()
        .into_iter()
        .chain(request.messages.iter().flat_map(|m| {
            m.content
                .iter()
                .filter_map(|p| match p {
                    byok_core::ContentPart::Text(t) => Some(t.as_str()),
                    byok_core::ContentPart::Image { .. } => None,
                })
                .chain(m.tool_calls.iter().map(|c| c.arguments.as_str()))
        }))
}

/// Estimated usage of a whole answer that reported none.
fn estimate_chat(provider: ProviderKind, request: &ChatRequest, answer: &ChatResponse) -> Usage {
    let input = byok_router::estimate::tokens(provider, request_texts(request)).0;
    let output = byok_router::estimate::tokens(
        provider,
        answer.choices.iter().flat_map(|c| {
            std::iter::once(c.text.as_str())
                .chain(c.reasoning.as_deref())
                .chain(c.tool_calls.iter().map(|t| t.arguments.as_str()))
        }),
    )
    .0;
    Usage {
        input_tokens: input,
        output_tokens: output,
        ..Usage::default()
    }
}

/// Input tokens, estimated at four characters a token.
fn estimate_tokens(request: &ChatRequest) -> u64 {
    let message = |m: &byok_core::ChatMessage| {
        m.content
            .iter()
            .map(|p| match p {
                byok_core::ContentPart::Text(t) => t.len(),
                // A picture is billed in tiles, not bytes: about a thousand tokens.
                byok_core::ContentPart::Image { .. } => 4096,
            })
            .sum::<usize>()
            + m.tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>()
    };
    let tools: usize = request
        .tools
        .iter()
        .map(|t| {
            t.name.len()
                + t.description.as_ref().map_or(0, String::len)
                + t.parameters.as_ref().map_or(0, |p| p.to_string().len())
        })
        .sum();
    let chars: usize = request.system.as_ref().map_or(0, String::len)
        + request.messages.iter().map(message).sum::<usize>()
        + tools;
    (chars as u64).div_ceil(4)
}

#[expect(clippy::too_many_arguments, reason = "one flat record")]
fn usage_record(
    user: &UserId,
    provider: ProviderKind,
    priced: &Priced,
    (task, door): (&Task, &str),
    attempts: usize,
    latency: std::time::Duration,
    outcome: &str,
    ctx: &RequestContext,
) -> UsageRecord {
    let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let usage = &priced.report.usage;
    let cost = priced.report.picodollars.map(Money::from_picodollars);
    UsageRecord {
        user_id: user.clone(),
        provider,
        model: priced.recorded.clone(),
        task: task.to_string(),
        input_tokens: int(usage.input_tokens),
        cached_input_tokens: int(usage.cached_input_tokens),
        cache_write_tokens: int(usage.cache_write_tokens),
        cache_write_1h_tokens: int(usage.cache_write_1h_tokens),
        output_tokens: int(usage.output_tokens),
        reasoning_tokens: int(usage.reasoning_tokens),
        cost_micro_usd: cost.map(|c| int(c.micro_usd_rounded())),
        cost_picodollars: cost.map(|c| int(c.picodollars())),
        cost_source: priced.report.source,
        door: door.to_owned(),
        record_key: None,
        token_id: None,
        reservation_id: None,
        rate_subjects: Vec::new(),
        budgeted: false,
        attempts: i32::try_from(attempts).unwrap_or(i32::MAX),
        latency_ms: int(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX)),
        outcome: outcome.to_owned(),
        request_id: ctx.request_id.clone(),
        created_at: now(),
    }
}

/// What to record when a stream ends.
struct Pending {
    user: UserId,
    provider: ProviderKind,
    /// The model the stream names (updated if it names another).
    answered: String,
    task: Task,
    door: &'static str,
    attempts: usize,
    started: Instant,
    request_id: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
    /// The request, kept to estimate its tokens if the provider never
    /// reports usage (a stream cut short): such streams are billed too.
    request: Arc<ChatRequest>,
    /// Strict durability: the key of the stream's `incomplete` record.
    record_key: Option<String>,
    /// The token the request came with.
    token_id: String,
    /// The budget reservation the stream's record settles.
    reservation: Option<String>,
    /// Rate-limit subjects (and the minute) whose token counts the stream joins.
    rate_subjects: Vec<(String, i64)>,
    /// Whether the user had budgets when the stream began.
    budgeted: bool,
}

/// A committed stream that keeps the usage it sees, records it once, and
/// ends with what the answer cost.
struct Tracked {
    /// The pieces read before the stream was committed to, in order.
    opening: std::collections::VecDeque<ChatChunk>,
    inner: ChatStream,
    usage: Option<Usage>,
    /// The answer relayed so far, for an estimate when no usage comes.
    output: String,
    finished: bool,
    /// When the request must be over, and the longest silence allowed.
    deadline: tokio::time::Instant,
    stall: std::time::Duration,
    provider: ProviderKind,
    /// The provider's bulkhead slot, held until the stream ends.
    _slot: Slot,
    /// Places under concurrent-stream limits, held until the stream ends.
    _streams: Option<crate::limits::StreamSlots>,
    pending: Option<Pending>,
    gateway: Gateway,
}

impl Tracked {
    /// The final usage record, once, and what the answer cost.
    fn final_record(&mut self, outcome: &str) -> Option<(UsageRecord, CostReport)> {
        let pending = self.pending.take()?;
        let output = std::mem::take(&mut self.output);
        let priced = self.gateway.price(
            pending.provider,
            &pending.answered,
            self.usage,
            pending.at,
            || Usage {
                input_tokens: byok_router::estimate::tokens(
                    pending.provider,
                    request_texts(&pending.request),
                )
                .0,
                output_tokens: byok_router::estimate::tokens(pending.provider, [output.as_str()]).0,
                ..Usage::default()
            },
        );
        if let Some(cost) = priced.report.picodollars {
            self.gateway
                .metrics
                .spent(pending.provider, Money::from_picodollars(cost));
        }
        let ctx = RequestContext {
            request_id: pending.request_id.clone(),
        };
        let mut record = usage_record(
            &pending.user,
            pending.provider,
            &priced,
            (&pending.task, pending.door),
            pending.attempts,
            pending.started.elapsed(),
            outcome,
            &ctx,
        );
        record.record_key = pending.record_key;
        record.token_id = Some(pending.token_id);
        record.reservation_id = pending.reservation;
        record.rate_subjects = pending.rate_subjects;
        record.budgeted = pending.budgeted;
        Some((record, priced.report))
    }

    /// Queues the usage record, once, without waiting (a stream's end must
    /// not be cancellable between taking the record and sending it).
    fn record(&mut self, outcome: &str) -> Option<CostReport> {
        let (record, report) = self.final_record(outcome)?;
        self.gateway.usage.record_now(record);
        Some(report)
    }

    /// The stream's end: in strict durability its record is committed before
    /// the last byte goes out; otherwise queued.
    async fn settle(&mut self) -> Option<CostReport> {
        let (record, report) = self.final_record("success")?;
        if record.record_key.is_some() {
            if let Err(error) = self
                .gateway
                .usage
                .commit(record.clone(), self.deadline)
                .await
            {
                tracing::error!(%error, "a streamed answer's usage could not be committed; queued");
                self.gateway.usage.record_now(record);
            }
        } else {
            self.gateway.usage.record_now(record);
        }
        Some(report)
    }

    fn into_stream(self) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send + 'static {
        futures_util::stream::unfold(self, |mut state| async move {
            if state.finished {
                return None;
            }
            let item = if let Some(first) = state.opening.pop_front() {
                Some(Ok(first))
            } else {
                // A stall or the request's deadline ends the stream.
                let until = state
                    .deadline
                    .min(tokio::time::Instant::now() + state.stall);
                tokio::time::timeout_at(until, state.inner.next())
                    .await
                    .unwrap_or_else(|_| {
                        tracing::warn!(
                            provider = %state.provider,
                            "stream stalled or passed the request deadline; ended"
                        );
                        Some(Err(ProviderError::Timeout {
                            provider: state.provider,
                        }))
                    })
            };
            match item {
                Some(Ok(chunk)) => {
                    match &chunk {
                        ChatChunk::Usage(usage) => state.usage = Some(*usage),
                        ChatChunk::Text(text)
                        | ChatChunk::Reasoning(text)
                        | ChatChunk::Refusal(text) => state.output.push_str(text),
                        ChatChunk::ToolCall(call) => state.output.push_str(&call.arguments),
                        ChatChunk::Model(model) => {
                            if let Some(pending) = state.pending.as_mut() {
                                pending.answered.clone_from(model);
                            }
                        }
                        _ => {}
                    }
                    Some((Ok(chunk), state))
                }
                Some(Err(error)) => {
                    state.finished = true;
                    state.record("partial");
                    Some((Err(error), state))
                }
                None => {
                    state.finished = true;
                    let report = state.settle().await?;
                    Some((Ok(ChatChunk::Cost(report)), state))
                }
            }
        })
    }
}

impl Drop for Tracked {
    /// The client went away mid-stream: the upstream request is cancelled
    /// with the inner stream; record what is known.
    fn drop(&mut self) {
        let _ = self.record("cancelled");
    }
}
