//! The server binary as an operator runs it: first start, configuration
//! errors, subcommands, rotation and SIGTERM.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test"
)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_byok-server");
const KEY_ONE: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const KEY_TWO: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn command(dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .current_dir(dir)
        .env_clear()
        .env("BYOK_BIND", "127.0.0.1:0");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Running {
    child: Child,
    base_url: String,
    stdout: mpsc::Receiver<String>,
}

impl Running {
    /// Starts `serve` and waits for the "listening" log line.
    fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = command(dir, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        let stdout = lines(child.stdout.take().unwrap());
        let address = loop {
            let line = stderr
                .recv_timeout(Duration::from_secs(60))
                .expect("the server logs its address");
            if let Some(rest) = line.split("address=").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || while stderr.recv().is_ok() {});
        Self {
            child,
            base_url: format!("http://{address}"),
            stdout,
        }
    }

    /// The admin token of the first-start banner, if one was printed.
    fn admin_token(&self) -> Option<String> {
        while let Ok(line) = self.stdout.recv_timeout(Duration::from_millis(300)) {
            if let Some(token) = line.trim().strip_prefix("byok_") {
                return Some(format!("byok_{token}"));
            }
        }
        None
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.child.wait().unwrap()
    }
}

async fn create_user(base_url: &str, admin: &str, user: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base_url}/api/admin/users"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "user_id": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn status(base_url: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_generates_a_master_key_and_one_admin_token_then_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &[]);
    let key_file = dir.path().join("byok-data/master.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dir.path().join("byok-data/byok.db").exists());
    let admin = server
        .admin_token()
        .expect("the first start prints an admin token");
    assert_eq!(status(&server.base_url, "/readyz", "").await, 200);
    let alice = create_user(&server.base_url, &admin, "alice").await;
    assert!(server.terminate().success(), "SIGTERM is a clean exit");

    // A second start: the same master key, no new admin token, data kept.
    let key = std::fs::read_to_string(&key_file).unwrap();
    let server = Running::start(dir.path(), &[]);
    assert_eq!(server.admin_token(), None);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    assert_eq!(
        status(&server.base_url, "/api/user/api-keys/alice/keys", &alice).await,
        200
    );
    assert_eq!(
        status(&server.base_url, "/api/user/api-keys/alice/keys", &admin).await,
        200
    );
    assert!(server.terminate().success());
}

#[test]
fn a_bad_setting_stops_the_server_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("BYOK_BIND", "nowhere")], "BYOK_BIND"),
        (
            &[("BYOK_MASTER_KEY", "not-a-real-key-SECRETVALUE")],
            "BYOK_MASTER_KEY",
        ),
        (
            &[("BYOK_MASTER_KEY_FILE", "/nonexistent/master.key")],
            "BYOK_MASTER_KEY_FILE",
        ),
        (
            &[("BYOK_DATABASE_URL", "mysql://user:SECRETVALUE@host/db")],
            "BYOK_DATABASE_URL",
        ),
        (&[("BYOK_ADMIN_TOKEN", "SECRETVALUE")], "BYOK_ADMIN_TOKEN"),
        // Long enough, but nine different characters: guessable.
        (
            &[("BYOK_ADMIN_TOKEN", "SECRETVALUESECRETVALUESECRETVALUE")],
            "BYOK_ADMIN_TOKEN",
        ),
        (
            &[("BYOK_RETIRED_MASTER_KEYS", "SECRETVALUE")],
            "BYOK_RETIRED_MASTER_KEYS",
        ),
        (
            &[("BYOK_PRICE_CATALOG_FILE", "/nonexistent/prices.toml")],
            "BYOK_PRICE_CATALOG_FILE",
        ),
        (
            &[("BYOK_BASELINE_MODEL", "openai:gpt-99")],
            "BYOK_BASELINE_MODEL",
        ),
    ];
    for (env, setting) in cases {
        let output = command(dir.path(), env).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or_default();
        assert_eq!(output.status.code(), Some(2), "{setting}: {stderr}");
        assert!(
            last.starts_with(&format!("byok-server: error: {setting}")),
            "{setting}: {stderr}"
        );
        assert!(
            !stderr.contains("SECRETVALUE"),
            "{setting} leaked its value: {stderr}"
        );
    }
    let output = command(dir.path(), &[])
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--config"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_and_a_master_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let v1: &[(&str, &str)] = &[
        ("BYOK_MASTER_KEY", KEY_ONE),
        ("BYOK_ADMIN_TOKEN", "an-admin-token-of-enough-length"),
    ];
    let output = command(dir.path(), v1)
        .args(["create-user", "alice"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("byok_"))
        .unwrap()
        .to_owned();

    let server = Running::start(dir.path(), v1);
    let saved = reqwest::Client::new()
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "api_key": "sk-proj-rotate-me-0123456789abcdef0123456789" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    assert!(server.terminate().success());

    // Key two active, key one retired: rewrap moves the stored key.
    let rotating: &[(&str, &str)] = &[
        ("BYOK_MASTER_KEY", KEY_TWO),
        ("BYOK_MASTER_KEY_ID", "2"),
        ("BYOK_RETIRED_MASTER_KEYS", &format!("1:{KEY_ONE}")),
    ];
    let output = command(dir.path(), rotating)
        .arg("rewrap")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains("rewrapped 1, already current 0, failed 0")
    );

    // Key one can now go. Starting with only key one fails, naming the fix.
    let v2: &[(&str, &str)] = &[("BYOK_MASTER_KEY", KEY_TWO), ("BYOK_MASTER_KEY_ID", "2")];
    let server = Running::start(dir.path(), v2);
    assert_eq!(
        status(&server.base_url, "/api/user/api-keys/alice/keys", &token).await,
        200
    );
    assert!(server.terminate().success());
    let output = command(dir.path(), v1).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("master key id 2, which is not configured")
    );

    // Revoking the token by its id locks it out.
    let token_id = token.split('_').nth(1).unwrap();
    let output = command(dir.path(), v2)
        .args(["revoke-token", token_id])
        .output()
        .unwrap();
    assert!(output.status.success());
    let server = Running::start(dir.path(), v2);
    assert_eq!(
        status(&server.base_url, "/api/user/api-keys/alice/keys", &token).await,
        401
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_cleanly() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    // A provider that takes 1.5 s to answer a key test.
    let provider = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/models"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_millis(1500))
                .set_body_json(serde_json::json!({"object": "list", "data": []})),
        )
        .expect(1)
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/v1", provider.uri());
    let env: &[(&str, &str)] = &[
        ("BYOK_ADMIN_TOKEN", "an-admin-token-of-enough-length"),
        ("BYOK_OPENAI_BASE_URL", &base),
    ];
    let server = Running::start(dir.path(), env);
    let token = create_user(&server.base_url, "an-admin-token-of-enough-length", "alice").await;
    let client = reqwest::Client::new();
    let saved = client
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "api_key": "sk-proj-inflight-0123456789abcdef0123456789" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);

    let url = format!(
        "{}/api/user/api-keys/alice/keys/openai/test",
        server.base_url
    );
    #[expect(
        clippy::disallowed_methods,
        reason = "the request runs while the test signals the server"
    )]
    let in_flight = tokio::spawn(async move { client.post(url).bearer_auth(token).send().await });
    tokio::time::sleep(Duration::from_millis(500)).await; // the test is now waiting on the provider
    let status = server.terminate();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["status"],
        "valid"
    );
    assert!(status.success(), "SIGTERM is a clean exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_gateway_load_loses_no_usage_record() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(400)).set_body_json(serde_json::json!({
            "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
        })))
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/v1", provider.uri());
    let env: &[(&str, &str)] = &[
        ("BYOK_ADMIN_TOKEN", "an-admin-token-of-enough-length"),
        ("BYOK_OPENAI_BASE_URL", &base),
    ];
    let server = Running::start(dir.path(), env);
    let token = create_user(&server.base_url, "an-admin-token-of-enough-length", "alice").await;
    let client = reqwest::Client::new();
    let saved = client
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "api_key": "sk-proj-loadtest-0123456789abcdef0123456789" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);

    let url = format!("{}/v1/chat/completions", server.base_url);
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .collect();
    let load = futures_util::future::join_all(requests);
    let signal = async {
        tokio::time::sleep(Duration::from_millis(200)).await; // all 20 are waiting on the provider
        tokio::task::spawn_blocking(move || server.terminate())
            .await
            .unwrap()
    };
    let (statuses, exit) = tokio::join!(load, signal);
    assert!(exit.success(), "{exit:?}");
    let answered = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    assert_eq!(
        answered, 20,
        "in-flight requests finish during a graceful stop: {statuses:?}"
    );

    let store = byok_store::Store::connect(byok_store::StoreConfig::new(
        dir.path().join("byok-data/byok.db").display().to_string(),
    ))
    .await
    .unwrap();
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    let records = store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        answered,
        "every answered request has its usage record"
    );
}

#[test]
fn catalog_check_reports_every_problem_and_needs_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = command(dir.path(), &[])
        .args(["catalog", "check"])
        .output()
        .unwrap();
    assert!(builtin.status.success(), "{builtin:?}");
    assert!(String::from_utf8_lossy(&builtin.stdout).contains("0 problems"));
    let file = dir.path().join("prices.toml");
    std::fs::write(
        &file,
        r#"
        bogus = 1
        [[models]]
        provider = "openai"
        model = "gpt-x"
        input = "1.00"
        context_window = 1000
        tasks = ["general"]
        tier = 1
        as_of = "2026-11-30"
        source = "test"
        [policy.general]
        candidates = ["openai:o4-mini", "openai:nope"]
        "#,
    )
    .unwrap();
    let checked = command(dir.path(), &[])
        .args(["catalog", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    let out = String::from_utf8_lossy(&checked.stdout);
    for expected in [
        "problem: the file: unknown field `bogus`",
        "missing `output`",
        "openai:nope names a model no catalog prices",
        "openai:o4-mini is not in this file",
    ] {
        assert!(out.contains(expected), "{expected} in\n{out}");
    }
    assert!(
        !dir.path().join("byok-data").exists(),
        "a check opens no database"
    );
}

/// The last line the failed command wrote on stderr.
fn failure(output: &std::process::Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_locked_and_tied_to_its_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("byok-data");
    let server = Running::start(dir.path(), &[]);
    let admin = server.admin_token().unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory is the owner's only");
    assert_eq!(mode(&data.join("byok.db")), 0o600);
    // A second server on the same files refuses, with one line.
    let second = command(dir.path(), &[]).args(["serve"]).output().unwrap();
    assert!(
        failure(&second).contains("another byok server is using"),
        "{second:?}"
    );
    let alice = create_user(&server.base_url, &admin, "alice").await;
    let saved = reqwest::Client::new()
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&alice)
        .json(&serde_json::json!({"api_key": format!("sk-proj-{}", "k".repeat(40))}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    assert!(server.terminate().success());

    // Another key under the same id: refused, whatever the stored rows say.
    let other = command(dir.path(), &[("BYOK_MASTER_KEY", KEY_TWO)])
        .output()
        .unwrap();
    assert!(
        failure(&other).contains("is not the key this database uses under that id"),
        "{other:?}"
    );
    // A deleted key file is not silently replaced.
    let key_file = data.join("master.key");
    let original = std::fs::read_to_string(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let regenerated = command(dir.path(), &[]).output().unwrap();
    assert!(
        failure(&regenerated).contains("no new key was generated"),
        "{regenerated:?}"
    );
    assert!(
        !key_file.exists(),
        "no stray key is left to be used next time"
    );
    // Restored, it serves again.
    std::fs::write(&key_file, original).unwrap();
    let server = Running::start(dir.path(), &[]);
    assert_eq!(
        status(&server.base_url, "/api/user/api-keys/alice/keys", &alice).await,
        200
    );
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_token_is_printed_only_once_the_server_listens() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let refused = command(dir.path(), &[("BYOK_BIND", &port)])
        .output()
        .unwrap();
    assert!(failure(&refused).contains("BYOK_BIND"), "{refused:?}");
    assert!(
        !String::from_utf8_lossy(&refused.stdout).contains("byok_"),
        "no token printed for a server that never listened"
    );
    drop(taken);
    // The token was not used up: the next start that listens prints it.
    let server = Running::start(dir.path(), &[]);
    assert!(server.admin_token().is_some());
    assert_eq!(status(&server.base_url, "/readyz", "").await, 200);
    assert!(server.terminate().success());
}

/// Ten answered requests, then (after `settle`) three still waiting on the
/// provider when the server gets SIGKILL; returns the usage records found.
async fn usage_after_kill_9(
    durability: &str,
    settle: Duration,
) -> Vec<byok_store::usage::UsageRecord> {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let provider = MockServer::start().await;
    let answer = serde_json::json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    });
    // Ten quick answers, then answers that take far longer than the test.
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer.clone()))
        .up_to_n_times(10)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(60))
                .set_body_json(answer),
        )
        .mount(&provider)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let base = format!("{}/v1", provider.uri());
    let admin = "an-admin-token-of-enough-length";
    let env: &[(&str, &str)] = &[
        ("BYOK_ADMIN_TOKEN", admin),
        ("BYOK_OPENAI_BASE_URL", &base),
        ("BYOK_USAGE_DURABILITY", durability),
        // Batched mode's group-commit window (strict mode ignores it).
        ("BYOK_USAGE_BATCH_WINDOW_MS", "300"),
    ];
    let mut server = Running::start(dir.path(), env);
    let token = create_user(&server.base_url, admin, "alice").await;
    let client = reqwest::Client::new();
    let saved = client
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "api_key": "sk-proj-killtest-0123456789abcdef0123456789" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    let url = format!("{}/v1/chat/completions", server.base_url);
    let chat = || {
        client
            .post(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(chat().await.unwrap().status(), 200);
    }
    tokio::time::sleep(settle).await;
    // Three more, still waiting on the provider when the process is killed.
    let in_flight = futures_util::future::join_all((0..3).map(|_| chat()));
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.child.kill().unwrap(); // SIGKILL: no drain, no goodbye
        server.child.wait().unwrap()
    };
    let (_, status) = tokio::join!(in_flight, kill);
    assert!(!status.success());

    let store = byok_store::Store::connect(byok_store::StoreConfig::new(
        dir.path().join("byok-data/byok.db").display().to_string(),
    ))
    .await
    .unwrap();
    let alice = byok_core::UserId::parse("alice").unwrap();
    let (from, to) = (
        byok_store::now() - chrono::Duration::hours(1),
        byok_store::now() + chrono::Duration::hours(1),
    );
    store
        .run(move |c| byok_store::usage::list_for_user(c, &alice, from, to))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_strict_mode_loses_no_answered_request_and_marks_calls_in_flight() {
    let records = usage_after_kill_9("strict", Duration::ZERO).await;
    let outcome = |o: &str| records.iter().filter(|r| r.outcome == o).count();
    assert_eq!(
        outcome("success"),
        10,
        "every answered request: {records:?}"
    );
    assert_eq!(outcome("incomplete"), 3, "every call in flight is marked");
}

/// The batched promise: a crash loses at most the batch window (300 ms
/// here). Requests answered a second before the kill are all on disk; calls in flight leave
/// nothing (no `incomplete` rows in this mode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_batched_mode_keeps_what_was_answered_a_second_before() {
    let records = usage_after_kill_9("batched", Duration::from_secs(1)).await;
    let outcome = |o: &str| records.iter().filter(|r| r.outcome == o).count();
    assert_eq!(
        outcome("success"),
        10,
        "answered a second before the kill: {records:?}"
    );
    assert_eq!(
        outcome("incomplete"),
        0,
        "batched mode writes no intent rows"
    );
    assert_eq!(records.len(), 10, "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_reports_an_intact_chain_and_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let server = Running::start(dir.path(), &[]);
    let admin = server.admin_token().unwrap();
    create_user(&server.base_url, &admin, "alice").await;
    assert!(server.terminate().success());
    let verified = command(dir.path(), &[])
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert!(verified.status.success(), "{verified:?}");
    let out = String::from_utf8_lossy(&verified.stdout);
    assert!(
        out.contains("events checked; head ") && out.trim_end().ends_with("intact"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_keys_and_import_keys_move_keys_between_servers_under_a_passphrase() {
    use std::os::unix::fs::PermissionsExt as _;
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a: &[(&str, &str)] = &[("BYOK_MASTER_KEY", KEY_ONE)];
    let output = command(one.path(), a)
        .args(["create-user", "alice"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", failure(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout
        .split_whitespace()
        .find(|w| w.starts_with("byok_"))
        .unwrap()
        .to_owned();
    let key = "sk-proj-export-me-0123456789abcdef0123456789";
    let server = Running::start(one.path(), a);
    let saved = reqwest::Client::new()
        .post(format!(
            "{}/api/user/api-keys/alice/keys/openai",
            server.base_url
        ))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "api_key": key, "label": "moved" }))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 201);
    assert!(server.terminate().success());

    // No passphrase: refused, naming the setting.
    let file = one.path().join("alice.byok-export");
    let output = command(one.path(), a)
        .args(["export-keys", "--user", "alice", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        failure(&output).contains("BYOK_EXPORT_PASSPHRASE"),
        "{}",
        failure(&output)
    );
    let with_passphrase = [a, &[("BYOK_EXPORT_PASSPHRASE", "moving day passphrase")]].concat();
    let output = command(one.path(), &with_passphrase)
        .args(["export-keys", "--user", "alice", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", failure(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("exported 1 keys of alice"));
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_to_string(&file).unwrap().contains(key));

    // Another server, with another master key.
    let b: &[(&str, &str)] = &[("BYOK_MASTER_KEY", KEY_TWO)];
    let output = command(two.path(), b)
        .args(["create-user", "bob"])
        .output()
        .unwrap();
    let bob = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("byok_"))
        .unwrap()
        .to_owned();
    let wrong = [b, &[("BYOK_EXPORT_PASSPHRASE", "not the passphrase")]].concat();
    let output = command(two.path(), &wrong)
        .args(["import-keys", "--user", "bob", "--in"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        failure(&output).contains("does not open"),
        "{}",
        failure(&output)
    );
    let right = [b, &[("BYOK_EXPORT_PASSPHRASE", "moving day passphrase")]].concat();
    let output = command(two.path(), &right)
        .args(["import-keys", "--user", "bob", "--in"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", failure(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("imported 1 keys for bob"));
    let server = Running::start(two.path(), b);
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/user/api-keys/bob/keys", server.base_url))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["keys"][0]["provider"], "openai");
    assert_eq!(listed["keys"][0]["label"], "moved");
    assert!(server.terminate().success());
}
