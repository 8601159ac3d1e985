#![expect(
    clippy::disallowed_methods,
    reason = "a test harness reads its switches"
)]

//! Browser tests of the settings page: `e2e/settings.spec.mjs` drives
//! Debian's Chromium (headless, through playwright-core) against this
//! binary and mock providers. Needs node, /usr/bin/chromium and
//! `npm ci --prefix e2e` (`.ci/run` installs all three); skipped loudly
//! elsewhere, and a failure when `CI=true`.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

#[test]
fn the_settings_page_works_in_a_real_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e2e = root.join("e2e");
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| "/usr/bin/chromium".into(), std::path::PathBuf::from);
    let ready = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && chromium.exists()
        && e2e.join("node_modules/playwright-core").exists();
    if !ready {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but node, Chromium or e2e/node_modules is missing; .ci/run installs them"
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n## SKIPPING the browser tests: needs node, {} and `npm ci --prefix e2e`\n",
            chromium.display()
        );
        return;
    }
    let _ = std::fs::remove_dir_all(e2e.join("artifacts")); // a stale screenshot must not pass
    let output = Command::new("node")
        .arg(e2e.join("settings.spec.mjs"))
        .env("BYOK_SERVER_BIN", env!("CARGO_BIN_EXE_byok-server"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("e2e: 2 passed, 0 failed"),
        "browser tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        e2e.join("artifacts/settings-phone.png").exists(),
        "screenshots are kept"
    );
}
