//! Mount byok's routes into an existing actix-web application, beside its own
//! routes, and serve both on one port.
//!
//! Run with `cargo run -p byok-examples --example embed_api`, then for
//! instance `curl localhost:8081/` and `curl localhost:8081/api/user/api-keys/providers`.
//! Pass `--check` to start, answer one request of each kind, and stop.

#![expect(clippy::print_stdout, reason = "an example shows its results")]

use std::error::Error;
use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use byok_api::{AppState, KeyService};
use byok_store::{Store, StoreConfig};
use byok_vault::{KeyVault, MasterKey, MasterKeyId};

#[actix_web::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::connect(StoreConfig::new(
        dir.path().join("byok.db").display().to_string(),
    ))
    .await?;
    // In a real program the master key comes from your secret store.
    let vault = Arc::new(KeyVault::new(MasterKeyId::new(1), MasterKey::generate()));
    let state = AppState::new(KeyService::new(store, vault));

    let check = std::env::args().any(|a| a == "--check");
    let http = HttpServer::new(move || {
        App::new()
            // The host application's own routes...
            .route("/", web::get().to(|| async { "the host application" }))
            // ...and byok's, under /api, /healthz and /readyz.
            .configure(byok_api::configure(state.clone()))
    })
    // --check takes any free port, so it can run anywhere (CI runs it).
    .bind(("127.0.0.1", if check { 0 } else { 8081 }))?;
    let address = http.addrs()[0];
    let server = http.run();
    if !check {
        println!("serving on http://127.0.0.1:8081 (Ctrl-C to stop)");
        return Ok(server.await?);
    }
    let handle = server.handle();
    let running = actix_web::rt::spawn(server);
    let host = reqwest::get(format!("http://{address}/"))
        .await?
        .text()
        .await?;
    let providers = reqwest::get(format!("http://{address}/api/user/api-keys/providers")).await?;
    println!("host route: {host}; byok providers: {}", providers.status());
    handle.stop(true).await;
    running.await??;
    Ok(())
}
