#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod alerts;
mod cache;
pub mod cors;
mod error;
pub mod gateway;
mod http;
pub mod limits;
pub mod messages;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod providers;
pub mod reports;
pub mod responses;
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
    /// The longest a request body may take to arrive; then `408`.
    pub body_read_timeout: Duration,
    /// Requests in flight at once from one client address (IPv6 by /64).
    pub peer_limit: std::sync::Arc<http::PeerLimit>,
    /// Which web origins may call the user routes and frame the page.
    pub browser_access: std::sync::Arc<cors::BrowserAccess>,
}

impl AppState {
    /// State over `service` with the default limits: 30 refused
    /// authentications per address a minute, 30 s to read a body, 256
    /// requests in flight per address.
    #[must_use]
    pub fn new(service: KeyService) -> Self {
        Self {
            service,
            auth_throttle: std::sync::Arc::new(AuthThrottle::default()),
            gateway: None,
            body_read_timeout: Duration::from_secs(30),
            peer_limit: std::sync::Arc::new(http::PeerLimit::new(256)),
            browser_access: std::sync::Arc::default(),
        }
    }

    /// A body read timeout of `timeout` and at most `per_peer` requests in
    /// flight per client address.
    #[must_use]
    pub fn with_request_limits(mut self, timeout: Duration, per_peer: usize) -> Self {
        self.body_read_timeout = timeout;
        self.peer_limit = std::sync::Arc::new(http::PeerLimit::new(per_peer));
        self
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
                    .route("/messages", web::post().to(routes::messages::messages))
                    .route(
                        "/messages/count_tokens",
                        web::post().to(routes::messages::count_tokens),
                    )
                    .route("/responses", web::post().to(routes::responses::responses))
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
                    .service(user_routes())
                    .service(admin_routes())
                    .default_service(web::to(not_found))
                    .wrap(from_fn(cors::cors))
                    .wrap(from_fn(http::json_errors))
                    .wrap(from_fn(http::request_log)),
            );
    }
}

/// `/api/user/api-keys/...`: a user's keys, tokens, audit and reports.
fn user_routes() -> actix_web::Scope {
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
        .route(
            "/{user_id}/keys/{provider}/add",
            web::post().to(routes::keys::add_key),
        )
        .service(
            web::resource("/{user_id}/keys/{provider}/{key_id}")
                .route(web::put().to(routes::keys::replace_key))
                .route(web::patch().to(routes::keys::update_key))
                .route(web::delete().to(routes::keys::delete_key_by_id)),
        )
        .route(
            "/{user_id}/keys/{provider}/{key_id}/test",
            web::post().to(routes::keys::test_key_by_id),
        )
        .service(
            web::resource("/{user_id}/tokens")
                .route(web::get().to(routes::tokens::list))
                .route(web::post().to(routes::tokens::create)),
        )
        .route(
            "/{user_id}/tokens/{token_id}",
            web::delete().to(routes::tokens::revoke),
        )
        .service(
            web::resource("/{user_id}/budgets")
                .route(web::get().to(routes::budgets::list))
                .route(web::post().to(routes::budgets::create)),
        )
        .service(
            web::resource("/{user_id}/budgets/{budget_id}")
                .route(web::put().to(routes::budgets::update))
                .route(web::delete().to(routes::budgets::delete)),
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
        )
}

/// `/api/admin/...`: users and tokens, for operators.
fn admin_routes() -> actix_web::Scope {
    web::scope("/admin")
        .service(
            web::resource("/users")
                .route(web::post().to(routes::admin::create_user))
                .route(web::get().to(routes::admin::list_users)),
        )
        .service(
            web::resource("/users/{user_id}")
                .route(web::delete().to(routes::admin::delete_user))
                .route(web::patch().to(routes::admin::update_user)),
        )
        .service(
            web::resource("/users/{user_id}/tokens")
                .route(web::post().to(routes::admin::issue_token))
                .route(web::get().to(routes::admin::list_tokens)),
        )
        .service(
            web::resource("/users/{user_id}/limits")
                .route(web::get().to(routes::admin::user_limits))
                .route(web::put().to(routes::admin::set_user_limits)),
        )
        .service(
            web::resource("/service-tokens")
                .route(web::get().to(routes::tokens::list_service))
                .route(web::post().to(routes::tokens::create_service)),
        )
        .route(
            "/tokens/{token_id}",
            web::delete().to(routes::admin::revoke_token),
        )
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
    serve(listener, state, shutdown_timeout, true)
}

/// [`server`], with or without its own SIGINT/SIGTERM handlers (a host
/// application such as byok Desktop stops it through its handle).
fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown_timeout: Duration,
    signals: bool,
) -> std::io::Result<actix_web::dev::Server> {
    let mut server = HttpServer::new(move || {
        App::new()
            .configure(configure(state.clone()))
            .configure(configure_ui)
            .default_service(web::to(not_found).wrap(from_fn(http::request_log)))
            .wrap(from_fn(http::per_peer_limit))
    })
    .client_request_timeout(Duration::from_secs(10))
    .shutdown_timeout(shutdown_timeout.as_secs());
    if !signals {
        server = server.disable_signals();
    }
    Ok(server.listen(listener)?.run())
}

/// Writes `auth.failure` rows with detail `refused_in_window:N`, one per
/// client address whose throttle window ended with more than one refusal,
/// and releases expired budget reservations, every half throttle window (at
/// most every 30 s).
async fn refusal_summaries(state: AppState) {
    let every = (state.auth_throttle.window() / 2)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retirements_checked: Option<std::time::Instant> = None;
    loop {
        tick.tick().await;
        // Once a day: alerts for models in users' routes nearing retirement.
        if let Some(gateway) = &state.gateway
            && retirements_checked.is_none_or(|at| at.elapsed() >= Duration::from_secs(86_400))
        {
            retirements_checked = Some(std::time::Instant::now());
            if let Err(error) = gateway.retirement_alerts().await {
                tracing::warn!(%error, "could not raise model retirement alerts");
            }
        }
        for refused in state.auth_throttle.drain_ended(std::time::Instant::now()) {
            let ctx = RequestContext::default();
            if let Err(error) = state.service.audit_refusal_window(refused, &ctx).await {
                tracing::warn!(%error, "could not record a summary of refused authentications");
            }
        }
        // Health of users idle for ten minutes with nothing to remember.
        state
            .service
            .health()
            .evict_idle(std::time::Instant::now(), Duration::from_secs(600));
        // Budget reservations of requests that never ended (a crash), and
        // rate-limit minutes long past.
        let now = state.service.now();
        let before = now.timestamp() - 600;
        let old_alerts = now - chrono::Duration::days(30);
        if let Err(error) = state
            .service
            .store()
            .run(move |c| {
                byok_store::rates::prune(c, before)?;
                byok_store::alerts::prune(c, old_alerts)
            })
            .await
        {
            tracing::warn!(%error, "could not prune rate-limit counters");
        }
        match state
            .service
            .store()
            .run(move |c| byok_store::budgets::expire(c, now))
            .await
        {
            Ok(0) => {}
            Ok(expired) => tracing::warn!(expired, "budget reservations expired unsettled"),
            Err(error) => tracing::warn!(%error, "could not expire budget reservations"),
        }
    }
}

/// Everything a byok server runs, wired one way: the binary, the test
/// harness and embedding programs all build their server here, so what the
/// tests exercise is the server's own wiring.
///
/// ```no_run
/// # async fn demo(service: byok_api::KeyService) -> std::io::Result<()> {
/// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let parts = byok_api::Application::new(service).start(listener)?;
/// let writer = tokio::spawn(parts.usage_task); // the caller owns the executor
/// parts.server.await?;
/// parts.usage.shutdown();
/// let _ = writer.await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Application {
    service: KeyService,
    catalog: byok_router::PriceCatalog,
    limits: gateway::GatewayLimits,
    durability: usage::Durability,
    batch_window: Duration,
    usage_queue: (usize, usize),
    shutdown_timeout: Duration,
    request_limits: (Duration, usize),
    auth_throttle: Option<AuthThrottle>,
    browser_access: cors::BrowserAccess,
    rate_limits: limits::RateLimits,
    webhook: Option<alerts::Webhook>,
    signals: bool,
}

/// A started application: its server, and its usage writer to run beside it.
pub struct Started<W> {
    /// The HTTP server: await it; it ends on SIGTERM or its handle's stop.
    pub server: actix_web::dev::Server,
    /// Stops the usage writer once the server has stopped (it drains first).
    pub usage: usage::UsageWriterHandle,
    /// The usage writer: run it on the caller's executor.
    pub usage_task: W,
    /// The state the routes serve (its gateway, for metrics and reports).
    pub state: AppState,
}

impl<W> std::fmt::Debug for Started<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").finish_non_exhaustive()
    }
}

impl Application {
    /// An application over `service`, with the built-in price catalog and
    /// default limits, batched usage, a 10,000-record usage queue written in
    /// batches of 200, and 30 s for in-flight requests at shutdown.
    #[must_use]
    pub fn new(service: KeyService) -> Self {
        Self {
            service,
            catalog: byok_router::PriceCatalog::builtin(),
            limits: gateway::GatewayLimits::default(),
            durability: usage::Durability::default(),
            batch_window: usage::DEFAULT_BATCH_WINDOW,
            usage_queue: (10_000, 200),
            shutdown_timeout: Duration::from_secs(30),
            signals: true,
            request_limits: (Duration::from_secs(30), 256),
            auth_throttle: None,
            browser_access: cors::BrowserAccess::default(),
            rate_limits: limits::RateLimits::default(),
            webhook: None,
        }
    }

    /// Delivers alerts (budget crossed, key refused) to `webhook`.
    #[must_use]
    pub fn alert_webhook(mut self, webhook: alerts::Webhook) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// Every user's gateway rate limits unless an operator sets their own
    /// (none by default).
    #[must_use]
    pub fn rate_limits(mut self, defaults: limits::RateLimits) -> Self {
        self.rate_limits = defaults;
        self
    }

    /// Which web origins may call the user routes from a browser, and which
    /// may frame the settings page (both none by default).
    #[must_use]
    pub fn browser_access(mut self, access: cors::BrowserAccess) -> Self {
        self.browser_access = access;
        self
    }

    /// The longest a request body may take to arrive, and the most requests
    /// in flight from one client address.
    #[must_use]
    pub fn request_limits(mut self, body_read_timeout: Duration, per_peer: usize) -> Self {
        self.request_limits = (body_read_timeout, per_peer);
        self
    }

    /// This price catalog.
    #[must_use]
    pub fn catalog(mut self, catalog: byok_router::PriceCatalog) -> Self {
        self.catalog = catalog;
        self
    }

    /// These bounds on the gateway's waits.
    #[must_use]
    pub fn limits(mut self, limits: gateway::GatewayLimits) -> Self {
        self.limits = limits;
        self
    }

    /// This usage durability.
    #[must_use]
    pub fn durability(mut self, durability: usage::Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Refused authentications per client address: `throttle` instead of
    /// [`AuthThrottle::default`] (30 a minute).
    #[must_use]
    pub fn auth_throttle(mut self, throttle: AuthThrottle) -> Self {
        self.auth_throttle = Some(throttle);
        self
    }

    /// In `batched` durability, how long a usage record may wait for others
    /// before its batch is committed (the most a crash can lose).
    #[must_use]
    pub fn usage_batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// A usage queue of `capacity` records, written `batch` at a time.
    #[must_use]
    pub fn usage_queue(mut self, capacity: usize, batch: usize) -> Self {
        self.usage_queue = (capacity, batch);
        self
    }

    /// No SIGINT/SIGTERM handlers of the server's own: the host application
    /// stops it through its handle (byok Desktop stops it when it quits).
    #[must_use]
    pub fn without_signal_handlers(mut self) -> Self {
        self.signals = false;
        self
    }

    /// How long in-flight requests get at shutdown.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Wires the gateway (planner, usage writer, limits) over the service
    /// and starts serving on `listener`.
    ///
    /// # Errors
    /// When the server cannot use `listener`.
    pub fn start(
        self,
        listener: TcpListener,
    ) -> std::io::Result<Started<impl std::future::Future<Output = ()> + Send + 'static>> {
        // Other replicas' changes reach this server's caches.
        self.service.listen_for_changes();
        let (capacity, batch) = self.usage_queue;
        let (sender, usage, usage_task) = usage::usage_writer_with(
            self.service.store().clone(),
            capacity,
            batch,
            self.durability,
            self.batch_window,
        );
        let planner = std::sync::Arc::new(byok_router::RoutePlanner::new(self.catalog));
        let gateway = gateway::Gateway::new(self.service.clone(), planner, sender)
            .with_limits(self.limits)
            .with_rate_limits(self.rate_limits);
        let mut state = AppState::new(self.service)
            .with_gateway(gateway)
            .with_request_limits(self.request_limits.0, self.request_limits.1);
        if let Some(throttle) = self.auth_throttle {
            state.auth_throttle = std::sync::Arc::new(throttle);
        }
        state.browser_access = std::sync::Arc::new(self.browser_access);
        let server = serve(listener, state.clone(), self.shutdown_timeout, self.signals)?;
        // Beside the usage writer: a summary row per ended window of refused
        // authentications, even for an address that never comes back.
        let upkeep = refusal_summaries(state.clone());
        // And the alert sender, when a webhook is configured.
        let webhook = self.webhook;
        let service = state.service.clone();
        let alerts = async move {
            match webhook {
                Some(webhook) => alerts::deliver(service, webhook).await,
                None => std::future::pending::<()>().await,
            }
        };
        let usage_task = async move {
            futures_util::pin_mut!(usage_task, upkeep, alerts);
            let background = futures_util::future::select(upkeep, alerts);
            futures_util::future::select(usage_task, background).await;
        };
        Ok(Started {
            server,
            usage,
            usage_task,
            state,
        })
    }
}
