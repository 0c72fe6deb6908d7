//! The local API's handlers and the types of its answers (`/api/v1`). Each handler carries its
//! OpenAPI description; [`routes`] is the one list of them, so the document cannot miss one.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use renkei_protocol::{ErrorCode, FileName, Finding, finding};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Api;
use crate::imported::{ImportedBook, KeptImported, MarkError};
use crate::inbox::ReceivedFile;
use crate::receipts::{KeyCheck, OwnOffice, Receipt, read_log, verify_keys};
use crate::state::lock;
use crate::status::Status;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "renkei local API",
        version = "1",
        description = "An office node's API for its care software, on 127.0.0.1 only. Every path but this document needs `Authorization: Bearer <token>`, the token in `H/state/api-token`. Texts for people come in Japanese (`*_ja`) and English (`*_en`)."
    ),
    modifiers(&BearerToken),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every API route, each with its OpenAPI description.
pub(crate) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_status))
        .routes(routes!(get_queue))
        .routes(routes!(post_outbox))
        .routes(routes!(get_received))
        .routes(routes!(get_received_file))
        .routes(routes!(post_imported))
        .routes(routes!(get_receipts))
        .routes(routes!(get_receipt))
        .routes(routes!(get_rejected))
        .routes(routes!(post_check))
        .routes(routes!(post_directory_sync))
}

// ---------------------------------------------------------------------------------------------
// Answers

/// An error, for people in both languages and for programs by its code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A stable code (`UNAUTHORIZED`, `NOT_FOUND`, `CONFLICT`, `BAD_NAME`, …).
    pub code: String,
    /// What happened and what to do, in Japanese.
    pub message_ja: String,
    /// What happened and what to do, in English.
    pub message_en: String,
    #[serde(skip)]
    #[schema(ignore)]
    status: u16,
}

impl Problem {
    pub(crate) fn new(status: StatusCode, code: &str, ja: &str, en: &str) -> Problem {
        Problem {
            code: code.into(),
            message_ja: ja.into(),
            message_en: en.into(),
            status: status.as_u16(),
        }
    }

    fn internal(e: impl std::fmt::Display) -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            &format!(
                "このパソコンでエラーが起きました。ディスクの空きと権限を確認してください: {e}"
            ),
            &format!("an error on this computer; check free disk space and permissions: {e}"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self)).into_response()
    }
}

/// The node's health: its status, its keys and its partners.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// The status `renkei status --json` shows.
    pub status: Status,
    /// Our 事業所名.
    pub office_name: String,
    /// Our keys as the directory lists them.
    pub keys: Vec<KeyView>,
    /// Unix seconds when a pre-announced key of ours starts, if one is listed.
    pub next_rotation: Option<u64>,
    /// Partners connected now or exchanged with.
    pub partners: Vec<PartnerView>,
}

/// One of our keys in the directory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// Ed25519 identity key, hex.
    pub identity: String,
    /// Unix seconds.
    pub valid_from: u64,
    /// Unix seconds.
    pub valid_until: u64,
    /// `valid`, `next` (not started) or `expired`.
    pub state: String,
    /// Whether this node runs as it now.
    pub in_use: bool,
}

/// A partner office.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PartnerView {
    /// 事業所番号.
    pub office: String,
    /// 事業所名 (from the directory).
    pub name: String,
    /// Whether its node is connected now.
    pub connected: bool,
    /// How the last file went: `direct`, `relayed`, `mailbox` or empty.
    pub route: String,
}

/// A file in the outbox queue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueEntry {
    /// The message id, hex.
    pub message_id: String,
    /// The file name.
    pub file_name: String,
    /// The recipient office.
    pub recipient: String,
    /// Its 事業所名.
    pub recipient_name: String,
    /// Bytes.
    pub size: u64,
    /// Bytes written to the partner so far (large files).
    pub sent_bytes: u64,
    /// Unix ms.
    pub queued_at_ms: u64,
    /// `waiting` (for the partner or the next try), `sending` or `deposited` (in the partner's
    /// mailbox, waiting for its node).
    pub state: String,
}

/// A file taken for sending.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// The file name.
    pub file_name: String,
    /// The recipient office.
    pub recipient: String,
    /// `queued`: in the outbox; the node sends it as any file dropped there.
    pub state: String,
}

/// One finding of the checker.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    /// Line (0: the whole file or its name).
    pub line: u64,
    /// Field (0: the whole line).
    pub field: u32,
    /// The stable error code.
    pub code: String,
    /// What is wrong and what to do, in Japanese.
    pub message_ja: String,
    /// What is wrong and what to do, in English.
    pub message_en: String,
}

impl From<&Finding> for FindingView {
    fn from(f: &Finding) -> Self {
        FindingView {
            line: f.line,
            field: f.field,
            code: f.code.as_str().to_string(),
            message_ja: f.message_ja.clone(),
            message_en: f.message_en.clone(),
        }
    }
}

/// The checker's report on one file (as `renkei check --json`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckView {
    /// The file name.
    pub file: String,
    /// Its kind's prefix, when the name's is known.
    pub kind: Option<String>,
    /// Whether it passed every check.
    pub valid: bool,
    /// Every problem, in file order.
    pub errors: Vec<FindingView>,
}

/// A receipt with what the page shows beside it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptView {
    /// Position in the log.
    pub seq: u64,
    /// `sent` or `received`.
    pub direction: String,
    /// The message id, hex.
    pub message_id: String,
    /// The file name.
    pub file_name: String,
    /// The file kind's prefix.
    pub kind: String,
    /// 対象年月 of the file, when its kind has one.
    pub month: Option<String>,
    /// The other office.
    pub partner: String,
    /// Its 事業所名.
    pub partner_name: String,
    /// SHA-256 of the plaintext, hex.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Unix ms.
    pub started_ms: u64,
    /// Unix ms of the ack.
    pub finished_ms: u64,
    /// `accepted` or `rejected`.
    pub verdict: String,
    /// The checker's codes of a rejection.
    pub codes: Vec<String>,
    /// Unix seconds of the imported statement, when there is one.
    pub imported_at: Option<u64>,
}

/// Everything an auditor needs about one file (the printable receipt).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReceiptDetail {
    /// The receipt.
    pub receipt: ReceiptView,
    /// Our office.
    pub office: String,
    /// Our 事業所名.
    pub office_name: String,
    /// The sender office of the file.
    pub sender: String,
    /// The recipient office of the file.
    pub recipient: String,
    /// The receipt's hash in the chain.
    pub receipt_hash: String,
    /// The ack, hex (signed by the recipient).
    pub ack: String,
    /// The ack's signing key, hex.
    pub ack_key: String,
    /// Unix seconds in the ack.
    pub ack_received_at: u64,
    /// Whether the ack's key is shown to be the recipient's (the signature and chain are
    /// verified whenever the log is read).
    pub ack_verified: bool,
    /// What the key check found, in both languages.
    pub ack_check: String,
    /// The imported statement, when there is one.
    pub imported: Option<ImportedView>,
}

/// A signed imported statement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportedView {
    /// The file name.
    pub file_name: String,
    /// The message id, hex.
    pub message_id: String,
    /// The other office (the sender, for statements we made).
    pub partner: String,
    /// Unix seconds, by the importer's clock.
    pub imported_at: u64,
    /// `made` (we imported it) or `received` (the partner imported ours).
    pub role: String,
    /// For ours: whether the sender has kept it.
    pub delivered: bool,
    /// For ours: left in the sender's own mailbox (the sender was off), for the sender to take
    /// when it starts; still offered directly until `delivered`.
    pub posted: bool,
    /// The signing key, hex.
    pub signed_by: String,
    /// Whether the signature verifies by a key of the importing office.
    pub verified: bool,
    /// The statement, hex (SPEC.md §8.2).
    pub statement: String,
}

/// A file that could not be sent, or a partner's file we refused.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RefusedFile {
    /// `outgoing` (ours, in `rejected/`) or `incoming` (a partner's, refused by our checks).
    pub direction: String,
    /// The file name.
    pub file_name: String,
    /// The other office, when known.
    pub partner: String,
    /// Unix ms.
    pub at_ms: u64,
    /// Why and what to do.
    pub findings: Vec<FindingView>,
    /// The report beside the file in `rejected/` (outgoing), as written there.
    pub report: String,
}

/// After a directory sync.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Synced {
    /// Whether anything new was taken.
    pub changed: bool,
    /// Offices in the directory now.
    pub entries: usize,
}

/// Filters of the receipt list; each one given must match.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceiptFilter {
    /// The other office's 事業所番号.
    pub partner: Option<String>,
    /// `YYYYMM`: the file's 対象年月, or for kinds without one the month (JST) of the receipt.
    pub month: Option<String>,
    /// The file kind's prefix (`UPPLAN`, `UPJSK`, …).
    pub kind: Option<String>,
    /// `sent` or `received`.
    pub direction: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Answer<T> = Result<T, Problem>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Answer<T> + Send + 'static) -> Answer<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(Problem::internal)?
}

fn office_name(api: &Api, office: &str) -> String {
    renkei_protocol::OfficeNumber::parse(office)
        .and_then(|o| api.shared.dir().lookup(&o).ok().flatten())
        .map(|e| e.name)
        .unwrap_or_default()
}

/// A plain file name (no folder, not hidden, not empty, at most 255 bytes).
fn plain_name(name: &str) -> Answer<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0']);
    if ok {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "BAD_NAME",
            "ファイル名はフォルダを含まない標準仕様のファイル名にしてください",
            "the file name must be a plain standard-spec file name, without folders",
        ))
    }
}

/// A verified receipt log and the length and modification time of the file it was read from.
#[derive(Debug)]
pub(crate) struct CachedLog {
    len: u64,
    modified: Option<std::time::SystemTime>,
    receipts: Arc<Vec<Receipt>>,
}

fn read_receipts(api: &Api) -> Answer<Arc<Vec<Receipt>>> {
    let path = api.shared.home.receipts();
    let meta = std::fs::metadata(&path).ok();
    let (len, modified) = (
        meta.as_ref().map_or(0, |m| m.len()),
        meta.and_then(|m| m.modified().ok()),
    );
    let mut cache = lock(&api.receipts);
    if let Some(c) = cache.as_ref()
        && c.len == len
        && c.modified == modified
    {
        return Ok(c.receipts.clone());
    }
    let receipts = Arc::new(read_log(&path).map_err(Problem::internal)?);
    *cache = Some(CachedLog {
        len,
        modified,
        receipts: receipts.clone(),
    });
    Ok(receipts)
}

/// The month a receipt is filed under: its file's 対象年月, else the receipt's month (JST).
fn month_of(r: &Receipt) -> String {
    FileName::parse(&r.file_name)
        .ok()
        .and_then(|n| n.month.map(|m| m.to_string()))
        .unwrap_or_else(|| {
            let d = crate::env::jst(r.finished_ms);
            format!("{}{}", &d[..4], &d[5..7])
        })
}

fn receipt_view(api: &Api, r: &Receipt, book: &ImportedBook) -> ReceiptView {
    let parsed = FileName::parse(&r.file_name).ok();
    ReceiptView {
        seq: r.seq,
        direction: r.direction.clone(),
        message_id: r.message_id.clone(),
        file_name: r.file_name.clone(),
        kind: parsed
            .as_ref()
            .map(|n| n.kind.prefix().to_string())
            .unwrap_or_default(),
        month: parsed.and_then(|n| n.month.map(|m| m.to_string())),
        partner: r.partner.clone(),
        partner_name: office_name(api, &r.partner),
        sha256: r.sha256.clone(),
        size: r.size,
        started_ms: r.started_ms,
        finished_ms: r.finished_ms,
        verdict: r.verdict.clone(),
        codes: r.codes.clone(),
        imported_at: book.about(&r.message_id).map(|k| k.imported_at),
    }
}

fn own_office(api: &Api) -> OwnOffice {
    OwnOffice {
        office: api.shared.office,
        keys: api
            .shared
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| k.identity.verifying_key().to_bytes())
            .collect(),
    }
}

fn imported_view(api: &Api, k: &KeptImported, book: &ImportedBook) -> ImportedView {
    let keys: Vec<[u8; 32]> = if k.role == "made" {
        own_office(api).keys
    } else {
        renkei_protocol::OfficeNumber::parse(&k.partner)
            .and_then(|o| api.shared.dir().lookup(&o).ok().flatten())
            .map(|e| {
                e.keys
                    .iter()
                    .filter(|x| x.valid_at(k.imported_at))
                    .map(|x| x.identity)
                    .collect()
            })
            .unwrap_or_default()
    };
    let checked = crate::imported::check_kept(k, &keys);
    ImportedView {
        file_name: k.file_name.clone(),
        message_id: k.message_id.clone(),
        partner: k.partner.clone(),
        imported_at: k.imported_at,
        role: k.role.clone(),
        delivered: book.delivered.contains(&k.message_id),
        posted: book.posted.contains(&k.message_id),
        signed_by: checked
            .as_ref()
            .map(|s| hex::encode(s.recipient_key))
            .unwrap_or_default(),
        verified: checked.is_ok(),
        statement: k.statement.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// The node's health: running, directory freshness, keys and the next rotation, partners,
/// queue and counters, recent errors.
#[utoipa::path(get, path = "/api/v1/status", tag = "status",
    responses((status = 200, description = "The node's health", body = Health),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_status(State(api): State<Api>) -> Answer<Json<Health>> {
    let shared = &api.shared;
    let status = crate::status::status(shared).await;
    let now = shared.env.now_secs();
    let in_use = shared.identity.verifying_key().to_bytes();
    let own = shared.dir().lookup(&shared.office).ok().flatten();
    let keys: Vec<KeyView> = own
        .iter()
        .flat_map(|e| e.keys.iter())
        .map(|k| KeyView {
            identity: hex::encode(k.identity),
            valid_from: k.valid_from,
            valid_until: k.valid_until,
            state: if k.valid_from > now {
                "next"
            } else if k.valid_until < now {
                "expired"
            } else {
                "valid"
            }
            .into(),
            in_use: k.identity == in_use,
        })
        .collect();
    let next_rotation = keys
        .iter()
        .filter(|k| k.state == "next")
        .map(|k| k.valid_from)
        .min();
    let mut partners: BTreeMap<String, PartnerView> = BTreeMap::new();
    for peer in shared.net.peers().await {
        let Some(key) = crate::net::key_of(&peer) else {
            continue;
        };
        let Ok(Some(e)) = shared.dir().active_office_by_key(&key, now) else {
            continue;
        };
        if e.office == shared.office {
            continue;
        }
        partners.insert(
            e.office.to_string(),
            PartnerView {
                office: e.office.to_string(),
                name: e.name.clone(),
                connected: true,
                route: String::new(),
            },
        );
    }
    for (office, route) in &status.routes {
        let p = partners
            .entry(office.clone())
            .or_insert_with(|| PartnerView {
                office: office.clone(),
                name: office_name(&api, office),
                connected: false,
                route: String::new(),
            });
        p.route = route.clone();
    }
    Ok(Json(Health {
        status,
        office_name: shared.config.name.clone(),
        keys,
        next_rotation,
        partners: partners.into_values().collect(),
    }))
}

/// The outbox queue: each file with its state and, for large files, how far it has gone.
#[utoipa::path(get, path = "/api/v1/queue", tag = "send",
    responses((status = 200, description = "Files waiting for delivery, oldest first", body = Vec<QueueEntry>),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_queue(State(api): State<Api>) -> Answer<Json<Vec<QueueEntry>>> {
    let items: Vec<_> = lock(&api.shared.queue).items.values().cloned().collect();
    let mut progress = lock(&api.shared.progress);
    progress.retain(|id, _| items.iter().any(|i| &i.message_id == id));
    let out = items
        .into_iter()
        .map(|i| {
            let sent = progress.get(&i.message_id).copied().unwrap_or(0);
            QueueEntry {
                state: if i.deposited_ms != 0 {
                    "deposited"
                } else if sent > 0 {
                    "sending"
                } else {
                    "waiting"
                }
                .into(),
                recipient_name: String::new(),
                message_id: i.message_id,
                file_name: i.file_name,
                recipient: i.recipient,
                size: i.size,
                sent_bytes: sent,
                queued_at_ms: i.queued_at_ms,
            }
        })
        .collect::<Vec<_>>();
    drop(progress);
    Ok(Json(
        out.into_iter()
            .map(|mut q| {
                q.recipient_name = office_name(&api, &q.recipient);
                q
            })
            .collect(),
    ))
}

/// Sends a file: the body is the file, checked and queued exactly as if it were dropped in
/// `outbox/`. A file that would be refused is not queued: the checker's findings come back at
/// once (422).
#[utoipa::path(post, path = "/api/v1/outbox/{name}", tag = "send",
    params(("name" = String, Path, description = "The standard-spec file name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 202, description = "Checked and put in the outbox; the node sends it", body = Queued),
              (status = 422, description = "Refused: nothing was queued; the checker's findings", body = CheckView),
              (status = 409, description = "A file of that name is in the outbox or queue already", body = Problem),
              (status = 400, description = "Not a plain file name", body = Problem),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn post_outbox(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Queued>), Response> {
    plain_name(&name).map_err(IntoResponse::into_response)?;
    let shared = api.shared.clone();
    let n = name.clone();
    let result = tokio::task::spawn_blocking(move || take_upload(&shared, &n, &body))
        .await
        .map_err(|e| Problem::internal(e).into_response())?;
    match result {
        Ok(recipient) => {
            api.shared.rescan.notify_one();
            Ok((
                StatusCode::ACCEPTED,
                Json(Queued {
                    file_name: name,
                    recipient,
                    state: "queued".into(),
                }),
            ))
        }
        Err(Upload::Refused(view)) => {
            Err((StatusCode::UNPROCESSABLE_ENTITY, Json(view)).into_response())
        }
        Err(Upload::Problem(p)) => Err(p.into_response()),
    }
}

/// 409: a file of the uploaded name is in the outbox or the queue.
fn name_taken() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "CONFLICT",
        "同じ名前のファイルが送信フォルダか送信待ちにあります。送信が終わってから送ってください",
        "a file of this name is in the outbox or the queue: send again once it has gone",
    )
}

enum Upload {
    Refused(CheckView),
    Problem(Problem),
}

/// Writes the upload under a hidden name in the outbox (the scan skips it), checks it as the
/// scan would, and either renames it into place (the scan then takes it) or removes it.
fn take_upload(
    shared: &Arc<crate::state::Shared>,
    name: &str,
    body: &[u8],
) -> Result<String, Upload> {
    let outbox = shared.home.outbox();
    let exists = std::fs::symlink_metadata(outbox.join(name)).is_ok()
        || lock(&shared.queue).names.contains(name);
    if exists {
        return Err(Upload::Problem(name_taken()));
    }
    let tmp = crate::files::temp_path(&outbox);
    let cleanup = |e: Upload| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    std::fs::write(&tmp, body).map_err(|e| Upload::Problem(Problem::internal(e)))?;
    let max_file = shared.config.max_file_mb.saturating_mul(1 << 20);
    let mut findings = Vec::new();
    if body.len() as u64 > max_file {
        findings.push(finding(ErrorCode::FileTooLarge, 0, 0));
    } else {
        let (report, _, _) = crate::outbox::check_path(name, &tmp, false)
            .map_err(|e| cleanup(Upload::Problem(Problem::internal(e))))?;
        findings = report.errors;
        if let Ok(n) = FileName::parse(name) {
            let ready = shared.dir().regions().next().is_some();
            // No directory yet: the file waits in the outbox as a dropped one would.
            if let Some(more) = crate::outbox::route_findings(shared, name, &n, &findings, ready) {
                findings.extend(more);
            }
        }
    }
    if !findings.is_empty() {
        return Err(cleanup(Upload::Refused(CheckView {
            file: name.to_string(),
            kind: FileName::parse(name)
                .ok()
                .map(|n| n.kind.prefix().to_string()),
            valid: false,
            errors: findings.iter().map(FindingView::from).collect(),
        })));
    }
    let recipient = FileName::parse(name)
        .map(|n| n.to.office.to_string())
        .unwrap_or_default();
    crate::files::make_private(&tmp).map_err(|e| cleanup(Upload::Problem(Problem::internal(e))))?;
    // Never over a file of that name dropped into the outbox since the check above.
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .and_then(|()| crate::files::move_no_clobber(&tmp, &outbox.join(name)))
        .and_then(|()| crate::files::sync_dir(&outbox))
        .map_err(|e| {
            cleanup(if e.kind() == std::io::ErrorKind::AlreadyExists {
                Upload::Problem(name_taken())
            } else {
                Upload::Problem(Problem::internal(e))
            })
        })?;
    Ok(recipient)
}

/// The received files in `inbox/` and `inbox/imported/`, newest first: imported or not, and
/// superseded (by which newer file) or deleted by a DLT file.
#[utoipa::path(get, path = "/api/v1/received", tag = "receive",
    responses((status = 200, description = "Received files", body = Vec<ReceivedFile>),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_received(State(api): State<Api>) -> Answer<Json<Vec<ReceivedFile>>> {
    let receipts = read_receipts(&api)?;
    let book = lock(&api.shared.imported).clone();
    let home = api.shared.home.clone();
    blocking(move || Ok(Json(crate::inbox::list(&home, &receipts, &book)))).await
}

/// One received file's bytes, as written to the inbox.
#[utoipa::path(get, path = "/api/v1/received/{name}", tag = "receive",
    params(("name" = String, Path, description = "The file name")),
    responses((status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 404, description = "No such file in inbox/ or inbox/imported/", body = Problem),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_received_file(State(api): State<Api>, Path(name): Path<String>) -> Response {
    if let Err(p) = plain_name(&name) {
        return p.into_response();
    }
    let home = api.shared.home.clone();
    for dir in [home.inbox(), home.imported_folder()] {
        let path = dir.join(&name);
        if let Ok(bytes) = tokio::task::spawn_blocking(move || {
            let mut f = crate::files::open_regular(&path).map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut out).map_err(|e| e.to_string())?;
            Ok::<_, String>(out)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()))
        {
            return ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response();
        }
    }
    Problem::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "受信フォルダにそのファイルはありません",
        "no such file in the inbox",
    )
    .into_response()
}

/// Marks a received file imported: the node signs an imported statement, keeps it, and sends
/// it to the file's sender (again until the sender keeps it). Marking it again returns the
/// same statement. The file stays where it is.
#[utoipa::path(post, path = "/api/v1/received/{name}/imported", tag = "receive",
    params(("name" = String, Path, description = "The file name")),
    responses((status = 200, description = "The signed statement", body = ImportedView),
              (status = 404, description = "No accepted received file of that name", body = Problem),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn post_imported(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Answer<Json<ImportedView>> {
    plain_name(&name)?;
    let shared = api.shared.clone();
    let k = blocking(move || {
        crate::imported::mark(&shared, &name).map_err(|e| match e {
            MarkError::NotReceived(_) => Problem::new(
                StatusCode::NOT_FOUND,
                "NOT_RECEIVED",
                "その名前で受信して受け付けたファイルはありません。ファイル名を確かめてください",
                "no accepted received file of that name: check the name",
            ),
            e => Problem::internal(e),
        })
    })
    .await?;
    let book = lock(&api.shared.imported).clone();
    Ok(Json(imported_view(&api, &k, &book)))
}

/// The receipts, newest first, filtered.
#[utoipa::path(get, path = "/api/v1/receipts", tag = "receipts",
    params(ReceiptFilter),
    responses((status = 200, description = "Receipts", body = Vec<ReceiptView>),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_receipts(
    State(api): State<Api>,
    Query(f): Query<ReceiptFilter>,
) -> Answer<Json<Vec<ReceiptView>>> {
    let receipts = read_receipts(&api)?;
    let book = lock(&api.shared.imported).clone();
    fn given(o: &Option<String>) -> Option<&str> {
        o.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }
    let out = receipts
        .iter()
        .rev()
        .filter(|r| given(&f.partner).is_none_or(|p| r.partner == p))
        .filter(|r| given(&f.direction).is_none_or(|d| r.direction == d))
        .filter(|r| given(&f.month).is_none_or(|m| month_of(r) == m.replace('-', "")))
        .filter(|r| {
            given(&f.kind).is_none_or(|k| {
                FileName::parse(&r.file_name).is_ok_and(|n| n.kind.prefix().eq_ignore_ascii_case(k))
            })
        })
        .map(|r| receipt_view(&api, r, &book))
        .collect();
    Ok(Json(out))
}

/// One receipt with everything for an audit: both offices, the file, its hash and times, the
/// partner's signed ack and its key check, and the imported statement when there is one.
#[utoipa::path(get, path = "/api/v1/receipts/{seq}", tag = "receipts",
    params(("seq" = u64, Path, description = "The receipt's position in the log")),
    responses((status = 200, description = "The receipt", body = ReceiptDetail),
              (status = 404, description = "No such receipt", body = Problem),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_receipt(State(api): State<Api>, Path(seq): Path<u64>) -> Answer<Json<ReceiptDetail>> {
    let receipts = read_receipts(&api)?;
    let Some(r) = receipts.iter().find(|r| r.seq == seq) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "その番号の受領記録はありません",
            "no receipt of that number",
        ));
    };
    let book = lock(&api.shared.imported).clone();
    let check = {
        let dir = api.shared.dir();
        verify_keys(std::slice::from_ref(r), &dir, &own_office(&api))
            .pop()
            .unwrap_or(KeyCheck::NoDirectory(String::new()))
    };
    let ack = r.parsed_ack();
    let (sender, recipient) = if r.direction == "sent" {
        (r.office.clone(), r.partner.clone())
    } else {
        (r.partner.clone(), r.office.clone())
    };
    Ok(Json(ReceiptDetail {
        receipt: receipt_view(&api, r, &book),
        office: r.office.clone(),
        office_name: api.shared.config.name.clone(),
        sender,
        recipient,
        receipt_hash: r.hash.clone(),
        ack: r.ack.clone(),
        ack_key: ack
            .as_ref()
            .map(|a| hex::encode(a.recipient_key))
            .unwrap_or_default(),
        ack_received_at: ack.as_ref().map_or(0, |a| a.received_at),
        ack_verified: check.verified(),
        ack_check: check.explain(),
        imported: book
            .about(&r.message_id)
            .map(|k| imported_view(&api, k, &book)),
    }))
}

/// Files that could not be sent (in `rejected/`, with their reports) and partners' files this
/// office refused, newest first, with why and what to do in both languages.
#[utoipa::path(get, path = "/api/v1/rejected", tag = "send",
    responses((status = 200, description = "Refused files", body = Vec<RefusedFile>),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn get_rejected(State(api): State<Api>) -> Answer<Json<Vec<RefusedFile>>> {
    let receipts = read_receipts(&api)?;
    let home = api.shared.home.clone();
    blocking(move || {
        let mut out = Vec::new();
        let dir = home.rejected();
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".error.txt") || name.starts_with('.') {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let report = std::fs::read_to_string(dir.join(crate::outbox::report_name(&name)))
                .unwrap_or_default();
            let findings = report
                .lines()
                .filter_map(|l| l.strip_prefix('[')?.split(']').next())
                .filter_map(ErrorCode::parse)
                .map(|c| FindingView::from(&finding(c, 0, 0)))
                .collect();
            let at_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as u64);
            out.push(RefusedFile {
                direction: "outgoing".into(),
                partner: FileName::parse(&name)
                    .map(|n| n.to.office.to_string())
                    .unwrap_or_default(),
                file_name: name,
                at_ms,
                findings,
                report,
            });
        }
        for r in receipts
            .iter()
            .filter(|r| r.direction == "received" && r.verdict != "accepted")
        {
            out.push(RefusedFile {
                direction: "incoming".into(),
                file_name: r.file_name.clone(),
                partner: r.partner.clone(),
                at_ms: r.finished_ms,
                findings: r
                    .codes
                    .iter()
                    .filter_map(|c| ErrorCode::parse(c))
                    .map(|c| FindingView::from(&finding(c, 0, 0)))
                    .collect(),
                report: String::new(),
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        Ok(Json(out))
    })
    .await
}

/// Checks a file against the standard without sending it (the checker's report, as `renkei
/// check --json`); 200 whether it is valid or not.
#[utoipa::path(post, path = "/api/v1/check/{name}", tag = "send",
    params(("name" = String, Path, description = "The file name to check the bytes under")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 200, description = "The checker's report", body = CheckView),
              (status = 400, description = "Not a plain file name", body = Problem),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn post_check(
    State(_api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer<Json<CheckView>> {
    plain_name(&name)?;
    blocking(move || {
        let r = renkei_protocol::check_bytes(&name, &body);
        Ok(Json(CheckView {
            file: r.file.clone(),
            kind: r.kind.clone(),
            valid: r.valid,
            errors: r.errors.iter().map(FindingView::from).collect(),
        }))
    })
    .await
}

/// Syncs the directory from the directory nodes now (instead of at the next interval).
#[utoipa::path(post, path = "/api/v1/directory/sync", tag = "status",
    responses((status = 200, description = "Synced (or nothing new)", body = Synced),
              (status = 401, description = "No or wrong token", body = Problem)))]
async fn post_directory_sync(State(api): State<Api>) -> Answer<Json<Synced>> {
    let changed = crate::node::sync_directory(&api.shared).await;
    Ok(Json(Synced {
        changed,
        entries: api.shared.dir().entry_count(),
    }))
}
