//! Task types: what a request is for.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::RouteError;

/// A task type such as `general`, `code`, `reasoning` or `embeddings`.
/// Operators may add their own in the catalog's policy, so it is a validated
/// name rather than a closed enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Task(String);

impl Task {
    /// General chat (the default).
    pub const GENERAL: &'static str = "general";
    /// Code.
    pub const CODE: &'static str = "code";
    /// Multi-step reasoning.
    pub const REASONING: &'static str = "reasoning";
    /// Embeddings.
    pub const EMBEDDINGS: &'static str = "embeddings";

    /// Validates a task name: 1 to 32 of `a-z 0-9 _ -`.
    ///
    /// # Errors
    /// [`RouteError::BadTask`].
    pub fn new(name: &str) -> Result<Self, RouteError> {
        let ok = (1..=32).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(RouteError::BadTask)
        }
    }

    /// `general`.
    #[must_use]
    pub fn general() -> Self {
        Self(Self::GENERAL.to_owned())
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Task {
    type Error = RouteError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Task> for String {
    fn from(task: Task) -> Self {
        task.0
    }
}
