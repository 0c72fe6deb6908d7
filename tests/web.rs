//! The local API as care software uses it: no token, no answer; every route answers as the
//! OpenAPI document says (status codes and JSON bodies checked against its schemas); a file
//! that would be refused is not queued and its findings come back at once; a good one is
//! delivered; the page and API listen on loopback only.

use std::collections::BTreeSet;
use std::time::Duration;

use renkei_node::federation::{
    Federation, RunningFederation, StartOptions, tune_for_loopback, wait_until,
};
use renkei_node::samples::SAMPLES;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

struct Office {
    base: String,
    token: String,
}

fn office(fed: &RunningFederation, i: usize) -> Office {
    let addr = fed.node(i).ui_addr().expect("the page and API listen");
    Office {
        base: format!("http://{addr}"),
        token: std::fs::read_to_string(fed.plan.home(i).api_token())
            .unwrap()
            .trim()
            .to_string(),
    }
}

async fn two_offices(dir: &std::path::Path) -> RunningFederation {
    let fed = Federation::builder(dir)
        .office("1310000001", "ひかり居宅介護支援事業所", &["43"])
        .office("1310000011", "さくら訪問介護ステーション", &["11"])
        .tune(tune_for_loopback)
        .create()
        .unwrap()
        .start(StartOptions::default())
        .await
        .unwrap();
    assert!(
        wait_until(WAIT, || (0..2)
            .all(|i| fed.node(i).directory_entries() == 2))
        .await,
        "the offices got the directory"
    );
    fed
}

/// A checker of the part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the document
/// uses: `$ref`, `type` (one or several), `properties`, `required`, `items`, `oneOf`, `anyOf`,
/// `allOf`, `enum`. Returns what does not match, with its place.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/");
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "dangling $ref {r}");
        return validate(doc, target, v, at, out);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let ok = alts.iter().any(|s| {
                let mut e = Vec::new();
                validate(doc, s, v, at, &mut e);
                e.is_empty()
            });
            if !ok {
                out.push(format!("{at}: matches none of {key}"));
            }
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(doc, s, v, at, out);
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        out.push(format!("{at}: {v} not in enum"));
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !fits {
            out.push(format!("{at}: {v} is not of type {types:?}"));
            return;
        }
    }
    if let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Value::as_object),
        v.as_object(),
    ) {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !obj.contains_key(r) {
                out.push(format!("{at}: required {r} is missing"));
            }
        }
        for (k, s) in props {
            if let Some(x) = obj.get(k) {
                validate(doc, s, x, &format!("{at}.{k}"), out);
            }
        }
        for k in obj.keys() {
            if !props.contains_key(k) {
                out.push(format!("{at}: {k} is not in the schema"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), v.as_array()) {
        for (i, x) in arr.iter().enumerate() {
            validate(doc, items, x, &format!("{at}[{i}]"), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let fed = two_offices(dir.path()).await;
    let http = reqwest::Client::new();
    let (cm, svc) = (office(&fed, 0), office(&fed, 1));

    // The document is served without a token and is the one the code generates.
    let doc: Value = serde_json::from_slice(
        &http
            .get(format!("{}/api/v1/openapi.json", svc.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    // The schema checker below finds a wrong answer (so its silence means something).
    let mut wrong = Vec::new();
    validate(
        &doc,
        &serde_json::json!({"$ref": "#/components/schemas/Synced"}),
        &serde_json::json!({"changed": "yes", "extra": 1}),
        "$",
        &mut wrong,
    );
    assert_eq!(wrong.len(), 3, "{wrong:?}");
    assert_eq!(
        doc,
        serde_json::to_value(renkei_node::web::openapi()).unwrap()
    );

    // A plan goes through the API, so there is a received file and receipts on both sides.
    let (plan, bytes) = SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap();
    let res = http
        .post(format!("{}/api/v1/outbox/{plan}", cm.base))
        .bearer_auth(&cm.token)
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{:?}", res.text().await);
    assert!(
        wait_until(WAIT, || fed.plan.home(1).inbox().join(plan).is_file()
            && fed.node(0).delivered() == 1)
        .await,
        "the uploaded plan is delivered"
    );

    // Every path and method of the document, without a token and with it.
    let paths = doc["paths"].as_object().unwrap();
    let mut seen = BTreeSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            seen.insert(format!("{} {path}", method.to_uppercase()));
            let url = format!(
                "{}{}",
                svc.base,
                path.replace("{name}", plan).replace("{seq}", "1")
            );
            let m: reqwest::Method = method.to_uppercase().parse().unwrap();
            let body = if path.contains("/outbox/") {
                // A file the checker refuses: answered, and never queued.
                b"not,a,plan\r\n".to_vec()
            } else if path.contains("/check/") {
                bytes.to_vec()
            } else {
                Vec::new()
            };
            let anon = http.request(m.clone(), &url).send().await.unwrap();
            assert_eq!(anon.status(), 401, "{method} {path} without a token");
            let res = http
                .request(m, &url)
                .bearer_auth(&svc.token)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16().to_string();
            let documented = &op["responses"][&status];
            assert!(
                !documented.is_null(),
                "{method} {path} answered {status}, which the document does not list"
            );
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let bytes = res.bytes().await.unwrap();
            let content = documented["content"].as_object().unwrap();
            if content_type.starts_with("application/json") {
                let schema = &content["application/json"]["schema"];
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                let mut problems = Vec::new();
                validate(&doc, schema, &v, "$", &mut problems);
                assert!(
                    problems.is_empty(),
                    "{method} {path} ({status}) does not match its schema: {problems:#?}\n{v}"
                );
            } else {
                assert!(
                    content.contains_key(&content_type),
                    "{method} {path} answered {content_type}, not in the document"
                );
            }
        }
    }
    // The routes are the ones the code registers: none missing from the document.
    let expected: BTreeSet<String> = [
        "GET /api/v1/status",
        "GET /api/v1/queue",
        "POST /api/v1/outbox/{name}",
        "GET /api/v1/received",
        "GET /api/v1/received/{name}",
        "POST /api/v1/received/{name}/imported",
        "GET /api/v1/receipts",
        "GET /api/v1/receipts/{seq}",
        "GET /api/v1/rejected",
        "POST /api/v1/check/{name}",
        "POST /api/v1/directory/sync",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(seen, expected);
    // A path outside the document is not served.
    let res = http
        .get(format!("{}/api/v1/nothing-here", svc.base))
        .bearer_auth(&svc.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_upload_returns_the_findings_and_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fed = two_offices(dir.path()).await;
    let http = reqwest::Client::new();
    let cm = office(&fed, 0);
    let (plan, good) = SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap();
    // The plan with its first record's CSV version spoiled: the checker refuses it.
    let bad = [b"X".as_slice(), good].concat();
    let res = http
        .post(format!("{}/api/v1/outbox/{plan}", cm.base))
        .bearer_auth(&cm.token)
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let v: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(!errors.is_empty(), "{v}");
    assert!(
        errors
            .iter()
            .all(|e| e["message_ja"].as_str().is_some_and(|m| !m.is_empty())
                && e["message_en"].as_str().is_some_and(|m| !m.is_empty()))
    );
    // Nothing queued, nothing left in the outbox or rejected/.
    let queue: Value = serde_json::from_slice(
        &http
            .get(format!("{}/api/v1/queue", cm.base))
            .bearer_auth(&cm.token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(queue, serde_json::json!([]));
    assert_eq!(fed.node(0).queued(), 0);
    let left: Vec<_> = std::fs::read_dir(fed.plan.home(0).outbox())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read_dir(fed.plan.home(0).rejected())
            .unwrap()
            .count(),
        0
    );
    // A file to an office not in the directory is refused at once too.
    let stranger = plan.replace("_1310000011_11_", "_1310000099_11_");
    let res = http
        .post(format!("{}/api/v1/outbox/{stranger}", cm.base))
        .bearer_auth(&cm.token)
        .body(good.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let v: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert!(
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == "RECIPIENT_UNKNOWN"),
        "{v}"
    );
    // The token file is the office user's only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(fed.plan.home(0).api_token())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // A wrong token is refused like none.
    let res = http
        .get(format!("{}/api/v1/status", cm.base))
        .bearer_auth("0".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // A page asked for under another host name (DNS rebinding) is refused.
    let res = http
        .get(format!("{}/api/v1/openapi.json", cm.base))
        .header("host", "renkei.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    fed.shutdown().await;
}

/// This machine's addresses other than loopback: the one it would use to reach the outside
/// (no packet is sent), and those `hostname -I` lists.
fn other_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for target in ["192.0.2.1:9", "[2001:db8::1]:9"] {
        let bind = if target.starts_with('[') {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        if let Ok(s) = std::net::UdpSocket::bind(bind)
            && s.connect(target).is_ok()
            && let Ok(a) = s.local_addr()
        {
            out.push(a.ip());
        }
    }
    if let Ok(o) = std::process::Command::new("hostname").arg("-I").output() {
        for w in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            if let Ok(ip) = w.parse() {
                out.push(ip);
            }
        }
    }
    out.retain(|ip: &std::net::IpAddr| !ip.is_loopback() && !ip.is_unspecified());
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_api_listen_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let fed = two_offices(dir.path()).await;
    let addr = fed.node(0).ui_addr().unwrap();
    assert!(addr.ip().is_loopback(), "{addr}");
    // On loopback it answers.
    assert!(std::net::TcpStream::connect(addr).is_ok());
    let others = other_addresses();
    if others.is_empty() {
        eprintln!(
            "\n*** this machine has no address but loopback: only the bound address was checked ***\n"
        );
    }
    for ip in others {
        let target = std::net::SocketAddr::new(ip, addr.port());
        let reached = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2));
        assert!(
            reached.is_err(),
            "the page answers on {target}, not only on loopback"
        );
        eprintln!("{target}: not reachable (as it must be)");
    }
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_moved_to_imported_reaches_its_sender_once_the_sender_is_back() {
    use renkei_node::imported::ImportedBook;
    let dir = tempfile::tempdir().unwrap();
    let mut fed = two_offices(dir.path()).await;
    let (plan, bytes) = SAMPLES
        .iter()
        .find(|(n, _)| n.starts_with("UPPLAN_") && n.contains("_1310000011_11_"))
        .unwrap();
    renkei_node::demo::drop_into_outbox(fed.plan.home(0), plan, bytes).unwrap();
    let svc_home = fed.plan.home(1).clone();
    let cm_home = fed.plan.home(0).clone();
    assert!(
        wait_until(WAIT, || svc_home.inbox().join(plan).is_file()
            && fed.node(0).delivered() == 1)
        .await
    );
    // The sender is switched off; the care software at the recipient takes the file.
    fed.stop_node(0).await;
    std::fs::create_dir_all(svc_home.imported_folder()).unwrap();
    std::fs::rename(
        svc_home.inbox().join(plan),
        svc_home.imported_folder().join(plan),
    )
    .unwrap();
    assert!(
        wait_until(WAIT, || ImportedBook::read(&svc_home).made.len() == 1).await,
        "the recipient signs and keeps its statement"
    );
    assert!(ImportedBook::read(&svc_home).delivered.is_empty());
    assert_eq!(ImportedBook::read(&cm_home).received.len(), 0);
    // The sender comes back: the statement reaches it and is kept on both sides.
    fed.start_node(0).await.unwrap();
    assert!(
        wait_until(WAIT, || ImportedBook::read(&cm_home).received.len() == 1
            && ImportedBook::read(&svc_home).delivered.len() == 1)
        .await,
        "the statement reaches the sender after it started again"
    );
    fed.shutdown().await;
    // `renkei receipts` at the sender shows the file imported, the statement verified.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["receipts", "--home"])
        .arg(&cm_home.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(" imported 20"), "{text}");
    assert!(text.contains("imported statement verified"), "{text}");
    assert_eq!(out.status.code(), Some(0), "{text}");
}
