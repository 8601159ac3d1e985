//! The one error type of `byok-router`.

/// What can go wrong planning or pricing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The model has no price; byok never treats a model as free.
    #[error("{0} has no price in the catalog")]
    Unpriced(String),
    /// A price is not a decimal with at most six decimals.
    #[error("price `{0}` must be a decimal number of dollars with at most six decimals")]
    BadPrice(String),
    /// A model reference is not `provider:model`.
    #[error("`{0}` must be provider:model with a known provider")]
    BadModelRef(String),
    /// A task name is not 1 to 32 of `a-z 0-9 _ -`.
    #[error("task names are 1 to 32 characters of a-z 0-9 _ -")]
    BadTask,
    /// The catalog file is malformed or inconsistent.
    #[error("price catalog: {0}")]
    Catalog(String),
    /// No candidate is left for the request.
    #[error("no provider can serve this request")]
    NoCandidate,
}

impl RouteError {
    /// A stable, machine-readable code.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Unpriced(_) => "model_unpriced",
            Self::BadPrice(_) => "bad_price",
            Self::BadModelRef(_) => "bad_model_ref",
            Self::BadTask => "bad_task",
            Self::Catalog(_) => "bad_catalog",
            Self::NoCandidate => "no_candidate",
        }
    }
}

/// `Result` with [`RouteError`] as the default error.
pub type Result<T, E = RouteError> = std::result::Result<T, E>;
