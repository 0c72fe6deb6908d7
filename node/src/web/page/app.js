// renkei status page: polls the local API every two seconds and draws what it says.
// No framework, no network beyond this node; every text from the node is set with
// textContent, never as HTML.
"use strict";

const T = {
  ja: {
    skip: "本文へ移動", title: "renkei 連携", login: "ログイン",
    "login-help": "renkei demo または管理者が示したログイン用リンクを開くか、H/state/api-token の内容を貼り付けてください。",
    token: "トークン", "login-button": "開く", health: "ノードの状態", keys: "鍵", key: "鍵",
    "valid-from": "有効期間（開始）", "valid-until": "有効期間（終了）", state: "状態", partners: "相手先",
    office: "事業所", name: "名称", connection: "接続", route: "経路", errors: "最近のエラー",
    queue: "送信待ち", file: "ファイル", to: "送信先", size: "サイズ", progress: "進み具合",
    "queue-empty": "送信待ちのファイルはありません。", received: "受信したファイル", from: "送信元",
    "received-at": "受信日時", action: "操作", "received-empty": "受信したファイルはありません。",
    refused: "送れなかった・受け付けなかったファイル", "refused-empty": "対応が必要なファイルはありません。",
    receipts: "受領記録", partner: "相手先", month: "対象年月", kind: "種類", search: "検索",
    direction: "送受信", time: "日時", verdict: "判定", imported: "取込", receipt: "受領証",
    back: "← 一覧に戻る", print: "印刷", "receipt-title": "受領証明書",
    "receipt-note": "この証明は renkei の受領記録（ハッシュ連鎖）と相手先の署名付き受領確認から作成しました。",
    running: "稼働中", stopped: "停止中", node: "ノード", directory: "名簿", entries: "名簿の事業所数",
    reachable: "到達性", "next-rotation": "次の鍵の使用開始", none: "なし", fresh: "最新",
    "expiring-soon": "まもなく期限切れ", expired: "期限切れ", valid: "有効", next: "予定",
    "in-use": "使用中", connected: "接続中", "not-connected": "未接続", direct: "直接",
    relayed: "中継経由", mailbox: "メールボックス経由", waiting: "送信待ち", sending: "送信中",
    deposited: "相手先のメールボックスに預け中", "mark-imported": "取込済みにする",
    "imported-at": "取込済み", "not-imported": "未取込", "superseded-by": "新しいファイルに置き換え済み：",
    "deleted-by": "削除ファイルで削除済み：", sent: "送信", "received-dir": "受信", accepted: "受付",
    rejected: "拒否", outgoing: "当方のファイル（送信できませんでした）", incoming: "相手先のファイル（受け付けませんでした）",
    "what-to-do": "修正したファイルを送信フォルダ（outbox）に置き直してください。",
    "what-to-do-in": "送信元に内容の修正と再送を依頼してください。",
    live: "自動更新中", offline: "ノードに接続できません（自動で再接続します）", open: "表示",
    "sender-office": "送信元事業所", "recipient-office": "送信先事業所", "file-name": "ファイル名",
    sha256: "SHA-256（内容のハッシュ）", bytes: "バイト", "sent-at": "送信開始", "acked-at": "受領確認の日時",
    "ack-signed": "相手先の署名付き受領確認", "ack-key": "受領確認の署名鍵", verified: "検証済み",
    "not-verified": "未検証", "imported-statement": "取込済みの証明", "imported-by": "取込の署名鍵",
    "receipt-no": "受領記録番号", "receipt-hash": "受領記録のハッシュ", "message-id": "メッセージID",
    "delivered-to-sender": "送信元に届け済み", "not-yet-delivered": "送信元へ送信中",
    "posted-to-mailbox": "送信元のメールボックスに預け済み",
    public: "直接届きます", private: "ルーターの内側（名簿サーバーの中継で届きます）", unknown: "確認中",
    "our-office": "当事業所", "no-keys": "名簿に鍵がまだありません", expires: "有効期限",
  },
  en: {
    skip: "Skip to content", title: "renkei", login: "Log in",
    "login-help": "Open the login link printed by renkei demo or given by your administrator, or paste the content of H/state/api-token.",
    token: "Token", "login-button": "Open", health: "Node health", keys: "Keys", key: "Key",
    "valid-from": "Valid from", "valid-until": "Valid until", state: "State", partners: "Partners",
    office: "Office", name: "Name", connection: "Connection", route: "Route", errors: "Recent errors",
    queue: "Outbox queue", file: "File", to: "To", size: "Size", progress: "Progress",
    "queue-empty": "No files waiting to be sent.", received: "Received files", from: "From",
    "received-at": "Received", action: "Action", "received-empty": "No files received.",
    refused: "Files not sent or refused", "refused-empty": "Nothing needs attention.",
    receipts: "Receipts", partner: "Partner", month: "Month", kind: "Kind", search: "Search",
    direction: "Direction", time: "Time", verdict: "Verdict", imported: "Imported", receipt: "Receipt",
    back: "← Back to the list", print: "Print", "receipt-title": "Certificate of receipt",
    "receipt-note": "Made from renkei's hash-chained receipt log and the partner's signed acknowledgement.",
    running: "running", stopped: "not running", node: "Node", directory: "Directory", entries: "Offices in the directory",
    reachable: "Reachability", "next-rotation": "Next key starts", none: "none", fresh: "fresh",
    "expiring-soon": "expiring soon", expired: "expired", valid: "valid", next: "announced",
    "in-use": "in use", connected: "connected", "not-connected": "not connected", direct: "direct",
    relayed: "relayed", mailbox: "through the mailbox", waiting: "waiting", sending: "sending",
    deposited: "in the partner's mailbox", "mark-imported": "Mark imported",
    "imported-at": "imported", "not-imported": "not imported", "superseded-by": "superseded by ",
    "deleted-by": "deleted by ", sent: "sent", "received-dir": "received", accepted: "accepted",
    rejected: "refused", outgoing: "Ours (could not be sent)", incoming: "A partner's (refused by our checks)",
    "what-to-do": "Put the corrected file in the outbox again.",
    "what-to-do-in": "Ask the sender to correct the file and send it again.",
    live: "live", offline: "cannot reach the node (reconnecting)", open: "open",
    "sender-office": "Sender office", "recipient-office": "Recipient office", "file-name": "File name",
    sha256: "SHA-256 of the content", bytes: "bytes", "sent-at": "Sending started", "acked-at": "Acknowledged at",
    "ack-signed": "Partner's signed acknowledgement", "ack-key": "Acknowledgement key", verified: "verified",
    "not-verified": "not verified", "imported-statement": "Imported statement", "imported-by": "Imported statement key",
    "receipt-no": "Receipt number", "receipt-hash": "Receipt hash", "message-id": "Message id",
    "delivered-to-sender": "delivered to the sender", "not-yet-delivered": "being sent to the sender",
    "posted-to-mailbox": "left in the sender's mailbox",
    public: "partners dial this office directly", private: "behind a router (reached through directory node relays)", unknown: "being found out",
    "our-office": "Our office", "no-keys": "no keys in the directory yet", expires: "expires",
  },
};

let lang = localStorage.getItem("renkei-lang") === "en" ? "en" : "ja";
let token = sessionStorage.getItem("renkei-token") || "";
let last = {};
let timer = null;

const $ = (id) => document.getElementById(id);
const t = (k) => (T[lang][k] !== undefined ? T[lang][k] : k);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of kids) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function when(ms) {
  if (!ms) return "";
  return new Intl.DateTimeFormat(lang === "ja" ? "ja-JP" : "en-GB", {
    timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  }).format(new Date(ms)) + " JST";
}
const whenSecs = (s) => when(s * 1000);

function size(n) {
  if (n < 1024) return n + " B";
  if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
  return (n / (1 << 20)).toFixed(1) + " MiB";
}

async function api(path, opts) {
  const res = await fetch("/api/v1" + path, Object.assign({
    headers: { Authorization: "Bearer " + token },
  }, opts || {}));
  if (res.status === 401) {
    token = "";
    sessionStorage.removeItem("renkei-token");
    showLogin();
    throw new Error("unauthorized");
  }
  const body = await res.json();
  if (!res.ok) throw new Error((lang === "ja" ? body.message_ja : body.message_en) || res.status);
  return body;
}

function applyLang() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  const b = $("lang-toggle");
  b.textContent = lang === "ja" ? "English" : "日本語";
  b.setAttribute("aria-label", lang === "ja" ? "Switch to English" : "日本語に切り替え");
  draw();
}

function showLogin() {
  $("login").hidden = false;
  $("dashboard").hidden = true;
  $("receipt-view").hidden = true;
}

// Redraws only what changed: a table redrawn every poll would take the keyboard focus away
// from the button a clerk has tabbed to.
function changed(node, data) {
  const key = lang + JSON.stringify(data);
  if (node.dataset.key === key) return false;
  node.dataset.key = key;
  return true;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function drawHealth(h) {
  const s = h.status;
  const stable = Object.assign({}, h, { status: Object.assign({}, s, { updated_at: 0, clock: s.clock && s.clock.warning }) });
  const fresh = Date.now() / 1000 - s.updated_at < 30;
  if (!changed($("health"), [stable, fresh])) return;
  $("office-title").textContent = s.office + " " + h.office_name;
  const age = Date.now() / 1000 - s.updated_at;
  const running = s.running && age < 30;
  const facts = [
    [t("node"), el("span", { class: running ? "ok" : "bad", text: running ? t("running") : t("stopped") })],
    [t("our-office"), s.office + " " + h.office_name],
  ];
  for (const r of s.directory) {
    facts.push([t("directory") + " " + r.region, el("span", { class: r.state === "fresh" ? "ok" : "bad",
      text: t(r.state) + " (seq " + r.seq + ", " + t("expires") + " " + whenSecs(r.expires_at) + ")" })]);
  }
  facts.push([t("entries"), String(s.directory_entries)]);
  if (s.reachability) facts.push([t("reachable"), t(s.reachability)]);
  facts.push([t("next-rotation"), h.next_rotation ? whenSecs(h.next_rotation) : t("none")]);
  $("health-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const warn = s.clock && s.clock.warning;
  $("clock-warning").hidden = !warn;
  $("clock-warning").textContent = warn || "";
  fill($("keys-table").tBodies[0], h.keys.length ? h.keys.map((k) => el("tr", {},
    el("td", { class: "hex", text: k.identity.slice(0, 16) + "…" }),
    el("td", { text: whenSecs(k.valid_from) }), el("td", { text: whenSecs(k.valid_until) }),
    el("td", { text: t(k.state) + (k.in_use ? " · " + t("in-use") : "") })))
    : [el("tr", {}, el("td", { colspan: 4, text: t("no-keys") }))]);
  fill($("partners-table").tBodies[0], h.partners.map((p) => el("tr", {},
    el("td", { text: p.office }), el("td", { text: p.name }),
    el("td", { class: p.connected ? "ok" : "", text: p.connected ? t("connected") : t("not-connected") }),
    el("td", { text: p.route ? t(p.route) : "" }))));
  $("errors").replaceChildren(...s.last_errors.map((e) => el("li", { text: e })));
}

function drawQueue(q) {
  if (!changed($("queue"), q)) return;
  $("queue-empty").hidden = q.length > 0;
  fill($("queue-table").tBodies[0], q.map((i) => el("tr", { "data-name": i.file_name },
    el("td", { class: "file", text: i.file_name }),
    el("td", { text: i.recipient + " " + i.recipient_name }),
    el("td", { text: size(i.size) }),
    el("td", { text: t(i.state) }),
    el("td", {}, el("progress", { max: String(Math.max(i.size, 1)), value: String(i.sent_bytes),
      "aria-label": t("progress") + " " + i.file_name }),
      " " + Math.floor(100 * i.sent_bytes / Math.max(i.size, 1)) + "%"))));
}

async function markImported(name, button) {
  button.disabled = true;
  try {
    await api("/received/" + encodeURIComponent(name) + "/imported", { method: "POST" });
    await poll();
  } catch (e) {
    button.disabled = false;
    alert(e.message);
  }
}

function drawReceived(list) {
  if (!changed($("received"), list)) return;
  $("received-empty").hidden = list.length > 0;
  fill($("received-table").tBodies[0], list.map((f) => {
    const state = [];
    if (f.imported_at) {
      state.push(el("span", { class: "ok imported", text: t("imported-at") + " " + whenSecs(f.imported_at) }));
      state.push(el("br"), el("span", { class: "small", text: f.imported_delivered ? t("delivered-to-sender") : f.imported_posted ? t("posted-to-mailbox") : t("not-yet-delivered") }));
    } else state.push(el("span", { text: t("not-imported") }));
    if (f.superseded_by) state.push(el("br"), el("span", { class: "bad superseded", text: t("superseded-by") + f.superseded_by }));
    if (f.deleted_by) state.push(el("br"), el("span", { class: "bad deleted", text: t("deleted-by") + f.deleted_by }));
    const action = f.imported_at ? "" : el("button", { type: "button", class: "mark-imported", "data-name": f.file_name,
      onclick: (ev) => markImported(f.file_name, ev.currentTarget) }, t("mark-imported"));
    return el("tr", { "data-name": f.file_name },
      el("td", { class: "file", text: f.file_name }),
      el("td", { text: f.sender }),
      el("td", { text: when(f.received_ms) }),
      el("td", {}, ...state),
      el("td", {}, action));
  }));
}

function drawRefused(list) {
  if (!changed($("refused"), list)) return;
  $("refused-empty").hidden = list.length > 0;
  $("refused-list").replaceChildren(...list.map((r) => el("li", {},
    el("strong", { text: t(r.direction) + ": " }), el("span", { class: "file", text: r.file_name }),
    r.partner ? " (" + r.partner + ")" : "", " ", el("span", { class: "small", text: when(r.at_ms) }),
    el("ul", {}, ...r.findings.map((f) => el("li", {}, "[" + f.code + "] ",
      lang === "ja" ? f.message_ja : f.message_en))),
    el("p", { text: r.direction === "outgoing" ? t("what-to-do") : t("what-to-do-in") }))));
}

function drawReceipts(list) {
  if (!changed($("receipts-table"), list)) return;
  fill($("receipts-table").tBodies[0], list.map((r) => el("tr", { "data-name": r.file_name, "data-seq": String(r.seq) },
    el("td", { text: String(r.seq) }),
    el("td", { text: r.direction === "sent" ? t("sent") : t("received-dir") }),
    el("td", { class: "file", text: r.file_name }),
    el("td", { text: r.partner + " " + r.partner_name }),
    el("td", { text: when(r.finished_ms) }),
    el("td", { class: r.verdict === "accepted" ? "ok" : "bad", text: t(r.verdict) }),
    el("td", { class: r.imported_at ? "ok imported" : "", text: r.imported_at ? t("imported-at") + " " + whenSecs(r.imported_at) : "" }),
    el("td", {}, el("a", { class: "receipt-link", href: "#receipt=" + r.seq }, t("open"))))));
}

function draw() {
  if (last.health) drawHealth(last.health);
  if (last.queue) drawQueue(last.queue);
  if (last.received) drawReceived(last.received);
  if (last.refused) drawRefused(last.refused);
  if (last.receipts) drawReceipts(last.receipts);
  if (last.receipt) drawReceipt(last.receipt);
  $("live").textContent = last.offline ? t("offline") : t("live");
}

function filterQuery() {
  const p = new URLSearchParams();
  for (const [k, id] of [["partner", "f-partner"], ["month", "f-month"], ["kind", "f-kind"]]) {
    const v = $(id).value.trim();
    if (v) p.set(k, v);
  }
  const s = p.toString();
  return s ? "?" + s : "";
}

async function poll() {
  if (!token) return showLogin();
  try {
    const [health, queue, received, refused, receipts] = await Promise.all([
      api("/status"), api("/queue"), api("/received"), api("/rejected"), api("/receipts" + filterQuery()),
    ]);
    Object.assign(last, { health, queue, received, refused, receipts, offline: false });
  } catch (e) {
    if (!token) return;
    last.offline = true;
  }
  draw();
}

function drawReceipt(d) {
  const r = d.receipt;
  const verified = (ok) => el("span", { class: ok ? "ok" : "bad", text: ok ? t("verified") : t("not-verified") });
  const facts = [
    [t("receipt-no"), String(r.seq)],
    [t("sender-office"), d.sender + (d.sender === d.office ? " " + d.office_name : " " + r.partner_name)],
    [t("recipient-office"), d.recipient + (d.recipient === d.office ? " " + d.office_name : " " + r.partner_name)],
    [t("file-name"), r.file_name],
    [t("size"), r.size + " " + t("bytes")],
    [t("sha256"), el("span", { class: "hex", text: r.sha256 })],
    [t("message-id"), el("span", { class: "hex", text: r.message_id })],
    [t("sent-at"), when(r.started_ms)],
    [t("acked-at"), whenSecs(d.ack_received_at)],
    [t("verdict"), t(r.verdict) + (r.codes.length ? " (" + r.codes.join(", ") + ")" : "")],
    [t("ack-signed"), el("span", {}, verified(d.ack_verified), " ", el("span", { class: "small", text: d.ack_check }))],
    [t("ack-key"), el("span", { class: "hex", text: d.ack_key })],
  ];
  if (d.imported) {
    facts.push([t("imported-statement"), el("span", {}, el("span", { class: "imported", text: whenSecs(d.imported.imported_at) + " " }),
      verified(d.imported.verified))]);
    facts.push([t("imported-by"), el("span", { class: "hex", text: d.imported.signed_by })]);
  } else {
    facts.push([t("imported-statement"), t("none")]);
  }
  facts.push([t("receipt-hash"), el("span", { class: "hex", text: d.receipt_hash })]);
  $("receipt-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}

async function route() {
  const m = location.hash.match(/^#receipt=(\d+)$/);
  if (m && token) {
    try {
      last.receipt = await api("/receipts/" + m[1]);
    } catch (e) {
      last.receipt = null;
      return;
    }
    drawReceipt(last.receipt);
    $("dashboard").hidden = true;
    $("receipt-view").hidden = false;
    $("receipt-h").focus();
  } else if (token) {
    last.receipt = null;
    $("receipt-view").hidden = true;
    $("dashboard").hidden = false;
  }
}

function start() {
  const m = location.hash.match(/^#token=([0-9a-fA-F]{64})$/);
  if (m) {
    token = m[1];
    sessionStorage.setItem("renkei-token", token);
    // The token leaves the address bar (and the history) at once.
    history.replaceState(null, "", location.pathname);
  }
  $("receipt-h").tabIndex = -1;
  $("lang-toggle").addEventListener("click", () => {
    lang = lang === "ja" ? "en" : "ja";
    localStorage.setItem("renkei-lang", lang);
    applyLang();
  });
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token-input").value.trim();
    sessionStorage.setItem("renkei-token", token);
    $("login").hidden = true;
    $("dashboard").hidden = false;
    poll();
    if (!timer) timer = setInterval(poll, 2000);
  });
  $("receipt-filter").addEventListener("submit", (ev) => { ev.preventDefault(); poll(); });
  $("print").addEventListener("click", () => window.print());
  $("back").addEventListener("click", (ev) => { ev.preventDefault(); history.pushState(null, "", location.pathname); route(); });
  window.addEventListener("hashchange", route);
  applyLang();
  if (!token) return showLogin();
  $("dashboard").hidden = false;
  route();
  poll();
  timer = setInterval(poll, 2000);
}

document.addEventListener("DOMContentLoaded", start);
