//! What every gateway request reads, kept in memory: tokens by id, and each
//! user's state (exists/disabled, keys — still sealed —, budgets, own rate
//! limits). Bounded (`moka`), filled on first use, invalidated on every
//! change the service makes; across replicas on PostgreSQL the change is
//! announced with `NOTIFY` and each replica's listener drops its copy within
//! a poll (50 ms), with a short time-to-live as the safety net if a
//! notification is lost.

use std::sync::{Arc, Weak};
use std::time::Duration;

use byok_core::UserId;
use byok_store::Store;
use byok_store::budgets::Budget;
use byok_store::keys::StoredKey;
use byok_store::tokens::StoredToken;

/// The longest a cached entry lives without being invalidated.
const TIME_TO_LIVE: Duration = Duration::from_secs(30);
/// How often the listener polls for other replicas' changes.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// One user's state as the gateway needs it.
#[derive(Debug, Clone)]
pub(crate) struct UserState {
    /// Whether the user exists and is enabled.
    pub(crate) active: bool,
    /// Their keys, sealed, in each provider's order.
    pub(crate) keys: Vec<StoredKey>,
    /// Their budgets.
    pub(crate) budgets: Vec<Budget>,
    /// Their own rate limits (JSON), if an operator set some.
    pub(crate) limits: Option<String>,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A user's keys, budgets, limits or standing.
    User(UserId),
    /// A token (revoked).
    Token(String),
}

impl Change {
    fn payload(&self) -> String {
        match self {
            Self::User(user) => format!("u:{user}"),
            Self::Token(id) => format!("t:{id}"),
        }
    }
}

/// The caches.
pub(crate) struct HotCache {
    tokens: moka::sync::Cache<String, Arc<StoredToken>>,
    users: moka::sync::Cache<UserId, Arc<UserState>>,
}

impl std::fmt::Debug for HotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotCache")
            .field("tokens", &self.tokens.entry_count())
            .field("users", &self.users.entry_count())
            .finish()
    }
}

impl Default for HotCache {
    fn default() -> Self {
        Self {
            tokens: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_live(TIME_TO_LIVE)
                .build(),
            users: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(TIME_TO_LIVE)
                .build(),
        }
    }
}

impl HotCache {
    pub(crate) fn token(&self, id: &str) -> Option<Arc<StoredToken>> {
        self.tokens.get(id)
    }

    pub(crate) fn put_token(&self, token: StoredToken) {
        self.tokens.insert(token.id.clone(), Arc::new(token));
    }

    pub(crate) fn user(&self, user: &UserId) -> Option<Arc<UserState>> {
        self.users.get(user)
    }

    pub(crate) fn put_user(&self, user: UserId, state: UserState) -> Arc<UserState> {
        let state = Arc::new(state);
        self.users.insert(user, Arc::clone(&state));
        state
    }

    /// Drops what `change` makes stale, here.
    pub(crate) fn forget(&self, change: &Change) {
        match change {
            Change::User(user) => self.users.invalidate(user),
            Change::Token(id) => self.tokens.invalidate(id),
        }
    }

    fn forget_payload(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("u", user)) => {
                if let Ok(user) = UserId::parse(user) {
                    self.users.invalidate(&user);
                }
            }
            Some(("t", id)) => self.tokens.invalidate(id),
            _ => {}
        }
    }

    fn forget_all(&self) {
        self.tokens.invalidate_all();
        self.users.invalidate_all();
    }
}

/// Tells the other replicas about `change` (PostgreSQL `NOTIFY`).
pub(crate) async fn announce(store: &Store, change: &Change) {
    let payload = change.payload();
    if let Err(error) = store.run(move |c| byok_store::notify(c, &payload)).await {
        // The other replicas' copies expire on their own.
        tracing::warn!(%error, "could not announce a change to other replicas");
    }
}

/// On PostgreSQL, a thread that listens for other replicas' changes and
/// drops the stale entries; it ends when the cache is dropped. Losing the
/// connection drops everything (a change may have been missed) and
/// reconnects.
pub(crate) fn listen(store: &Store, cache: &Arc<HotCache>) {
    if store.backend() != byok_store::Backend::Postgres {
        return;
    }
    let (store, cache): (Store, Weak<HotCache>) = (store.clone(), Arc::downgrade(cache));
    let spawned = std::thread::Builder::new()
        .name("byok-changes".to_owned())
        .spawn(move || {
            let mut listener = None;
            loop {
                let Some(cache) = cache.upgrade() else { return };
                if listener.is_none() {
                    listener = store.listen().ok().flatten();
                    if listener.is_none() {
                        drop(cache);
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                    // Whatever changed while nobody listened is unknown.
                    cache.forget_all();
                }
                if let Some(open) = listener.as_mut() {
                    match open.poll() {
                        Ok(payloads) => payloads.iter().for_each(|p| cache.forget_payload(p)),
                        Err(error) => {
                            tracing::warn!(%error, "change listener lost its connection; reconnecting");
                            listener = None;
                        }
                    }
                }
                drop(cache);
                std::thread::sleep(POLL_EVERY);
            }
        });
    if let Err(error) = spawned {
        tracing::error!(%error, "could not start the change listener; caches rely on expiry");
    }
}
