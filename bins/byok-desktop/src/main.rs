//! byok Desktop: a native window on the settings page, and a local gateway
//! at 127.0.0.1 for your tools. The work is in the library; this opens the
//! window.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]
#![expect(
    clippy::disallowed_methods,
    reason = "the desktop binary reads its configuration, as byok-server does"
)]

use std::sync::mpsc;
use std::time::Duration;

use byok_desktop::{DesktopConfig, Keychain, SecretHome, sign_in_script};
use secrecy::SecretString;
use tauri::Manager as _;

/// The local gateway's port unless `BYOK_DESKTOP_PORT` names another.
const DEFAULT_PORT: u16 = 8765;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BYOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tauri::Builder::default()
        .setup(|app| {
            let data_dir = match std::env::var_os("BYOK_DESKTOP_DATA_DIR") {
                Some(dir) => dir.into(),
                None => app.path().app_data_dir()?,
            };
            let port = std::env::var("BYOK_DESKTOP_PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(DEFAULT_PORT);
            let config = DesktopConfig {
                data_dir,
                port,
                providers: providers_from_env(),
            };
            let (origin, token, home) = start_gateway(config)?;
            if let SecretHome::File(path) = &home {
                tracing::warn!(path = %path.display(), "no OS keychain: the master key is in this owner-only file; back it up");
            }
            tracing::info!(%origin, "byok desktop: local gateway ready");
            tauri::WebviewWindowBuilder::new(
                app,
                "main",
                tauri::WebviewUrl::External(format!("{origin}/").parse()?),
            )
            .title("byok")
            .inner_size(1180.0, 820.0)
            .min_inner_size(360.0, 480.0)
            .initialization_script(sign_in_script(&origin, &token))
            .build()?;
            Ok(())
        })
        .run(tauri::generate_context!());
    if let Err(error) = result {
        tracing::error!(%error, "byok desktop stopped");
        std::process::exit(1);
    }
}

/// Provider addresses from the environment (tests point them at mocks).
fn providers_from_env() -> byok_providers::ProviderSettings {
    let mut providers = byok_providers::ProviderSettings::default();
    for (name, field) in [
        ("BYOK_OPENAI_BASE_URL", &mut providers.openai_base_url),
        ("BYOK_ANTHROPIC_BASE_URL", &mut providers.anthropic_base_url),
        ("BYOK_DEEPSEEK_BASE_URL", &mut providers.deepseek_base_url),
        ("BYOK_GEMINI_BASE_URL", &mut providers.gemini_base_url),
    ] {
        if let Some(url) = std::env::var(name).ok().and_then(|u| u.parse().ok()) {
            *field = url;
        }
    }
    providers
}

/// Starts the local gateway on its own actix runtime thread and waits (at
/// most 30 s) until it listens.
fn start_gateway(
    config: DesktopConfig,
) -> Result<(String, SecretString, SecretHome), Box<dyn std::error::Error>> {
    let (ready, started) = mpsc::channel();
    std::thread::Builder::new()
        .name("byok-gateway".to_owned())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                match byok_desktop::start(&config, &Keychain).await {
                    Ok(running) => {
                        let _ = ready.send(Ok((
                            running.origin.clone(),
                            running.token.clone(),
                            running.master_key_home.clone(),
                        )));
                        let writer = actix_web::rt::spawn(running.usage_task);
                        let _ = running.server.await;
                        running.usage.shutdown();
                        let _ = writer.await;
                    }
                    Err(error) => {
                        let _ = ready.send(Err(format!("{error:#}")));
                    }
                }
            });
        })?;
    Ok(started.recv_timeout(Duration::from_secs(30))??)
}
