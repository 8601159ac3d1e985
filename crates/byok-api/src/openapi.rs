//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, keys, meta, reports};

/// The whole API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "byok", description = "Bring your own AI provider keys: key management API."),
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
        keys::audit,
        reports::services,
        reports::status,
        reports::usage,
        reports::requests,
        admin::create_user,
        admin::delete_user,
        admin::issue_token,
        admin::revoke_token,
    ),
    components(schemas(crate::http::ErrorBody, crate::http::ErrorDetail)),
    modifiers(&BearerAuth),
    tags(
        (name = "keys", description = "a user's provider keys"),
        (name = "admin", description = "users and tokens (admin token)"),
        (name = "routing", description = "the routes, health and spend of a user's providers"),
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
