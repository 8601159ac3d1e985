//! The audit trail: who did what to which user's keys and tokens.
//!
//! Events are appended in the same transaction as the change they record,
//! and never hold a key or a token: free text is limited to `&'static str`
//! codes, so nothing a client sent can end up in the trail.

use std::fmt;
use std::str::FromStr;

use byok_core::{ProviderKind, UserId};
use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::schema::audit_events;
use crate::time::{from_db, to_db};
use crate::{DbConnection, StoreError};

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// A user acting with their own token.
    User(UserId),
    /// An administrator, identified by the public id of the token used.
    Admin {
        /// The admin token's public id (never its secret).
        token_id: String,
    },
    /// An app backend's service token acting for a user (the event's user).
    Service {
        /// The service token's public id (never its secret).
        token_id: String,
    },
    /// The service itself (a rewrap job, a start-up task).
    System,
    /// A caller who could not be authenticated.
    Anonymous,
}

impl Actor {
    fn to_db(&self) -> String {
        match self {
            Self::User(user) => format!("user:{user}"),
            Self::Admin { token_id } => format!("admin:{token_id}"),
            Self::Service { token_id } => format!("service:{token_id}"),
            Self::System => "system".to_owned(),
            Self::Anonymous => "anonymous".to_owned(),
        }
    }

    fn from_db(value: &str) -> Result<Self, StoreError> {
        match value.split_once(':') {
            Some(("user", id)) => UserId::parse(id)
                .map(Self::User)
                .map_err(|_| StoreError::Corrupt("audit actor")),
            Some(("admin", token_id)) => Ok(Self::Admin {
                token_id: token_id.to_owned(),
            }),
            Some(("service", token_id)) => Ok(Self::Service {
                token_id: token_id.to_owned(),
            }),
            None if value == "system" => Ok(Self::System),
            None if value == "anonymous" => Ok(Self::Anonymous),
            _ => Err(StoreError::Corrupt("audit actor")),
        }
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The stored name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;

            fn from_str(s: &str) -> Result<Self, StoreError> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or(StoreError::Corrupt(stringify!($name)))
            }
        }
    };
}

string_enum! {
    /// What happened.
    AuditAction {
        /// A user was created.
        UserCreate => "user.create",
        /// A user and everything they owned, but the trail, was deleted.
        UserDelete => "user.delete",
        /// An API token was issued.
        TokenIssue => "token.issue",
        /// An API token was revoked.
        TokenRevoke => "token.revoke",
        /// A user was disabled: their tokens are refused.
        UserDisable => "user.disable",
        /// A disabled user was enabled again.
        UserEnable => "user.enable",
        /// An operator set a user's own rate limits.
        UserLimits => "user.limits",
        /// A provider key's label, order, weight or switch changed.
        KeyUpdate => "key.update",
        /// A budget was set.
        BudgetCreate => "budget.create",
        /// A budget's limit, kind or time zone changed.
        BudgetUpdate => "budget.update",
        /// A budget was removed.
        BudgetDelete => "budget.delete",
        /// A request could not be authenticated or was not allowed.
        AuthFailure => "auth.failure",
        /// A provider key was stored where there was none.
        KeyCreate => "key.create",
        /// A provider key replaced an earlier one.
        KeyReplace => "key.replace",
        /// A key save was refused (bad format, unknown user, ...).
        KeyCreateRejected => "key.create_rejected",
        /// A provider key was deleted.
        KeyDelete => "key.delete",
        /// A provider key was tested against its provider.
        KeyTest => "key.test",
        /// A provider key was used for a request.
        KeyUse => "key.use",
        /// A stored key could not be opened (tampered row, missing master key).
        KeyDecryptFailed => "key.decrypt_failed",
        /// A provider key was moved onto the active master key.
        KeyRewrap => "key.rewrap",
        /// A user's keys were opened for a passphrase-sealed export.
        KeyExport => "key.export",
    }
}

string_enum! {
    /// How it ended.
    AuditOutcome {
        /// It was done.
        Success => "success",
        /// It failed.
        Failure => "failure",
        /// It was refused for lack of permission.
        Denied => "denied",
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// Who acted.
    pub actor: Actor,
    /// What happened.
    pub action: AuditAction,
    /// Whose keys or tokens it concerned.
    pub user_id: Option<UserId>,
    /// Which provider's key, if any.
    pub provider: Option<ProviderKind>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The request that caused it, for correlation with logs.
    pub request_id: Option<String>,
    /// A short code (an error code, a setting's name), possibly with a
    /// count (`code:N`). Built only from static text and numbers, so that
    /// no client input, and so no key, can ever be written here.
    detail: Option<std::borrow::Cow<'static, str>>,
}

impl NewAuditEvent {
    /// An event with no user, provider, request id or detail.
    #[must_use]
    pub fn new(actor: Actor, action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            actor,
            action,
            user_id: None,
            provider: None,
            outcome,
            request_id: None,
            detail: None,
        }
    }

    /// Sets the user the event concerns.
    #[must_use]
    pub fn user(mut self, user: &UserId) -> Self {
        self.user_id = Some(user.clone());
        self
    }

    /// Sets the provider the event concerns.
    #[must_use]
    pub fn provider(mut self, provider: ProviderKind) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Sets the detail code.
    #[must_use]
    pub fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the detail to a code and a count, written `code:count`.
    #[must_use]
    pub fn detail_count(mut self, detail: &'static str, count: u64) -> Self {
        self.detail = Some(format!("{detail}:{count}").into());
        self
    }

    /// The detail, as it will be written.
    #[must_use]
    pub fn detail_text(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

/// An event read back from the trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// Position in the trail; larger is newer.
    pub id: i64,
    /// When it happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Who acted, as stored (`user:alice`, `admin:tok_..`, `system`, `anonymous`).
    pub actor: String,
    /// What happened.
    pub action: AuditAction,
    /// Whose keys or tokens it concerned.
    pub user_id: Option<UserId>,
    /// Which provider's key.
    pub provider: Option<ProviderKind>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The request that caused it.
    pub request_id: Option<String>,
    /// A short code.
    pub detail: Option<String>,
}

impl AuditEvent {
    /// The actor, parsed.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the stored actor has an unknown shape.
    pub fn actor(&self) -> Result<Actor, StoreError> {
        Actor::from_db(&self.actor)
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_events)]
struct AuditRow {
    id: i64,
    occurred_at: chrono::NaiveDateTime,
    actor: String,
    action: String,
    user_id: Option<String>,
    provider: Option<String>,
    outcome: String,
    request_id: Option<String>,
    detail: Option<String>,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.id,
            occurred_at: from_db(row.occurred_at),
            actor: row.actor,
            action: row.action.parse()?,
            user_id: row
                .user_id
                .map(UserId::parse)
                .transpose()
                .map_err(|_| StoreError::Corrupt("audit user id"))?,
            provider: row
                .provider
                .map(|p| p.parse())
                .transpose()
                .map_err(|_| StoreError::Corrupt("audit provider"))?,
            outcome: row.outcome.parse()?,
            request_id: row.request_id,
            detail: row.detail,
        })
    }
}

/// Appends `event`, stamped with `at`. Call it inside the transaction of the
/// change it records.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn append(
    conn: &mut DbConnection,
    event: &NewAuditEvent,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    // One appender at a time, so each link follows the one before it
    // (SQLite's write transactions already serialise; PostgreSQL takes a
    // transaction-scoped advisory lock).
    #[cfg(feature = "postgres")]
    if let DbConnection::Postgres(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7251917001)").execute(pg)?;
    }
    let previous = audit_events::table
        .filter(audit_events::chain_hash.is_not_null())
        .order(audit_events::id.desc())
        .select(audit_events::chain_hash)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten()
        .unwrap_or_default();
    let occurred_at = to_db(at);
    let fields = ChainFields {
        occurred_at,
        actor: event.actor.to_db(),
        action: event.action.as_str(),
        user_id: event.user_id.as_ref().map(UserId::as_str),
        provider: event.provider.map(ProviderKind::as_str),
        outcome: event.outcome.as_str(),
        request_id: event.request_id.as_deref(),
        detail: event.detail.as_deref(),
    };
    let link = fields.link(&previous);
    diesel::insert_into(audit_events::table)
        .values((
            audit_events::occurred_at.eq(occurred_at),
            audit_events::actor.eq(fields.actor.as_str()),
            audit_events::action.eq(fields.action),
            audit_events::user_id.eq(fields.user_id),
            audit_events::provider.eq(fields.provider),
            audit_events::outcome.eq(fields.outcome),
            audit_events::request_id.eq(fields.request_id),
            audit_events::detail.eq(fields.detail),
            audit_events::chain_hash.eq(link),
        ))
        .execute(conn)?;
    Ok(())
}

/// The fields an event's link covers.
struct ChainFields<'a> {
    occurred_at: chrono::NaiveDateTime,
    actor: String,
    action: &'a str,
    user_id: Option<&'a str>,
    provider: Option<&'a str>,
    outcome: &'a str,
    request_id: Option<&'a str>,
    detail: Option<&'a str>,
}

impl ChainFields<'_> {
    /// SHA-256 over the previous link and these fields, in hex.
    fn link(&self, previous: &str) -> String {
        use sha2::Digest as _;
        let mut hash = sha2::Sha256::new();
        let optional = |v: Option<&str>| v.map_or_else(|| "\u{0}".to_owned(), str::to_owned);
        for part in [
            previous.to_owned(),
            self.occurred_at.and_utc().timestamp_micros().to_string(),
            self.actor.clone(),
            self.action.to_owned(),
            optional(self.user_id),
            optional(self.provider),
            self.outcome.to_owned(),
            optional(self.request_id),
            optional(self.detail),
        ] {
            hash.update(part.as_bytes());
            hash.update([0x1f]);
        }
        hex::encode(hash.finalize())
    }
}

/// Where the audit chain is broken, if it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Events checked (those written since the chain began).
    pub checked: u64,
    /// The first event whose link does not follow from the one before (an
    /// edited, inserted or deleted-before event), by id.
    pub first_broken: Option<i64>,
    /// The last link: record it elsewhere to notice a rewritten tail.
    pub head: Option<String>,
}

/// Walks the whole chain, oldest first.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn verify_chain(conn: &mut DbConnection) -> Result<ChainReport, StoreError> {
    type Row = (
        i64,
        chrono::NaiveDateTime,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let mut report = ChainReport {
        checked: 0,
        first_broken: None,
        head: None,
    };
    let mut previous = String::new();
    let mut after = i64::MIN;
    loop {
        let rows: Vec<Row> = audit_events::table
            .filter(audit_events::id.gt(after))
            .order(audit_events::id.asc())
            .limit(1000)
            .select((
                audit_events::id,
                audit_events::occurred_at,
                audit_events::actor,
                audit_events::action,
                audit_events::user_id,
                audit_events::provider,
                audit_events::outcome,
                audit_events::request_id,
                audit_events::detail,
                audit_events::chain_hash,
            ))
            .load(conn)?;
        let Some(last) = rows.last() else {
            return Ok(report);
        };
        after = last.0;
        for (
            id,
            occurred_at,
            actor,
            action,
            user_id,
            provider,
            outcome,
            request_id,
            detail,
            link,
        ) in rows
        {
            // Events from before the chain began have no link.
            let Some(link) = link else {
                if report.checked > 0 && report.first_broken.is_none() {
                    report.first_broken = Some(id); // a link removed by hand
                }
                continue;
            };
            let expected = ChainFields {
                occurred_at,
                actor,
                action: &action,
                user_id: user_id.as_deref(),
                provider: provider.as_deref(),
                outcome: &outcome,
                request_id: request_id.as_deref(),
                detail: detail.as_deref(),
            }
            .link(&previous);
            report.checked += 1;
            if expected != link && report.first_broken.is_none() {
                report.first_broken = Some(id);
            }
            previous.clone_from(&link);
            report.head = Some(link);
        }
    }
}

/// The oldest `limit` events of one kind, oldest first (for operators'
/// tools and tests; events without a user are not in any user's trail).
///
/// # Errors
/// When the database fails.
pub fn list_by_action(
    conn: &mut DbConnection,
    action: AuditAction,
    limit: u32,
) -> Result<Vec<AuditEvent>, StoreError> {
    audit_events::table
        .filter(audit_events::action.eq(action.as_str()))
        .order(audit_events::id.asc())
        .limit(i64::from(limit))
        .select(AuditRow::as_select())
        .load::<AuditRow>(conn)?
        .into_iter()
        .map(AuditEvent::try_from)
        .collect()
}

/// How many events of `action` the trail holds.
///
/// # Errors
/// A [`StoreError`] from the database.
pub fn count(conn: &mut DbConnection, action: AuditAction) -> Result<i64, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::action.eq(action.as_str()))
        .count()
        .get_result(conn)?)
}

/// Up to `limit` events about `user`, newest first, older than the event
/// `before` when given (pass the last id of one page to get the next).
///
/// # Errors
/// A [`StoreError`] from the database, or [`StoreError::Corrupt`] for an
/// unreadable row.
pub fn list_for_user(
    conn: &mut DbConnection,
    user: &UserId,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEvent>, StoreError> {
    list_for_user_since(conn, user, None, before, limit)
}

/// As [`list_for_user`], only events at or after `since` — the user's
/// creation, so a re-created user id does not see its predecessor's trail.
///
/// # Errors
/// As [`list_for_user`].
pub fn list_for_user_since(
    conn: &mut DbConnection,
    user: &UserId,
    since: Option<DateTime<Utc>>,
    before: Option<i64>,
    limit: u32,
) -> Result<Vec<AuditEvent>, StoreError> {
    let mut query = audit_events::table
        .filter(audit_events::user_id.eq(user.as_str()))
        .order(audit_events::id.desc())
        .limit(i64::from(limit))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(audit_events::id.lt(before));
    }
    if let Some(since) = since {
        query = query.filter(audit_events::occurred_at.ge(to_db(since)));
    }
    query
        .select(AuditRow::as_select())
        .load::<AuditRow>(conn)?
        .into_iter()
        .map(AuditEvent::try_from)
        .collect()
}
