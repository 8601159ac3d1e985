//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, budgets, gateway, keys, messages, meta, reports, responses, tokens};

/// The whole API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "byok", description = "Bring your own AI provider keys: key management API, and the gateway's doors (OpenAI's Chat Completions and Responses, Anthropic's Messages) on the user's own keys."),
    paths(
        meta::healthz,
        meta::readyz,
        meta::openapi,
        meta::metrics,
        keys::list_providers,
        keys::whoami,
        keys::list_keys,
        keys::save_key,
        keys::delete_key,
        keys::test_key,
        keys::add_key,
        keys::replace_key,
        keys::update_key,
        keys::delete_key_by_id,
        keys::test_key_by_id,
        keys::audit,
        tokens::list,
        tokens::create,
        tokens::revoke,
        tokens::list_service,
        tokens::create_service,
        budgets::list,
        budgets::create,
        budgets::update,
        budgets::delete,
        reports::services,
        reports::status,
        reports::usage,
        reports::requests,
        admin::create_user,
        admin::delete_user,
        admin::issue_token,
        admin::revoke_token,
        admin::list_users,
        admin::update_user,
        admin::list_tokens,
        admin::user_limits,
        admin::set_user_limits,
        gateway::chat_completions,
        gateway::embeddings,
        gateway::models,
        gateway::model,
        messages::messages,
        messages::count_tokens,
        responses::responses,
    ),
    components(schemas(crate::http::ErrorBody, crate::http::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "keys", description = "a user's provider keys"),
        (name = "tokens", description = "a user's own tokens: scoped, expiring, revocable"),
        (name = "budgets", description = "caps on a user's own spend, per day or month"),
        (name = "admin", description = "users and tokens (admin token)"),
        (name = "routing", description = "the routes, health and spend of a user's providers"),
        (name = "gateway", description = "the user's AI requests, in OpenAI's and Anthropic's APIs (their fields: docs/api.md)"),
        (name = "meta", description = "health and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
