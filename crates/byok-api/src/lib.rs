#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod error;
pub mod gateway;
mod http;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod providers;
pub mod reports;
mod routes;
pub mod service;
mod throttle;
mod token;
pub mod usage;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};

pub use error::{Result, ServiceError};
pub use http::{ApiError, ErrorBody, ErrorDetail};
pub use service::{KeyService, Principal, RequestContext};
pub use throttle::{AuthThrottle, FixedWindow};
pub use token::{AdminTokenHash, IssuedToken, TOKEN_PREFIX};

/// Largest JSON body the key routes accept.
pub const KEY_ROUTE_BODY_LIMIT: usize = 16 * 1024;

/// Largest JSON body the gateway (`/v1`) accepts: conversations are long.
pub const GATEWAY_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The key-management service.
    pub service: KeyService,
    /// Limits on refused authentications per client address.
    pub auth_throttle: std::sync::Arc<AuthThrottle>,
    /// The OpenAI-compatible gateway, when enabled.
    pub gateway: Option<gateway::Gateway>,
}

impl AppState {
    /// State over `service` with the default limits.
    #[must_use]
    pub fn new(service: KeyService) -> Self {
        Self {
            service,
            auth_throttle: std::sync::Arc::new(AuthThrottle::default()),
            gateway: None,
        }
    }

    /// Enables the OpenAI-compatible gateway under `/v1`.
    #[must_use]
    pub fn with_gateway(mut self, gateway: gateway::Gateway) -> Self {
        self.gateway = Some(gateway);
        self
    }
}

/// Registers byok's routes, with their own JSON error handling, request ids
/// and request log, into any actix-web `App`:
///
/// ```no_run
/// # fn demo(state: byok_api::AppState) {
/// let app = actix_web::App::new()
///     .configure(byok_api::configure(state))
///     .route("/", actix_web::web::get().to(|| async { "my app" }));
/// # }
/// ```
///
/// Only `/api/...`, `/v1/...`, `/healthz`, `/readyz` and `/metrics` are claimed; other paths stay the
/// host application's.
pub fn configure(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(state))
            .app_data(http::BodyLimit::KEY_ROUTES)
            .app_data(http::query_config())
            .app_data(http::path_config())
            .service(
                web::resource("/healthz")
                    .route(web::get().to(routes::meta::healthz))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            )
            .service(
                web::resource("/metrics")
                    .route(web::get().to(routes::meta::metrics))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            )
            .service(
                web::resource("/readyz")
                    .route(web::get().to(routes::meta::readyz))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            )
            .service(
                web::scope("/v1")
                    .app_data(http::BodyLimit::GATEWAY)
                    .route(
                        "/chat/completions",
                        web::post().to(routes::gateway::chat_completions),
                    )
                    .route("/embeddings", web::post().to(routes::gateway::embeddings))
                    .route("/models", web::get().to(routes::gateway::models))
                    .route("/models/{id}", web::get().to(routes::gateway::model))
                    .default_service(web::to(not_found))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            )
            .service(
                web::scope("/api")
                    .route("/openapi.json", web::get().to(routes::meta::openapi))
                    .route("/user/whoami", web::get().to(routes::keys::whoami))
                    .service(
                        web::scope("/user/api-keys")
                            .route("/providers", web::get().to(routes::keys::list_providers))
                            .route("/{user_id}/keys", web::get().to(routes::keys::list_keys))
                            .service(
                                web::resource("/{user_id}/keys/{provider}")
                                    .route(web::post().to(routes::keys::save_key))
                                    .route(web::delete().to(routes::keys::delete_key)),
                            )
                            .route(
                                "/{user_id}/keys/{provider}/test",
                                web::post().to(routes::keys::test_key),
                            )
                            .route("/{user_id}/audit", web::get().to(routes::keys::audit))
                            .route(
                                "/{user_id}/services",
                                web::get().to(routes::reports::services),
                            )
                            .route("/{user_id}/status", web::get().to(routes::reports::status))
                            .route("/{user_id}/usage", web::get().to(routes::reports::usage))
                            .route(
                                "/{user_id}/requests",
                                web::get().to(routes::reports::requests),
                            ),
                    )
                    .service(
                        web::scope("/admin")
                            .route("/users", web::post().to(routes::admin::create_user))
                            .route(
                                "/users/{user_id}",
                                web::delete().to(routes::admin::delete_user),
                            )
                            .route(
                                "/users/{user_id}/tokens",
                                web::post().to(routes::admin::issue_token),
                            )
                            .route(
                                "/tokens/{token_id}",
                                web::delete().to(routes::admin::revoke_token),
                            ),
                    )
                    .default_service(web::to(not_found))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            );
    }
}

/// Registers the settings page (`/`, `/settings`, `/assets/...`), for
/// programs that want it as well as the API.
pub fn configure_ui(cfg: &mut web::ServiceConfig) {
    for path in ["/", "/settings"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(routes::ui::index))
                .wrap(from_fn(http::request_log)),
        );
    }
    cfg.service(
        web::resource("/assets/app.js")
            .route(web::get().to(routes::ui::app_js))
            .wrap(from_fn(http::request_log)),
    )
    .service(
        web::resource("/assets/style.css")
            .route(web::get().to(routes::ui::style_css))
            .wrap(from_fn(http::request_log)),
    );
}

async fn not_found() -> HttpResponse {
    http::error_response(
        actix_web::http::StatusCode::NOT_FOUND,
        "not_found",
        "no such route",
    )
}

/// Serves byok alone on `listener`: the routes of [`configure`], JSON 404s
/// for every other path, and a graceful stop on SIGTERM (in-flight requests
/// finish within `shutdown_timeout`).
///
/// # Errors
/// When the listener cannot be used.
pub fn server(
    listener: TcpListener,
    state: AppState,
    shutdown_timeout: Duration,
) -> std::io::Result<actix_web::dev::Server> {
    let server = HttpServer::new(move || {
        App::new()
            .configure(configure(state.clone()))
            .configure(configure_ui)
            .default_service(web::to(not_found).wrap(from_fn(http::request_log)))
    })
    .client_request_timeout(Duration::from_secs(10))
    .shutdown_timeout(shutdown_timeout.as_secs())
    .listen(listener)?
    .run();
    Ok(server)
}
