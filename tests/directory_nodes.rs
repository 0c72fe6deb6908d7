//! Three directory nodes as separate processes mirror each other's regions; an office gets a
//! verified national directory from any one of them while the other two are stopped.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ed25519_dalek::SigningKey;
use renkei_node::admin;
use renkei_node::dirsync::RegionSummary;
use renkei_node::federation::{Federation, tune_for_loopback};

struct DirNode {
    data: PathBuf,
    key: PathBuf,
    p2p: String,
    http: String,
}

/// A tiny blocking HTTP GET over loopback, to stay independent of the node's own client:
/// (status line, body). Signed with `key` (SPEC.md §6.6) when given.
fn http_get(http: &str, path: &str, key: Option<&SigningKey>) -> (String, String) {
    use std::io::{Read, Write};
    let addr = http.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return Default::default();
    };
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(k) = key {
        let now = renkei_node::env::wall_clock_ms() / 1000;
        let auth = renkei_node::dirsync::http_authorization(k, "GET", path, now);
        req.push_str(&format!("Authorization: {auth}\r\n"));
    }
    req.push_str("\r\n");
    let _ = s.write_all(req.as_bytes());
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The regions a node lists, asked as directory node `key`.
fn regions_at(http: &str, key: &SigningKey) -> Vec<RegionSummary> {
    serde_json::from_str(&http_get(http, "/v1/regions", Some(key)).1).unwrap_or_default()
}

#[test]
fn three_mirrored_directory_nodes_serve_the_whole_country() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Three regions, each published only to its own association's directory node; every
    // region lists all three nodes, which mirror each other over HTTP.
    let regions = [
        ("13-tokyo", 13u8, "1310000001"),
        ("27-osaka", 27, "2710000001"),
        ("01-hokkaido", 1, "0110000001"),
    ];
    let mut b = Federation::builder(dir)
        .directory_nodes(3)
        .http(true)
        .tune(|c| {
            tune_for_loopback(c);
            c.directory_refresh_secs = 1;
        });
    for (id, pref, office) in regions {
        b = b
            .region(id, id, &[pref])
            .office(office, &format!("事業所 {office}"), &["43"]);
    }
    let plan = b.create().unwrap();
    let nodes: Vec<DirNode> = plan
        .directory_nodes
        .iter()
        .map(|n| DirNode {
            data: n.data.clone(),
            key: n.key_file.clone(),
            p2p: n.addr.clone(),
            http: n.http.clone().unwrap(),
        })
        .collect();
    let anchor = plan.anchor.clone();
    let home = plan.home(0).clone();

    let start = |i: usize| {
        let n = &nodes[i];
        let mut c = renkei();
        c.args([
            "directory",
            "serve",
            "--refresh-secs",
            "1",
            "--listen",
            &n.p2p,
            "--http",
            &n.http,
        ])
        .arg("--data")
        .arg(&n.data)
        .arg("--anchor")
        .arg(&anchor)
        .arg("--identity")
        .arg(&n.key);
        for (j, other) in nodes.iter().enumerate() {
            if j != i {
                c.args(["--mirror", &format!("http://{}", other.http)]);
            }
        }
        Proc::spawn(c, &dir.join(format!("dn{i}.log")))
    };
    let mut procs: Vec<Proc> = (0..3).map(start).collect();
    // Each node is asked as another node of the federation: the HTTP server answers members only.
    let asker = admin::read_secret(&nodes[1].key).unwrap();
    for n in &nodes {
        wait_for(
            Duration::from_secs(60),
            "every node to mirror all three regions",
            || regions_at(&n.http, &asker).len() == 3,
        );
    }
    let (status, body) = http_get(&nodes[0].http, "/v1/regions", None);
    assert!(
        status.contains(" 401 "),
        "an unsigned request: {status} {body}"
    );
    let stranger = admin::generate_signing_key();
    let (status, body) = http_get(&nodes[0].http, "/v1/regions", Some(&stranger));
    assert!(
        status.contains(" 403 "),
        "a key outside the federation: {status} {body}"
    );
    for n in &nodes {
        for (id, _, _) in regions {
            assert!(
                count_files(&n.data, id) > 0,
                "{id} mirrored into {}",
                n.data.display()
            );
        }
    }

    // Stop two; the office, which lists all three, still gets the whole country from the third.
    procs[0].kill();
    procs[1].kill();
    let mut cmd = renkei();
    cmd.arg("run").arg("--home").arg(&home.root);
    let _office = Proc::spawn(cmd, &home.root.join("node.log"));
    wait_for(
        Duration::from_secs(60),
        "the office to verify all three regions",
        || {
            std::fs::read_to_string(home.status())
                .ok()
                .and_then(|t| serde_json::from_str::<renkei_node::status::Status>(&t).ok())
                .is_some_and(|s| s.directory.len() == 3 && s.directory_entries == 3)
        },
    );
    let cached = std::fs::read_dir(home.directory_cache()).unwrap().count();
    assert!(cached >= 3, "the verified snapshots are cached");
    drop(procs);
}

fn count_files(dir: &Path, region: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(region))
                .count()
        })
        .unwrap_or(0)
}
