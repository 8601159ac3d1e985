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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        std::process::exit(command(&args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BYOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let app = tauri::Builder::default()
        // One window per user session: a second start brings it forward
        // (and ends before it starts a gateway of its own).
        .plugin(tauri_plugin_single_instance::init(|app, _, _| {
            show_window(app);
        }))
        // The window opens where and as large as it was left.
        .plugin(tauri_plugin_window_state::Builder::default().build())
        .plugin(tauri_plugin_notification::init())
        .setup(|app| {
            // A gateway that cannot start ends the app with one clear line
            // (Tauri would turn an error here into a panic).
            if let Err(error) = open_window(app) {
                tracing::error!("byok desktop could not start: {error}");
                eprintln!("byok-desktop: error: {error}");
                std::process::exit(1);
            }
            Ok(())
        })
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(error) => {
            eprintln!("byok-desktop: error: {error}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| {
        if let tauri::RunEvent::Exit = event {
            stop_gateway(app);
        }
    });
}

/// Starts the local gateway and opens the window on it, with the menu and
/// the tray icon.
fn open_window(app: &mut tauri::App) -> Result<(), Box<dyn std::error::Error>> {
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
    let started = start_gateway(config)?;
    if let SecretHome::File(path) = &started.home {
        tracing::warn!(path = %path.display(), "no OS keychain: the master key is in this owner-only file; back it up");
    }
    tracing::info!(origin = %started.origin, "byok desktop: local gateway ready");
    tauri::async_runtime::spawn(notify(started.service.clone(), app.handle().clone()));
    tauri::WebviewWindowBuilder::new(
        app,
        "main",
        tauri::WebviewUrl::External(format!("{}/", started.origin).parse()?),
    )
    .title("byok")
    .inner_size(1180.0, 820.0)
    .min_inner_size(360.0, 480.0)
    .initialization_script(sign_in_script(&started.origin, &started.token))
    // The window stays on the local gateway's page: no navigation elsewhere
    // (a page elsewhere must never run where the token was handed over).
    .on_navigation({
        let origin = started.origin.clone();
        move |url| url.as_str().starts_with(&format!("{origin}/"))
    })
    .build()?;
    app.manage(started.switch.clone());
    app.manage(GatewayStop(std::sync::Mutex::new(Some((
        started.stop,
        started.done,
    )))));
    app.set_menu(menu(app.handle())?)?;
    // A tray icon where the desktop has a tray; the app works without.
    if has_tray_library() {
        if let Err(error) = tray(app.handle()) {
            tracing::warn!(%error, "no tray icon on this desktop");
        }
    } else {
        tracing::info!("no tray icon: libayatana-appindicator3 is not installed");
    }
    Ok(())
}

/// How to stop the local gateway: its server's handle, and word from its
/// thread once the usage is written.
struct GatewayStop(std::sync::Mutex<Option<(actix_web::dev::ServerHandle, mpsc::Receiver<()>)>>);

/// The app is quitting: the gateway stops (requests in flight get 5 s) and
/// its usage records are written (at most 10 s in all).
fn stop_gateway(app: &tauri::AppHandle) {
    let Some(state) = app.try_state::<GatewayStop>() else {
        return;
    };
    let taken = state.0.lock().ok().and_then(|mut s| s.take());
    if let Some((handle, done)) = taken {
        tauri::async_runtime::block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle.stop(true)).await;
        });
        if done.recv_timeout(Duration::from_secs(10)).is_err() {
            tracing::warn!("the local gateway did not finish writing its usage in time");
        }
    }
}

/// Shows the desktop's notices (a key refused, a budget crossed, a model
/// retiring) as they are raised.
async fn notify(service: byok_api::KeyService, app: tauri::AppHandle) {
    use tauri_plugin_notification::NotificationExt as _;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        match byok_desktop::take_notices(&service).await {
            Ok(notices) => {
                for notice in notices {
                    if let Err(error) = app
                        .notification()
                        .builder()
                        .title(&notice.title)
                        .body(&notice.body)
                        .show()
                    {
                        tracing::warn!(%error, title = %notice.title, "the desktop could not show a notification");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "could not read the alerts"),
        }
    }
}

/// The main window, shown and focused.
fn show_window(app: &tauri::AppHandle) {
    if let Some(window) = app.get_webview_window("main") {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
    }
}

/// The menu: About and Quit.
fn menu(app: &tauri::AppHandle) -> tauri::Result<tauri::menu::Menu<tauri::Wry>> {
    use tauri::menu::{AboutMetadataBuilder, MenuBuilder, SubmenuBuilder};
    let about = AboutMetadataBuilder::new()
        .name(Some("byok"))
        .version(Some(env!("CARGO_PKG_VERSION")))
        .comments(Some(
            "Your AI provider keys on your machine, and a local gateway for your tools.",
        ))
        .license(Some("Apache-2.0"))
        .build();
    // Pausing stops your tools' requests; the window keeps working.
    let gateway = tauri::menu::CheckMenuItemBuilder::with_id("gateway", "Local gateway on")
        .checked(true)
        .build(app)?;
    let byok = SubmenuBuilder::new(app, "byok")
        .about(Some(about))
        .separator()
        .item(&gateway)
        .separator()
        .quit()
        .build()?;
    app.on_menu_event(|app, event| {
        if event.id().as_ref() == "gateway" {
            let switch = app.state::<byok_api::gateway::GatewaySwitch>();
            if switch.is_open() {
                switch.pause();
                tracing::info!("local gateway paused from the menu");
            } else {
                switch.resume();
                tracing::info!("local gateway resumed from the menu");
            }
        }
    });
    MenuBuilder::new(app).items(&[&byok]).build()
}

/// Whether the library a Linux tray icon needs is installed (without it,
/// the tray crate would panic while loading it).
fn has_tray_library() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let names = ["libayatana-appindicator3.so.1", "libappindicator3.so.1"];
    let mut dirs = vec![
        std::path::PathBuf::from("/usr/lib"),
        std::path::PathBuf::from("/usr/lib64"),
        std::path::PathBuf::from("/usr/local/lib"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with("-linux-gnu")),
        );
    }
    dirs.iter()
        .any(|dir| names.iter().any(|name| dir.join(name).exists()))
}

/// The tray icon: open the window, or quit.
fn tray(app: &tauri::AppHandle) -> tauri::Result<()> {
    use tauri::menu::{MenuBuilder, MenuItemBuilder};
    let open = MenuItemBuilder::with_id("open", "Open byok").build(app)?;
    let quit = MenuItemBuilder::with_id("quit", "Quit byok").build(app)?;
    let items = MenuBuilder::new(app).items(&[&open, &quit]).build()?;
    let mut tray = tauri::tray::TrayIconBuilder::with_id("byok")
        .tooltip("byok: your local gateway")
        .menu(&items)
        .on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_window(app),
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        tray = tray.icon(icon.clone());
    }
    tray.build(app)?;
    Ok(())
}

/// The data directory without a window: `BYOK_DESKTOP_DATA_DIR`, or the
/// app-data directory Tauri uses for this app on this OS.
fn headless_data_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("BYOK_DESKTOP_DATA_DIR") {
        return Some(dir.into());
    }
    dirs::data_dir().map(|dir| dir.join("dev.byok.desktop"))
}

/// `byok-desktop export FILE` / `byok-desktop import FILE`: the local
/// user's keys to or from a file sealed under `BYOK_EXPORT_PASSPHRASE`.
fn command(args: &[String]) -> i32 {
    let usage = "usage: byok-desktop [export FILE | import FILE] (the passphrase in BYOK_EXPORT_PASSPHRASE)";
    let (action, file) = match args {
        [action, file] if action == "export" || action == "import" => {
            (action.as_str(), std::path::PathBuf::from(file))
        }
        _ => {
            eprintln!("{usage}");
            return 2;
        }
    };
    let Some(passphrase) = std::env::var("BYOK_EXPORT_PASSPHRASE")
        .ok()
        .map(SecretString::from)
    else {
        eprintln!("byok-desktop: set BYOK_EXPORT_PASSPHRASE: the export is sealed with it");
        return 2;
    };
    let Some(data_dir) = headless_data_dir() else {
        eprintln!("byok-desktop: no data directory (set BYOK_DESKTOP_DATA_DIR)");
        return 2;
    };
    let config = DesktopConfig {
        data_dir,
        port: 0,
        providers: providers_from_env(),
    };
    let outcome = actix_web::rt::System::new().block_on(async {
        if action == "export" {
            let (text, count) = byok_desktop::export_keys(&config, &Keychain, &passphrase).await?;
            byok_vault::export::write_export_file(&file, &text).map_err(|e| {
                anyhow::anyhow!(
                    "cannot write {} (it must not exist yet): {e}",
                    file.display()
                )
            })?;
            Ok::<_, anyhow::Error>(format!("exported {count} keys to {}", file.display()))
        } else {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let count = byok_desktop::import_keys(&config, &Keychain, &text, &passphrase).await?;
            Ok(format!("imported {count} keys"))
        }
    });
    match outcome {
        Ok(said) => {
            println!("{said}");
            0
        }
        Err(error) => {
            eprintln!("byok-desktop: error: {error:#}");
            2
        }
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
/// The running local gateway, as the window needs it.
struct Started {
    origin: String,
    token: SecretString,
    home: SecretHome,
    switch: byok_api::gateway::GatewaySwitch,
    service: byok_api::KeyService,
    stop: actix_web::dev::ServerHandle,
    /// Says the gateway thread is done (its usage written).
    done: mpsc::Receiver<()>,
}

/// Starts the local gateway on its own actix runtime thread and waits until
/// it listens (at most 2 minutes: an OS keychain may ask to be unlocked).
fn start_gateway(config: DesktopConfig) -> Result<Started, Box<dyn std::error::Error>> {
    let (ready, started) = mpsc::channel();
    let (finished, done) = mpsc::channel();
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
                            running.switch.clone(),
                            running.service.clone(),
                            running.server.handle(),
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
            let _ = finished.send(());
        })?;
    let (origin, token, home, switch, service, stop) =
        match started.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(parts)) => parts,
            Ok(Err(error)) => return Err(error.into()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err("the local gateway did not start within 2 minutes".into());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the local gateway stopped while starting".into());
            }
        };
    Ok(Started {
        origin,
        token,
        home,
        switch,
        service,
        stop,
        done,
    })
}
