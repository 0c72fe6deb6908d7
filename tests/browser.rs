//! The status page in a real browser (headless Chromium over WebDriver), as office staff use
//! it: a service office's page shows a file the moment it is delivered, without a reload; the
//! page switches to English; a printable receipt opens; the clerk marks the file imported, and
//! the sending care-management office's page shows it as imported. Screenshots of each step go
//! to `target/screenshots/`.

#[path = "common/browser.rs"]
mod browser;

use std::time::Duration;

use renkei_node::demo::drop_into_outbox;
use renkei_node::federation::{Federation, StartOptions, tune_for_loopback};
use renkei_node::samples::SAMPLES;

const WAIT: Duration = Duration::from_secs(60);

fn login_link(fed: &renkei_node::federation::RunningFederation, i: usize) -> String {
    let addr = fed.node(i).ui_addr().expect("the office's page listens");
    let token = std::fs::read_to_string(fed.plan.home(i).api_token()).unwrap();
    renkei_node::web::login_url(addr, token.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_see_a_delivery_live_switch_language_print_a_receipt_and_mark_it_imported() {
    let Some(b) = browser::Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fed = Federation::builder(dir.path())
        .office("1310000001", "ひかり居宅介護支援事業所", &["43"])
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .tune(tune_for_loopback)
        .create()
        .unwrap()
        .start(StartOptions::default())
        .await
        .unwrap();
    let ready = renkei_node::federation::wait_until(WAIT, || {
        (0..2).all(|i| fed.node(i).directory_entries() == 2)
    })
    .await;
    assert!(ready, "the offices got the directory");

    // The service office's page, opened by its login link: the token leaves the address bar.
    b.open(&login_link(&fed, 1)).await;
    b.wait_js(
        "the dashboard",
        "return !document.getElementById('dashboard').hidden && document.getElementById('office-title').textContent.includes('1310000011');",
        WAIT,
    )
    .await;
    assert_eq!(
        b.js("return location.hash;").await,
        serde_json::json!(""),
        "the token is not left in the address bar"
    );
    assert_eq!(b.js("return document.documentElement.lang;").await, "ja");
    b.screenshot("01-service-office-empty").await;

    // A plan arrives while the page is open; a marker proves the page is not reloaded.
    b.js("window.__sameDocument = 42; return true;").await;
    let (name, bytes) = SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap();
    drop_into_outbox(fed.plan.home(0), name, bytes).unwrap();
    let row = format!("#received-table tr[data-name='{name}']");
    b.wait_js(
        "the delivered file on the page",
        &format!("return document.querySelector(\"{row}\") !== null;"),
        WAIT,
    )
    .await;
    assert_eq!(
        b.js("return window.__sameDocument;").await,
        serde_json::json!(42),
        "the file appeared without a reload"
    );
    b.screenshot("02-delivered-live").await;

    // English by the switch; Japanese again after.
    b.click("#lang-toggle").await;
    b.wait_js(
        "English",
        "return document.documentElement.lang === 'en' && document.getElementById('received-h').textContent === 'Received files';",
        WAIT,
    )
    .await;
    b.screenshot("03-english").await;

    // The printable receipt of the file.
    let link = format!("#receipts-table tr[data-name='{name}'] a.receipt-link");
    b.wait_js(
        "the receipt in the list",
        &format!("return document.querySelector(\"{link}\") !== null;"),
        WAIT,
    )
    .await;
    b.click(&link).await;
    b.wait_js(
        "the receipt view",
        &format!(
            "const v = document.getElementById('receipt-view'); return !v.hidden && v.textContent.includes('{name}') && v.textContent.includes('verified');"
        ),
        WAIT,
    )
    .await;
    b.screenshot("04-printable-receipt").await;
    b.click("#back").await;
    b.wait_js(
        "the list again",
        "return !document.getElementById('dashboard').hidden;",
        WAIT,
    )
    .await;

    // The clerk marks it imported; the page says so.
    b.click(&format!(
        "#received-table button.mark-imported[data-name='{name}']"
    ))
    .await;
    b.wait_js(
        "imported on the recipient's page",
        &format!("return document.querySelector(\"{row} .imported\") !== null;"),
        WAIT,
    )
    .await;
    b.screenshot("05-marked-imported").await;

    // The sender's page shows the partner's signed imported statement.
    b.open(&login_link(&fed, 0)).await;
    let sent = format!("#receipts-table tr[data-name='{name}'] td.imported");
    b.wait_js(
        "imported on the sender's page",
        &format!("return document.querySelector(\"{sent}\") !== null;"),
        WAIT,
    )
    .await;
    b.screenshot("06-sender-sees-imported").await;
    b.click(&format!(
        "#receipts-table tr[data-name='{name}'] a.receipt-link"
    ))
    .await;
    b.wait_js(
        "the sender's receipt with the imported statement",
        "const v = document.getElementById('receipt-view'); return !v.hidden && v.querySelector('.imported') !== null;",
        WAIT,
    )
    .await;
    b.screenshot("07-sender-receipt-with-imported-statement")
        .await;
    // The page at 200% zoom still shows its content without a horizontal scroll of the page.
    b.click("#back").await;
    b.js("document.body.style.zoom = '2'; return true;").await;
    b.wait_js(
        "the page at 200%",
        "return !document.getElementById('dashboard').hidden && document.documentElement.scrollWidth <= window.innerWidth + 2;",
        WAIT,
    )
    .await;
    b.screenshot("08-zoom-200").await;
    b.close().await;
    fed.shutdown().await;
}

/// Issue 10: the lab's HTML report, as a researcher opens it — from a file, with no network —
/// shows its title, its four charts drawn (each an SVG with marks in it) and the fault window
/// shaded; the screenshot goes to `target/screenshots/lab-report.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_report_opens_from_a_file_with_its_charts_drawn() {
    let Some(b) = browser::Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let scenario = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/lab/directory-outage-day.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["lab", "run"])
        .arg(&scenario)
        .arg("--report")
        .arg(dir.path().join("report.json"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "renkei lab run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.open(&format!("file://{}", html.display())).await;
    b.wait_js(
        "the report",
        "return document.title.startsWith('renkei lab') && document.querySelectorAll('svg').length >= 4;",
        WAIT,
    )
    .await;
    // Every chart has something drawn in it, and the outage is shaded on the deliveries chart.
    let drawn = b
        .js("return Array.from(document.querySelectorAll('svg')).map(s => s.querySelectorAll('rect,path,circle,line').length);")
        .await;
    let drawn: Vec<u64> = serde_json::from_value(drawn).unwrap();
    assert!(drawn.iter().all(|n| *n > 0), "empty chart: {drawn:?}");
    let shaded = b
        .js("return document.querySelectorAll('svg rect[opacity]').length;")
        .await;
    assert!(shaded.as_u64().unwrap_or(0) >= 1, "no fault window shaded");
    // Nothing is fetched from anywhere: no external script, style or image.
    let external = b
        .js("return document.querySelectorAll('script[src],link[href],img[src]').length;")
        .await;
    assert_eq!(external, serde_json::json!(0));
    b.screenshot("lab-report").await;
    b.close().await;
}
