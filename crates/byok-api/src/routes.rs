//! The HTTP routes. Each handler parses, calls the service, and shapes the
//! answer; nothing else.

pub(crate) mod admin;
pub(crate) mod budgets;
pub(crate) mod gateway;
pub(crate) mod keys;
pub(crate) mod messages;
pub(crate) mod meta;
pub(crate) mod reports;
pub(crate) mod responses;
pub(crate) mod tokens;
pub(crate) mod ui;

use actix_web::http::StatusCode;
use byok_core::{ProviderKind, UserId};

use crate::http::ApiError;

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|_| {
        ApiError::bad(
            StatusCode::BAD_REQUEST,
            "invalid_user_id",
            "user id must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -",
        )
    })
}

fn provider(raw: &str) -> Result<ProviderKind, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::bad(
            StatusCode::NOT_FOUND,
            "unknown_provider",
            "unknown provider; expected openai, deepseek, anthropic, gemini or azure_openai",
        )
    })
}
