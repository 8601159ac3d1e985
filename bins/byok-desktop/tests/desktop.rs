//! byok Desktop's own code, without a display: where the master key and
//! the local token live (keychain, or the owner-only fallback file), and the
//! single-user local gateway (the same routes the server serves) answering
//! the local user's tools.

#![expect(clippy::unwrap_used, reason = "a test fails on a bad fixture")]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;

use byok_desktop::{DesktopConfig, SecretHome, Secrets, master_key, sign_in_script};
use secrecy::{ExposeSecret as _, SecretString};

/// Whether `python3` has the `openai` package; when not, a loud skip, or
/// a failure when `CI=true` (`.ci/run` installs it).
fn python_has_openai() -> bool {
    use std::io::Write as _;
    let found = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    #[expect(
        clippy::disallowed_methods,
        reason = "CI=true turns a skip into a failure"
    )]
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(found || !ci, "CI=true but python3 cannot import openai");
    if !found {
        let _ = writeln!(
            std::io::stderr(),
            "\n## SKIPPING the OpenAI SDK call: no python3 openai\n"
        );
    }
    found
}

/// No keychain at all (as in CI, or a desktop without a Secret Service).
struct NoKeychain;

impl Secrets for NoKeychain {
    fn get(&self, _: &str) -> anyhow::Result<Option<SecretString>> {
        anyhow::bail!("no Secret Service on the session bus")
    }
    fn set(&self, _: &str, _: &SecretString) -> anyhow::Result<()> {
        anyhow::bail!("no Secret Service on the session bus")
    }
}

/// A keychain in memory.
#[derive(Default)]
struct MemoryKeychain(Mutex<HashMap<String, String>>);

impl Secrets for MemoryKeychain {
    fn get(&self, name: &str) -> anyhow::Result<Option<SecretString>> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(name)
            .map(|v| SecretString::from(v.clone())))
    }
    fn set(&self, name: &str, value: &SecretString) -> anyhow::Result<()> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.expose_secret().to_owned());
        Ok(())
    }
}

/// A keychain that is there but refuses writes (locked).
struct ReadOnly;

impl Secrets for ReadOnly {
    fn get(&self, _: &str) -> anyhow::Result<Option<SecretString>> {
        Ok(None)
    }
    fn set(&self, _: &str, _: &SecretString) -> anyhow::Result<()> {
        anyhow::bail!("locked")
    }
}

#[test]
fn without_a_keychain_the_master_key_is_kept_in_an_owner_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let (first, home) = master_key(&NoKeychain, dir.path(), true).unwrap();
    let path = dir.path().join("master-key");
    assert_eq!(home, SecretHome::File(path.clone()));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The same key next time.
    let (again, _) = master_key(&NoKeychain, dir.path(), true).unwrap();
    assert_eq!(
        first.to_base64().expose_secret(),
        again.to_base64().expose_secret()
    );
}

#[test]
fn with_a_keychain_the_master_key_is_there_and_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let keychain = MemoryKeychain::default();
    let (first, home) = master_key(&keychain, dir.path(), true).unwrap();
    assert_eq!(home, SecretHome::Keychain);
    assert!(!dir.path().join("master-key").exists());
    let (again, _) = master_key(&keychain, dir.path(), true).unwrap();
    assert_eq!(
        first.to_base64().expose_secret(),
        again.to_base64().expose_secret()
    );
    // A keychain that refuses writes: the file, with its warning.
    let other = tempfile::tempdir().unwrap();
    let (_, home) = master_key(&ReadOnly, other.path(), true).unwrap();
    assert_eq!(home, SecretHome::File(other.path().join("master-key")));
}

#[test]
fn a_fallback_file_wins_over_a_keychain_that_appears_later() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = master_key(&NoKeychain, dir.path(), true).unwrap();
    let keychain = MemoryKeychain::default();
    let (later, home) = master_key(&keychain, dir.path(), true).unwrap();
    assert!(matches!(home, SecretHome::File(_)));
    assert_eq!(
        first.to_base64().expose_secret(),
        later.to_base64().expose_secret()
    );
}

#[test]
fn the_window_gets_the_token_on_the_local_origin_only() {
    let token = SecretString::from("byok_0123456789abcdef_x\"y".to_owned());
    let script = sign_in_script("http://127.0.0.1:8765", &token);
    assert!(script.starts_with("if (location.origin === \"http://127.0.0.1:8765\")"));
    // The token is a JSON string literal: quotes cannot end it early.
    assert!(
        script.contains(r#""byok_0123456789abcdef_x\"y""#),
        "{script}"
    );
}

/// The local gateway: the settings page, the local user's token, a key
/// added through the same API the page uses, an OpenAI-SDK-shaped call
/// answered by a mock provider on that key, and the same data after a
/// restart.
#[test]
#[expect(clippy::too_many_lines, reason = "one scenario, read top to bottom")]
fn the_local_gateway_serves_the_local_user_and_survives_a_restart() {
    actix_web::rt::System::new().block_on(async {
        let mock = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/v1/chat/completions"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello from your own key."}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
            })))
            .mount(&mock)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let config = DesktopConfig {
            data_dir: dir.path().join("data"),
            port: 0,
            providers: byok_providers::ProviderSettings {
                openai_base_url: format!("{}/v1", mock.uri()).parse().unwrap(),
                ..byok_providers::ProviderSettings::default()
            },
        };
        let client = reqwest::Client::new();
        let running = byok_desktop::start(&config, &NoKeychain).await.unwrap();
        let (origin, token) = (running.origin.clone(), running.token.clone());
        assert!(origin.starts_with("http://127.0.0.1:"), "{origin}");
        let handle = running.server.handle();
        actix_web::rt::spawn(running.server);
        actix_web::rt::spawn(running.usage_task);

        let page = client.get(format!("{origin}/")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("byok"));
        let bearer = format!("Bearer {}", token.expose_secret());
        let saved = client
            .post(format!("{origin}/api/user/api-keys/me/keys/openai"))
            .header("authorization", &bearer)
            .json(&serde_json::json!({"api_key": "sk-proj-desktopKEY0123456789abcdefghijklmnop"}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 201);
        let answer: serde_json::Value = client
            .post(format!("{origin}/v1/chat/completions"))
            .header("authorization", &bearer)
            .json(&serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["choices"][0]["message"]["content"], "Hello from your own key.");
        // The official OpenAI SDK, pointed at the local gateway.
        if python_has_openai() {
            let (base, key) = (format!("{origin}/v1"), token.expose_secret().to_owned());
            let output = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import os; from openai import OpenAI; \
                     c = OpenAI(base_url=os.environ['BASE'], api_key=os.environ['KEY'], max_retries=0); \
                     print(c.chat.completions.create(model='auto', messages=[{'role': 'user', 'content': 'hi'}]).choices[0].message.content)",
                ])
                .env("BASE", base)
                .env("KEY", key)
                .output()
                .unwrap();
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "Hello from your own key.");
        }
        // Paused from the menu: tools are refused, the page keeps working.
        running.switch.pause();
        let paused = client
            .get(format!("{origin}/v1/models"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(paused.status(), 503);
        let body: serde_json::Value = paused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "gateway_paused");
        let keys = client
            .get(format!("{origin}/api/user/api-keys/me/keys"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(keys.status(), 200);
        running.switch.resume();
        let resumed = client
            .get(format!("{origin}/v1/models"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(resumed.status(), 200);
        handle.stop(true).await;
        running.usage.shutdown();

        // Restart on the same data: the same token works, the key is there.
        let again = byok_desktop::start(&config, &NoKeychain).await.unwrap();
        assert_eq!(again.token.expose_secret(), token.expose_secret());
        // A revoked local token is replaced at the next start.
        let me = byok_core::UserId::parse("me").unwrap();
        let principal = again.service.lookup(Some(token.expose_secret())).await.unwrap().unwrap();
        let listed = again
            .service
            .list_tokens(&principal, &me, &byok_api::RequestContext::default())
            .await
            .unwrap();
        for listed in &listed {
            again.service.operator().revoke_token(&listed.id).await.unwrap();
        }
        let renewed = byok_desktop::start(&DesktopConfig { port: 0, ..config.clone() }, &NoKeychain)
            .await
            .unwrap();
        assert_ne!(renewed.token.expose_secret(), token.expose_secret());
        assert!(renewed.service.lookup(Some(renewed.token.expose_secret())).await.unwrap().is_some());
        let bearer = format!("Bearer {}", renewed.token.expose_secret());
        let origin = again.origin.clone();
        let handle = again.server.handle();
        actix_web::rt::spawn(again.server);
        let keys: serde_json::Value = client
            .get(format!("{origin}/api/user/api-keys/me/keys"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(keys["keys"][0]["provider"], "openai");
        handle.stop(true).await;
    });
}

/// The local user's keys leave in a passphrase-sealed file and arrive in
/// another install (another data directory, another master key).
#[test]
fn keys_move_between_desktops_under_a_passphrase() {
    actix_web::rt::System::new().block_on(async {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = |dir: &std::path::Path| DesktopConfig {
            data_dir: dir.join("data"),
            port: 0,
            providers: byok_providers::ProviderSettings::default(),
        };
        let running = byok_desktop::start(&config(one.path()), &NoKeychain)
            .await
            .unwrap();
        let (origin, token) = (running.origin.clone(), running.token.clone());
        let handle = running.server.handle();
        actix_web::rt::spawn(running.server);
        let saved = reqwest::Client::new()
            .post(format!("{origin}/api/user/api-keys/me/keys/anthropic"))
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .json(&serde_json::json!({"api_key": format!("sk-ant-api03-{}AA", "m".repeat(93))}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 201);
        handle.stop(true).await;

        let passphrase = SecretString::from("desk to desk passphrase".to_owned());
        let (file, count) =
            byok_desktop::export_keys(&config(one.path()), &NoKeychain, &passphrase)
                .await
                .unwrap();
        assert_eq!(count, 1);
        assert!(!file.contains("sk-ant-api03"));
        let wrong = SecretString::from("not the right passphrase".to_owned());
        let refused = byok_desktop::import_keys(&config(two.path()), &NoKeychain, &file, &wrong)
            .await
            .unwrap_err();
        assert!(
            format!("{refused:#}").contains("does not open"),
            "{refused:#}"
        );
        let added = byok_desktop::import_keys(&config(two.path()), &NoKeychain, &file, &passphrase)
            .await
            .unwrap();
        assert_eq!(added, 1);
        let (service, _) = byok_desktop::open(&config(two.path()), &NoKeychain)
            .await
            .unwrap();
        let exported = service
            .operator()
            .export_keys(&byok_core::UserId::parse("me").unwrap())
            .await
            .unwrap();
        assert_eq!(
            exported[0].api_key.expose_secret(),
            format!("sk-ant-api03-{}AA", "m".repeat(93))
        );
    });
}

/// A key its provider refuses raises a notice, in words, once.
#[test]
fn a_refused_key_raises_one_notice() {
    actix_web::rt::System::new().block_on(async {
        let mock = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/v1/models"))
            .respond_with(wiremock::ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}
            })))
            .mount(&mock)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let config = DesktopConfig {
            data_dir: dir.path().join("data"),
            port: 0,
            providers: byok_providers::ProviderSettings {
                openai_base_url: format!("{}/v1", mock.uri()).parse().unwrap(),
                ..byok_providers::ProviderSettings::default()
            },
        };
        let running = byok_desktop::start(&config, &NoKeychain).await.unwrap();
        let (origin, bearer) = (
            running.origin.clone(),
            format!("Bearer {}", running.token.expose_secret()),
        );
        let service = running.service.clone();
        let handle = running.server.handle();
        actix_web::rt::spawn(running.server);
        let client = reqwest::Client::new();
        let saved = client
            .post(format!("{origin}/api/user/api-keys/me/keys/openai"))
            .header("authorization", &bearer)
            .json(&serde_json::json!({"api_key": "sk-proj-refusedKEY0123456789abcdefghijklmnop"}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 201);
        assert!(byok_desktop::take_notices(&service).await.unwrap().is_empty());
        let tested = client
            .post(format!("{origin}/api/user/api-keys/me/keys/openai/test"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(tested.status(), 200);
        let notices = byok_desktop::take_notices(&service).await.unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert_eq!(notices[0].title, "OpenAI refused a key");
        assert!(notices[0].body.contains("replace it"), "{:?}", notices[0]);
        assert!(byok_desktop::take_notices(&service).await.unwrap().is_empty(), "once");
        handle.stop(true).await;
    });
}

/// A keychain that cannot be read while keys are sealed: the app stops,
/// saying why, and makes no new master key over them.
#[test]
fn an_unreadable_keychain_never_replaces_the_master_key_of_sealed_keys() {
    actix_web::rt::System::new().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = DesktopConfig {
            data_dir: dir.path().join("data"),
            port: 0,
            providers: byok_providers::ProviderSettings::default(),
        };
        let keychain = MemoryKeychain::default();
        let running = byok_desktop::start(&config, &keychain).await.unwrap();
        let (origin, bearer) = (
            running.origin.clone(),
            format!("Bearer {}", running.token.expose_secret()),
        );
        let handle = running.server.handle();
        actix_web::rt::spawn(running.server);
        let saved = reqwest::Client::new()
            .post(format!("{origin}/api/user/api-keys/me/keys/openai"))
            .header("authorization", &bearer)
            .json(&serde_json::json!({"api_key": "sk-proj-sealedKEY0123456789abcdefghijklmnop"}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 201);
        handle.stop(true).await;
        // Locked (or gone): the app stops, and nothing is replaced.
        let error = byok_desktop::start(&config, &NoKeychain).await.unwrap_err();
        assert!(
            format!("{error:#}").contains("unlock the keychain"),
            "{error:#}"
        );
        assert!(
            !dir.path().join("data/master-key").exists(),
            "no new key was written"
        );
        // Unlocked again: the same key opens the sealed one.
        let again = byok_desktop::start(&config, &keychain).await.unwrap();
        let exported = again
            .service
            .operator()
            .export_keys(&byok_core::UserId::parse("me").unwrap())
            .await
            .unwrap();
        assert_eq!(exported.len(), 1);
    });
}
