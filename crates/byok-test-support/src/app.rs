//! A running byok server for integration tests, and a capture of every log
//! line the test binary emits (for leak checks).

use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use byok_api::KeyService;
use byok_core::UserId;
use byok_vault::{KeyVault, MasterKey, MasterKeyId};
use secrecy::SecretString;

use crate::TestDb;

/// The admin token every [`TestApp`] accepts (as if set by `BYOK_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// The vault tests use by default: master key id 1, fixed bytes.
#[must_use]
pub fn test_vault() -> KeyVault {
    KeyVault::new(MasterKeyId::new(1), MasterKey::from_bytes([42; 32]))
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let writer = capture.clone();
        // TRACE for everything, HTTP internals included: a leak at any level counts.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init();
        capture
    })
}

/// Everything logged so far by this test binary, at every level.
#[must_use]
pub fn captured_logs() -> String {
    capture()
        .0
        .lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The DNS of test servers: a host whose first label starts with
/// `internal` resolves to 10.0.0.5, every other host to a public address.
/// No test ever reaches the network.
#[derive(Debug, Clone, Copy)]
pub struct FakeDns;

impl byok_providers::endpoint::Lookup for FakeDns {
    fn lookup(
        &self,
        host: String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::IpAddr>>> + Send>,
    > {
        let address = if host.starts_with("internal") {
            [10, 0, 0, 5]
        } else {
            [20, 42, 1, 1]
        };
        Box::pin(async move { Ok(vec![std::net::IpAddr::from(address)]) })
    }
}

/// A byok server on `127.0.0.1:0` over a test database.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// A client without redirects.
    pub client: reqwest::Client,
    /// The service behind the server, for direct checks.
    pub service: KeyService,
    /// The gateway behind `/v1`, for direct checks.
    pub gateway: byok_api::gateway::Gateway,
    handle: actix_web::dev::ServerHandle,
    writer: byok_api::usage::UsageWriterHandle,
    writer_task: tokio::task::JoinHandle<()>,
}

/// Less common ways to start a [`TestApp`].
#[derive(Default)]
pub struct SpawnOptions {
    /// The service's clock (token expiry), instead of the system's.
    pub clock: Option<byok_api::service::Clock>,
    /// Origins allowed to call the user routes and frame the page.
    pub browser_access: byok_api::cors::BrowserAccess,
    /// Most keys per user and provider.
    pub max_keys_per_provider: Option<u32>,
    /// The operator's budget policy.
    pub budget_policy: byok_api::service::BudgetPolicy,
    /// Every user's rate limits.
    pub rate_limits: byok_api::limits::RateLimits,
    /// Where alerts go.
    pub webhook: Option<byok_api::alerts::Webhook>,
}

impl std::fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("clock", &self.clock.is_some())
            .field("browser_access", &self.browser_access)
            .field("max_keys_per_provider", &self.max_keys_per_provider)
            .field("budget_policy", &self.budget_policy)
            .field("rate_limits", &self.rate_limits)
            .field("webhook", &self.webhook)
            .finish()
    }
}

impl TestApp {
    /// Serves `db` with [`test_vault`].
    pub async fn spawn(db: &TestDb) -> Self {
        Self::spawn_with(db, test_vault()).await
    }

    /// Serves `db` with `vault`, and providers at their default (real)
    /// addresses, which tests never call.
    pub async fn spawn_with(db: &TestDb, vault: KeyVault) -> Self {
        Self::spawn_full(db, vault, byok_providers::ProviderSettings::default()).await
    }

    /// Serves `db` with [`test_vault`] and providers as `providers` says
    /// (base URLs of mock servers).
    pub async fn spawn_with_providers(
        db: &TestDb,
        providers: byok_providers::ProviderSettings,
    ) -> Self {
        Self::spawn_full(db, test_vault(), providers).await
    }

    /// Serves `db` with `vault` and `providers`.
    ///
    /// # Panics
    /// When the store cannot be opened or the server cannot start.
    pub async fn spawn_full(
        db: &TestDb,
        vault: KeyVault,
        providers: byok_providers::ProviderSettings,
    ) -> Self {
        Self::spawn_limited(
            db,
            vault,
            providers,
            byok_api::gateway::GatewayLimits::default(),
            byok_api::usage::Durability::Batched,
            None,
            SpawnOptions::default(),
        )
        .await
    }

    /// Serves `db` with [`test_vault`] and `providers`, writing usage with
    /// strict durability.
    pub async fn spawn_strict(db: &TestDb, providers: byok_providers::ProviderSettings) -> Self {
        Self::spawn_limited(
            db,
            test_vault(),
            providers,
            byok_api::gateway::GatewayLimits::default(),
            byok_api::usage::Durability::Strict,
            None,
            SpawnOptions::default(),
        )
        .await
    }

    /// Serves `db` with [`test_vault`], `providers`, and the gateway's waits
    /// bounded by `limits`.
    pub async fn spawn_with_limits(
        db: &TestDb,
        providers: byok_providers::ProviderSettings,
        limits: byok_api::gateway::GatewayLimits,
    ) -> Self {
        Self::spawn_limited(
            db,
            test_vault(),
            providers,
            limits,
            byok_api::usage::Durability::Batched,
            None,
            SpawnOptions::default(),
        )
        .await
    }

    /// Serves `db` with [`test_vault`], `providers` and `options`.
    pub async fn spawn_options(
        db: &TestDb,
        providers: byok_providers::ProviderSettings,
        options: SpawnOptions,
    ) -> Self {
        Self::spawn_limited(
            db,
            test_vault(),
            providers,
            byok_api::gateway::GatewayLimits::default(),
            byok_api::usage::Durability::Batched,
            None,
            options,
        )
        .await
    }

    /// Serves `db` with [`test_vault`] and refused authentications limited
    /// by `throttle`.
    pub async fn spawn_throttled(db: &TestDb, throttle: byok_api::AuthThrottle) -> Self {
        Self::spawn_limited(
            db,
            test_vault(),
            byok_providers::ProviderSettings::default(),
            byok_api::gateway::GatewayLimits::default(),
            byok_api::usage::Durability::Batched,
            Some(throttle),
            SpawnOptions::default(),
        )
        .await
    }

    async fn spawn_limited(
        db: &TestDb,
        vault: KeyVault,
        providers: byok_providers::ProviderSettings,
        limits: byok_api::gateway::GatewayLimits,
        durability: byok_api::usage::Durability,
        throttle: Option<byok_api::AuthThrottle>,
        options: SpawnOptions,
    ) -> Self {
        capture();
        let store = db.store().await;
        let mut service = KeyService::new(store, Arc::new(vault))
            .with_admin_token(&SecretString::from(ADMIN_TOKEN.to_owned()))
            .with_providers(
                &byok_providers::HttpClients::with_lookup(providers, Arc::new(FakeDns))
                    .expect("build HTTP clients"),
            );
        if let Some(clock) = options.clock {
            service = service.with_clock(clock);
        }
        if let Some(max) = options.max_keys_per_provider {
            service = service.with_max_keys_per_provider(max);
        }
        service = service.with_budget_policy(options.budget_policy);
        service
            .check_master_keys()
            .await
            .expect("master keys open the stored keys");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let port = listener.local_addr().expect("local address").port();
        // The server's own wiring, with a small usage queue.
        let mut application = byok_api::Application::new(service.clone());
        if let Some(throttle) = throttle {
            application = application.auth_throttle(throttle);
        }
        if let Some(webhook) = options.webhook {
            application = application.alert_webhook(webhook);
        }
        let started = application
            .rate_limits(options.rate_limits)
            .browser_access(options.browser_access)
            .limits(limits)
            .durability(durability)
            .usage_queue(64, 16)
            .shutdown_timeout(Duration::from_secs(5))
            .start(listener)
            .expect("start the server");
        #[expect(
            clippy::disallowed_methods,
            reason = "the harness runs the usage writer beside the test"
        )]
        let writer_task = tokio::spawn(started.usage_task);
        let writer = started.usage;
        let server = started.server;
        let gateway = started
            .state
            .gateway
            .clone()
            .expect("the application wires the gateway");
        let handle = server.handle();
        #[expect(
            clippy::disallowed_methods,
            reason = "the harness runs the server beside the test"
        )]
        tokio::spawn(server);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build a client");
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            client,
            service,
            gateway,
            handle,
            writer,
            writer_task,
        }
    }

    /// Stops the server, letting in-flight requests finish, then flushes the
    /// usage writer.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        self.writer.shutdown();
        let _ = self.writer_task.await;
    }

    /// `base_url` + `path`.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Creates `user` with the admin token and returns their token.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn create_user(&self, user: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/admin/users"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "user_id": user }))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 201, "create user {user}");
        let body: serde_json::Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }

    /// Saves `key` as `user`'s key for `provider` with `token`; returns the response.
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn save_key(
        &self,
        token: &str,
        user: &str,
        provider: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/user/api-keys/{user}/keys/{provider}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("send")
    }

    /// Opens `user`'s stored key for `provider` through the service, as the
    /// provider adapters will.
    ///
    /// # Panics
    /// When the key is missing or does not open.
    pub async fn open_key(&self, user: &str, provider: byok_core::ProviderKind) -> String {
        let admin = byok_api::Principal::Admin {
            token_id: "test".to_owned(),
        };
        let user = UserId::parse(user).expect("user id");
        self.service
            .open_key(
                &admin,
                &user,
                provider,
                &byok_api::RequestContext::default(),
            )
            .await
            .expect("open the stored key")
            .expose_secret()
            .to_owned()
    }

    /// Opens `user`'s stored key `key_id` with [`test_vault`] and the binding
    /// to its id.
    ///
    /// # Panics
    /// When the key is missing or does not open.
    pub async fn open_key_by_id(&self, user: &str, key_id: &str) -> String {
        let (user, id) = (UserId::parse(user).expect("user id"), key_id.to_owned());
        let stored = self
            .service
            .store()
            .run(move |c| byok_store::keys::get_by_id(c, &user, &id))
            .await
            .expect("read the key")
            .expect("the key exists");
        let sealed = byok_vault::SealedKey::from_bytes(stored.sealed_key.clone());
        test_vault()
            .open(
                &sealed,
                &byok_vault::Binding::for_key(&stored.user_id, stored.provider, &stored.id),
            )
            .expect("the key opens")
            .expose_secret()
            .to_owned()
    }
}
