//! The one error type of `byok-providers`.

use std::time::Duration;

use byok_core::{KeyStatus, ProviderKind};

/// Why a request the provider was asked to do is not acceptable to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BadRequestKind {
    /// The model does not exist or the key may not use it.
    UnknownModel,
    /// The Azure deployment does not exist.
    UnknownDeployment,
    /// The prompt is longer than the model's context window.
    ContextTooLong,
    /// The provider's content filter refused the prompt.
    ContentFilter,
    /// Anything else the provider refused (a bad parameter).
    Other,
}

/// A key that works but whose settings keep it from being used: the fix is
/// in the provider's console, not a new key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// Anthropic: the key is bound to a workspace (or a person) and the
    /// request lacks `anthropic-workspace-id`.
    WorkspaceRequired,
    /// Google: the key's restrictions (API, referrer, IP) forbid the Gemini API.
    KeyRestricted,
    /// Google: the key's project has the Gemini API disabled or blocked.
    ProjectSetting,
    /// Google: the key is of a kind Google no longer accepts (unrestricted
    /// standard `AIza` keys); create an auth key (`AQ.…`) in AI Studio.
    KeyKindRetired,
}

impl KeyProblem {
    /// A stable code.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::WorkspaceRequired => "workspace_required",
            Self::KeyRestricted => "key_restricted",
            Self::ProjectSetting => "project_setting",
            Self::KeyKindRetired => "key_kind_retired",
        }
    }

    /// What to do, for a person.
    #[must_use]
    pub const fn fix(self) -> &'static str {
        match self {
            Self::WorkspaceRequired => {
                "this Anthropic key is bound to a workspace: add its workspace id (wrkspc_…) to the key's settings"
            }
            Self::KeyRestricted => {
                "Google restricts this key: allow the Generative Language API for it at https://console.cloud.google.com/apis/credentials"
            }
            Self::ProjectSetting => {
                "the key's Google Cloud project has the Generative Language API disabled or blocked: enable it at https://console.cloud.google.com/apis/library/generativelanguage.googleapis.com"
            }
            Self::KeyKindRetired => {
                "Google no longer accepts this kind of key: create a new key in AI Studio (https://aistudio.google.com/apikey)"
            }
        }
    }
}

/// A failure talking to a provider.
///
/// Messages name the provider and the class of failure; they never carry the
/// key, a URL or the provider's own message text (which can echo part of the
/// key). [`ProviderError::is_retryable`] tells the router whether another
/// provider may be tried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider rejected the key (wrong, revoked, another provider's).
    #[error("{} rejected the API key", provider.display_name())]
    InvalidKey {
        /// The provider.
        provider: ProviderKind,
    },
    /// The key is accepted but its settings keep it from serving (see [`KeyProblem`]).
    #[error("{} cannot use this key as configured: {}", provider.display_name(), problem.fix())]
    KeyConfiguration {
        /// The provider.
        provider: ProviderKind,
        /// What is wrong, and the fix.
        problem: KeyProblem,
    },
    /// The key works but its account has no credit or quota left.
    #[error("{} account is out of credit or quota", provider.display_name())]
    NoCredit {
        /// The provider.
        provider: ProviderKind,
    },
    /// The provider is rate limiting this key.
    #[error("{} is rate limiting this key", provider.display_name())]
    RateLimited {
        /// The provider.
        provider: ProviderKind,
        /// How long the provider asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The provider answered with a server error or said it is overloaded.
    #[error("{} is unavailable (HTTP {status})", provider.display_name())]
    Unavailable {
        /// The provider.
        provider: ProviderKind,
        /// The HTTP status (5xx, or Anthropic's 529).
        status: u16,
    },
    /// The provider refused the request itself; another provider would too.
    #[error("{} refused the request (HTTP {status})", provider.display_name())]
    BadRequest {
        /// The provider.
        provider: ProviderKind,
        /// The HTTP status.
        status: u16,
        /// What kind of refusal.
        kind: BadRequestKind,
    },
    /// The provider has no such capability (embeddings on Anthropic or DeepSeek).
    #[error("{} does not offer {capability}", provider.display_name())]
    Unsupported {
        /// The provider.
        provider: ProviderKind,
        /// What is missing, such as `embeddings`.
        capability: &'static str,
    },
    /// No answer within the time limit.
    #[error("{} did not answer in time", provider.display_name())]
    Timeout {
        /// The provider.
        provider: ProviderKind,
    },
    /// The provider could not be reached (DNS, connection, TLS).
    #[error("could not reach {}", provider.display_name())]
    Unreachable {
        /// The provider.
        provider: ProviderKind,
        /// The transport error, with its URL removed.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The provider answered with a redirect, which is never followed.
    #[error("{} answered with a redirect, which byok does not follow", provider.display_name())]
    Redirected {
        /// The provider.
        provider: ProviderKind,
    },
    /// The provider's answer could not be understood (malformed, truncated,
    /// too large, or an unexpected status).
    #[error("{} sent a response byok could not use", provider.display_name())]
    BadResponse {
        /// The provider.
        provider: ProviderKind,
    },
    /// A stream ended without its terminator: the answer may be cut short
    /// and its usage is unknown.
    #[error("{} stream ended before it was complete", provider.display_name())]
    IncompleteStream {
        /// The provider.
        provider: ProviderKind,
    },
    /// The stream reported an error after it had started.
    #[error("{} reported an error in the middle of the stream", provider.display_name())]
    StreamError {
        /// The provider.
        provider: ProviderKind,
    },
    /// A user-supplied endpoint is not allowed (server-side request forgery guard).
    #[error("endpoint not allowed: {reason}")]
    EndpointNotAllowed {
        /// Why, such as `https is required`.
        reason: &'static str,
    },
    /// The key's settings lack something the provider needs (Azure's endpoint).
    #[error("the key's settings lack {0}")]
    MissingSetting(&'static str),
}

impl ProviderError {
    /// Whether the router may try the next candidate: rate limits, overload,
    /// server errors, timeouts, transport failures and unusable answers. Never
    /// for a bad key or a bad request.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Unavailable { .. }
                | Self::Timeout { .. }
                | Self::Unreachable { .. }
                | Self::BadResponse { .. }
                | Self::Redirected { .. }
                | Self::NoCredit { .. }
        )
    }

    /// Whether the key cannot be used as it is (rejected, or misconfigured):
    /// it is skipped until it is replaced or its settings change.
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey { .. } | Self::KeyConfiguration { .. }
        )
    }

    /// The delay the provider asked for, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What a key test reports for this failure.
    #[must_use]
    pub fn key_status(&self) -> KeyStatus {
        match self {
            Self::InvalidKey { .. } => KeyStatus::Invalid,
            Self::KeyConfiguration { .. } => KeyStatus::Misconfigured,
            Self::NoCredit { .. } => KeyStatus::NoCredit,
            Self::RateLimited { .. } => KeyStatus::RateLimited,
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::EndpointNotAllowed { .. } => {
                KeyStatus::Unreachable
            }
            _ => KeyStatus::Unavailable,
        }
    }

    /// A stable, machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidKey { .. } => "provider_key_rejected",
            Self::KeyConfiguration { problem, .. } => match problem {
                KeyProblem::WorkspaceRequired => "provider_workspace_required",
                KeyProblem::KeyRestricted => "provider_key_restricted",
                KeyProblem::ProjectSetting => "provider_project_setting",
                KeyProblem::KeyKindRetired => "provider_key_kind_retired",
            },
            Self::NoCredit { .. } => "provider_no_credit",
            Self::RateLimited { .. } => "provider_rate_limited",
            Self::Unavailable { .. } => "provider_unavailable",
            Self::BadRequest { .. } => "provider_bad_request",
            Self::Unsupported { .. } => "provider_unsupported",
            Self::Timeout { .. } => "provider_timeout",
            Self::Unreachable { .. } => "provider_unreachable",
            Self::Redirected { .. } => "provider_redirect",
            Self::BadResponse { .. } => "provider_bad_response",
            Self::IncompleteStream { .. } => "provider_stream_incomplete",
            Self::StreamError { .. } => "provider_stream_error",
            Self::EndpointNotAllowed { .. } => "endpoint_not_allowed",
            Self::MissingSetting(_) => "missing_setting",
        }
    }
}

/// `Result` with [`ProviderError`] as the default error.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;
