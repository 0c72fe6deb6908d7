//! A real browser for tests: Debian's headless Chromium driven over WebDriver (chromedriver on
//! a free loopback port, fantoccini as the client), with screenshots written under
//! `target/screenshots/` for a person to look at.
//!
//! Use it from a test with `#[path = "common/browser.rs"] mod browser;`, then
//! `let Some(b) = browser::Browser::start().await else { return };` — `start` says loudly why
//! there is no browser, and panics instead when `RENKEI_REQUIRE_BROWSER=1` (CI sets it, and
//! installs `chromium` and `chromium-driver`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A headless Chromium session and the chromedriver serving it (stopped when dropped).
pub(crate) struct Browser {
    /// The WebDriver client.
    pub(crate) client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Drop for Browser {
    /// Ends chromedriver and the browser it started (its process group), also when a test
    /// panicked before `close`: a killed chromedriver alone would leave Chromium running.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `<target>/screenshots/`, beside the test binary's `deps/` folder.
pub(crate) fn screenshots_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Says loudly that there is no browser; panics when `RENKEI_REQUIRE_BROWSER=1`.
fn unavailable(why: &str) -> Option<Browser> {
    let msg = format!(
        "\n\n********************************************************************\n\
         BROWSER TEST NOT RUN: {why}\n\
         Install it with: apt-get install -y chromium chromium-driver fonts-ipafont-gothic\n\
         ********************************************************************\n"
    );
    if std::env::var("RENKEI_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        panic!("{msg}(RENKEI_REQUIRE_BROWSER=1)");
    }
    eprintln!("{msg}");
    None
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (window 1280×1400, Japanese locale).
    /// `None` (said loudly) when either is missing or will not start on this machine.
    pub(crate) async fn start() -> Option<Browser> {
        let Some(driver_bin) = find_program(&["chromedriver"]) else {
            return unavailable("chromedriver is not installed (Debian package chromium-driver)");
        };
        let Some(chrome) = find_program(&["chromium", "chromium-browser", "google-chrome"]) else {
            return unavailable("chromium is not installed (Debian package chromium)");
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        use std::os::unix::process::CommandExt;
        let driver = match Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            // A group of its own, with the browser it starts: ended together (see Drop).
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => return unavailable(&format!("chromedriver does not start: {e}")),
        };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chrome,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1400",
                    "--lang=ja-JP", "--no-first-run", "--no-default-browser-check",
                ],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut driver = driver;
        let end = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > end => {
                    let _ = Command::new("kill")
                        .args(["-KILL", "--", &format!("-{}", driver.id())])
                        .stderr(Stdio::null())
                        .status();
                    let _ = driver.kill();
                    let _ = driver.wait();
                    return unavailable(&format!(
                        "chromium does not start under chromedriver: {e}"
                    ));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let shots = screenshots_dir();
        let _ = std::fs::create_dir_all(&shots);
        let shots = shots.canonicalize().unwrap_or(shots);
        Some(Browser {
            client,
            driver,
            shots,
        })
    }

    /// Opens `url` in the current tab.
    pub(crate) async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("open the page");
    }

    /// Writes a PNG screenshot of the window to `target/screenshots/<name>.png`.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Runs `script` (a function body; `arguments` as WebDriver passes them) and returns its
    /// value.
    pub(crate) async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Waits (polling the page, never reloading it) until `script` returns `true`; panics with
    /// `what` and a screenshot's path after `timeout`.
    pub(crate) async fn wait_js(&self, what: &str, script: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if self.js(script).await == serde_json::Value::Bool(true) {
                return;
            }
            if Instant::now() > end {
                let shot = self.screenshot("timeout").await;
                panic!("timed out waiting for {what} (see {})", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element a CSS selector finds (found again if the page redrew it meanwhile).
    pub(crate) async fn click(&self, css: &str) {
        let mut last = String::new();
        for _ in 0..20 {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => match e.click().await {
                    Ok(()) => return,
                    Err(err) => last = err.to_string(),
                },
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot click {css}: {last}");
    }

    /// Ends the session.
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
