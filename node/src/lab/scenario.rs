//! Scenario files (`renkei lab run SCENARIO.toml`): the federation, the month's workload and a
//! timeline of faults. Unknown keys, unknown fault kinds and values out of range are refused
//! with a message that names the key and says what to write instead.

use std::path::Path;

use serde::Deserialize;

/// A whole scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name shown in the report.
    #[serde(default)]
    pub name: String,
    /// Seeds every random choice of the run (which offices, which minute, message ids).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Simulated days, from day 1 00:00 (the run's calendar starts on 2026-09-27, so the
    /// default workload sends October's plans on day 2 and their 実績 on day 37).
    #[serde(default = "default_days")]
    pub days: u32,
    /// The smallest step of the virtual clock while files are on their way, seconds.
    #[serde(default = "default_step")]
    pub step_secs: u64,
    /// The largest step while nothing moves (files wait for an office that is off), seconds.
    #[serde(default = "default_max_step")]
    pub max_step_secs: u64,
    /// Files are dropped at the next multiple of this after their minute, seconds (default
    /// 60: at their minute). Larger values gather a large region's drops into fewer moves of
    /// the clock; latencies are still measured from the moment each file was dropped.
    #[serde(default = "default_step")]
    pub drop_resolution_secs: u64,
    /// The federation.
    pub federation: FederationSpec,
    /// The month's files.
    #[serde(default)]
    pub workload: Workload,
    /// Offices' node settings the scenario changes from the lab's defaults.
    #[serde(default)]
    pub office_config: OfficeConfig,
    /// The faults, in any order.
    #[serde(default, rename = "fault")]
    pub faults: Vec<Fault>,
}

fn default_seed() -> u64 {
    1
}
fn default_days() -> u32 {
    38
}
fn default_step() -> u64 {
    60
}
fn default_max_step() -> u64 {
    3600
}

/// How many offices and directory nodes, in how many regions, with which partner graph.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    /// Care-management offices (居宅介護支援事業所, kind 43).
    pub care_management: usize,
    /// Service offices (訪問介護 11, 通所介護 15, 福祉用具貸与 17, in turn).
    pub service: usize,
    /// Directory nodes (each also a mailbox and a relay). Every region lists every node.
    #[serde(default = "one")]
    pub directory_nodes: usize,
    /// Regions (each vouches for one prefecture; offices are spread over them in turn).
    #[serde(default = "one")]
    pub regions: usize,
    /// Service offices each care-management office works with (chosen by the seed, within
    /// its region).
    #[serde(default = "default_partners")]
    pub partners_per_cm: usize,
    /// Users (利用者) per care-management office: sets how many rows the files carry.
    #[serde(default = "default_users")]
    pub users_per_cm: usize,
}

fn one() -> usize {
    1
}
fn default_partners() -> usize {
    20
}
fn default_users() -> usize {
    90
}

/// The month's files, all valid standard files made from the bundled sample month.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Day the month-end 予定 go out (each office at its own minute of office hours).
    #[serde(default = "default_plans_day")]
    pub plans_day: u32,
    /// The kinds sent to each partner at month end.
    #[serde(default = "default_plan_kinds")]
    pub plan_kinds: Vec<String>,
    /// Day the 実績 (UPJSK) come back from every partner; 0: none.
    #[serde(default = "default_actuals_day")]
    pub actuals_day: u32,
    /// Day of the mid-month changes; 0: none.
    #[serde(default = "default_changes_day")]
    pub changes_day: u32,
    /// Share of (care-management office, partner) pairs that get a changed UPPLAN mid-month.
    #[serde(default = "default_changes")]
    pub changes: f64,
    /// Share of pairs that get a DLTPLAN (a user's plan withdrawn) mid-month.
    #[serde(default = "default_deletes")]
    pub deletes: f64,
}

fn default_plans_day() -> u32 {
    2
}
fn default_plan_kinds() -> Vec<String> {
    [
        "UPHOSOKU", "UP1KYO", "UP2KYO", "UP3KYO", "UPPLAN", "UPSIKYU",
    ]
    .map(String::from)
    .to_vec()
}
fn default_actuals_day() -> u32 {
    37
}
fn default_changes_day() -> u32 {
    18
}
fn default_changes() -> f64 {
    0.2
}
fn default_deletes() -> f64 {
    0.05
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            plans_day: default_plans_day(),
            plan_kinds: default_plan_kinds(),
            actuals_day: default_actuals_day(),
            changes_day: default_changes_day(),
            changes: default_changes(),
            deletes: default_deletes(),
        }
    }
}

/// Node settings of every office (`renkei.toml` keys of the same names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeConfig {
    /// A partner unreachable this long gets its files through the mailbox, seconds.
    #[serde(default = "default_mailbox_after")]
    pub mailbox_after_secs: u64,
    /// Seconds between looks at the mailboxes.
    #[serde(default = "default_mailbox_poll")]
    pub mailbox_poll_secs: u64,
    /// Longest retry delay, seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: u64,
    /// Seconds between directory syncs.
    #[serde(default = "default_refresh")]
    pub directory_refresh_secs: u64,
    /// How long the mailboxes keep an envelope, days.
    #[serde(default = "default_mailbox_ttl")]
    pub mailbox_ttl_days: u64,
}

fn default_mailbox_after() -> u64 {
    600
}
fn default_mailbox_poll() -> u64 {
    600
}
fn default_retry_max() -> u64 {
    300
}
fn default_refresh() -> u64 {
    1800
}
fn default_mailbox_ttl() -> u64 {
    14
}

impl Default for OfficeConfig {
    fn default() -> Self {
        OfficeConfig {
            mailbox_after_secs: default_mailbox_after(),
            mailbox_poll_secs: default_mailbox_poll(),
            retry_max_secs: default_retry_max(),
            directory_refresh_secs: default_refresh(),
            mailbox_ttl_days: default_mailbox_ttl(),
        }
    }
}

/// Which offices a fault hits: named ones (`cm0`, `sv12`), or a share of them chosen by the
/// seed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offices {
    /// Named offices: `cm<i>` is the i-th care-management office, `sv<i>` the i-th service
    /// office.
    #[serde(default)]
    pub offices: Vec<String>,
    /// A share (0–1) of the offices of `role`, chosen by the seed.
    #[serde(default)]
    pub share: f64,
    /// `any` (default), `cm` or `service`: where `share` chooses from.
    #[serde(default)]
    pub role: Role,
}

/// Which offices a share is chosen from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Every office.
    #[default]
    Any,
    /// Care-management offices.
    Cm,
    /// Service offices.
    Service,
}

/// A fault on the timeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Fault {
    /// Offices lose power at `at` (or crash at a fault point on its next hit) and start
    /// again `restart_after` later.
    Crash {
        /// When.
        at: String,
        /// Which offices.
        #[serde(flatten)]
        offices: Offices,
        /// A crash point to arm instead of an immediate power cut (`crash-before-ack`, …).
        #[serde(default)]
        point: Option<String>,
        /// How long the office stays down before it starts again (default: at once).
        #[serde(default)]
        restart_after: Option<String>,
    },
    /// Offices switched off (night, weekend, a week) from `at` for `for`.
    OfficeOff {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// Which offices.
        #[serde(flatten)]
        offices: Offices,
    },
    /// A directory node (and its mailbox and relay) down from `at` for `for`.
    DirectoryOutage {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// Which node (0-based).
        node: usize,
    },
    /// Every connection attempt between offices fails with probability `rate`, and a file
    /// dropped meanwhile has its stream cut mid-transfer with probability `rate`.
    LinkLoss {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// 0–1.
        rate: f64,
    },
    /// Every new connection takes `ms` of virtual time to set up.
    Latency {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// Milliseconds.
        ms: u64,
    },
    /// The offices chosen cannot reach the others (nor they them); directory nodes stay
    /// reachable from both sides unless listed in `cut_nodes` (then only from the chosen side).
    Partition {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// One side of the partition.
        #[serde(flatten)]
        offices: Offices,
        /// Directory nodes on the chosen offices' side only.
        #[serde(default)]
        cut_nodes: Vec<usize>,
    },
    /// The association revokes offices at `at` and publishes.
    Revoke {
        /// When.
        at: String,
        /// Which offices.
        #[serde(flatten)]
        offices: Offices,
    },
    /// Offices make new keys starting at once; the association approves and publishes, and
    /// each node restarts under its new key `restart_after` later.
    RotateKeys {
        /// When.
        at: String,
        /// Which offices.
        #[serde(flatten)]
        offices: Offices,
        /// When the node restarts under the new key (default 1h).
        #[serde(default)]
        restart_after: Option<String>,
    },
    /// One office's computer clock set wrong by `minutes` (negative: behind) from `at` for
    /// `for` (the node restarts on the wrong clock and again when it is set right).
    ClockSkew {
        /// When.
        at: String,
        /// How long.
        #[serde(rename = "for")]
        duration: String,
        /// Which office.
        office: String,
        /// Minutes ahead (negative: behind).
        minutes: i64,
    },
    /// A directory node's mailbox is lost with everything in it (its disk replaced): the node
    /// stops at `at`, its mailbox folder is deleted, and it starts again empty.
    MailboxLost {
        /// When.
        at: String,
        /// Which node (0-based).
        node: usize,
    },
}

/// A scenario that cannot run, with what to change.
#[derive(Debug, thiserror::Error)]
#[error("シナリオ {path}: {ja} / scenario {path}: {en}")]
pub struct ScenarioError {
    path: String,
    ja: String,
    en: String,
}

fn bad(ja: impl Into<String>, en: impl Into<String>) -> (String, String) {
    (ja.into(), en.into())
}

/// A time on the run's calendar: `day N HH:MM` (day 1 is the first day), in milliseconds from
/// the start.
pub(crate) fn parse_at(s: &str) -> Option<u64> {
    let rest = s.trim().strip_prefix("day")?.trim_start();
    let (day, time) = match rest.split_once(' ') {
        Some((d, t)) => (d, t.trim()),
        None => (rest, "00:00"),
    };
    let day: u64 = day.parse().ok().filter(|d| *d >= 1)?;
    let (h, m) = time.split_once(':')?;
    let (h, m): (u64, u64) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    Some(((day - 1) * 86400 + h * 3600 + m * 60) * 1000)
}

/// A duration: a number and `s`, `m`, `h` or `d` (`90m`, `8h`, `3d`), in milliseconds.
pub(crate) fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: u64 = s[..s.len() - unit.len_utf8()].trim().parse().ok()?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(secs * 1000)
}

impl Fault {
    /// Its kind as written in the scenario.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::OfficeOff { .. } => "office-off",
            Fault::DirectoryOutage { .. } => "directory-outage",
            Fault::LinkLoss { .. } => "link-loss",
            Fault::Latency { .. } => "latency",
            Fault::Partition { .. } => "partition",
            Fault::Revoke { .. } => "revoke",
            Fault::RotateKeys { .. } => "rotate-keys",
            Fault::ClockSkew { .. } => "clock-skew",
            Fault::MailboxLost { .. } => "mailbox-lost",
        }
    }

    /// When it starts, as written.
    pub fn at(&self) -> &str {
        match self {
            Fault::Crash { at, .. }
            | Fault::OfficeOff { at, .. }
            | Fault::DirectoryOutage { at, .. }
            | Fault::LinkLoss { at, .. }
            | Fault::Latency { at, .. }
            | Fault::Partition { at, .. }
            | Fault::Revoke { at, .. }
            | Fault::RotateKeys { at, .. }
            | Fault::ClockSkew { at, .. }
            | Fault::MailboxLost { at, .. } => at,
        }
    }

    /// How long it lasts, as written (faults of a moment: none).
    pub fn duration(&self) -> Option<&str> {
        match self {
            Fault::OfficeOff { duration, .. }
            | Fault::DirectoryOutage { duration, .. }
            | Fault::LinkLoss { duration, .. }
            | Fault::Latency { duration, .. }
            | Fault::Partition { duration, .. }
            | Fault::ClockSkew { duration, .. } => Some(duration),
            _ => None,
        }
    }

    /// The offices it names or chooses, if it is about offices.
    pub fn offices(&self) -> Option<&Offices> {
        match self {
            Fault::Crash { offices, .. }
            | Fault::OfficeOff { offices, .. }
            | Fault::Partition { offices, .. }
            | Fault::Revoke { offices, .. }
            | Fault::RotateKeys { offices, .. } => Some(offices),
            _ => None,
        }
    }
}

/// Parses `cm<i>` / `sv<i>` into (care-management?, index).
pub(crate) fn parse_office_name(s: &str) -> Option<(bool, usize)> {
    if let Some(i) = s.strip_prefix("cm") {
        return i.parse().ok().map(|i| (true, i));
    }
    s.strip_prefix("sv")?.parse().ok().map(|i| (false, i))
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: shown.clone(),
            ja: format!("読めません（{e}）。ファイルの場所を確認してください"),
            en: format!("cannot be read ({e}): check the path"),
        })?;
        Scenario::parse(&text, &shown)
    }

    /// Parses and checks a scenario's text; `path` names it in messages.
    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            path: path.into(),
            ja: format!(
                "TOML として読めないか、知らないキーがあります。README の「研究者向け」の書式を確認してください: {}",
                e.message()
            ),
            en: format!(
                "not valid, or an unknown key (see README, 'For researchers'): {}",
                e.to_string().trim()
            ),
        })?;
        s.check().map_err(|(ja, en)| ScenarioError {
            path: path.into(),
            ja,
            en,
        })?;
        Ok(s)
    }

    // One arm per fault kind, each with its own message, reads better than guards.
    #[allow(clippy::collapsible_match)]
    fn check(&self) -> Result<(), (String, String)> {
        let f = &self.federation;
        if f.care_management == 0 || f.service == 0 {
            return Err(bad(
                "federation.care_management と federation.service は1以上にしてください",
                "federation.care_management and federation.service must be at least 1",
            ));
        }
        if f.care_management + f.service > 200_000 {
            return Err(bad(
                "事業所は合計 200,000 までです",
                "at most 200,000 offices in all",
            ));
        }
        if f.directory_nodes == 0 || f.directory_nodes > 16 {
            return Err(bad(
                "federation.directory_nodes は 1〜16 にしてください",
                "federation.directory_nodes must be 1 to 16",
            ));
        }
        if f.regions == 0 || f.regions > 47 {
            return Err(bad(
                "federation.regions は 1〜47（都道府県の数まで）にしてください",
                "federation.regions must be 1 to 47 (one prefecture each)",
            ));
        }
        if f.regions > f.care_management || f.regions > f.service {
            return Err(bad(
                "地域ごとに居宅介護支援事業所とサービス事業所が1つ以上必要です（regions を減らしてください）",
                "every region needs at least one care-management and one service office: lower regions",
            ));
        }
        if f.partners_per_cm == 0 {
            return Err(bad(
                "federation.partners_per_cm は1以上にしてください",
                "federation.partners_per_cm must be at least 1",
            ));
        }
        if f.users_per_cm == 0 || f.users_per_cm > 1000 {
            return Err(bad(
                "federation.users_per_cm は 1〜1000 にしてください",
                "federation.users_per_cm must be 1 to 1000",
            ));
        }
        if self.days == 0 || self.days > 120 {
            return Err(bad(
                "days は 1〜120 にしてください",
                "days must be 1 to 120",
            ));
        }
        if self.drop_resolution_secs == 0 || self.drop_resolution_secs > 86_400 {
            return Err(bad(
                "drop_resolution_secs は 1〜86400 にしてください",
                "drop_resolution_secs must be 1 to 86400",
            ));
        }
        if self.step_secs == 0 || self.max_step_secs < self.step_secs {
            return Err(bad(
                "step_secs は1以上、max_step_secs は step_secs 以上にしてください",
                "step_secs must be at least 1 and max_step_secs at least step_secs",
            ));
        }
        let w = &self.workload;
        for (key, day) in [
            ("plans_day", w.plans_day),
            ("actuals_day", w.actuals_day),
            ("changes_day", w.changes_day),
        ] {
            if day > self.days {
                return Err(bad(
                    format!(
                        "workload.{key} = {day} は days = {} を超えています",
                        self.days
                    ),
                    format!(
                        "workload.{key} = {day} is after the last day (days = {})",
                        self.days
                    ),
                ));
            }
        }
        if w.plans_day == 0 {
            return Err(bad(
                "workload.plans_day は1以上にしてください（月末の予定がないと何も送られません）",
                "workload.plans_day must be at least 1 (without the month-end plans nothing is sent)",
            ));
        }
        for k in &w.plan_kinds {
            if !super::workload::PLAN_KINDS.contains(&k.as_str()) {
                return Err(bad(
                    format!(
                        "workload.plan_kinds の {k} は使えません。使えるのは {} です",
                        super::workload::PLAN_KINDS.join(", ")
                    ),
                    format!(
                        "workload.plan_kinds: {k} is not one of {}",
                        super::workload::PLAN_KINDS.join(", ")
                    ),
                ));
            }
        }
        for (key, v) in [("changes", w.changes), ("deletes", w.deletes)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(bad(
                    format!("workload.{key} は 0〜1 の割合です"),
                    format!("workload.{key} is a share from 0 to 1"),
                ));
            }
        }
        let end = u64::from(self.days) * 86_400_000;
        for (n, fault) in self.faults.iter().enumerate() {
            let n = n + 1;
            let kind = fault.kind();
            let at = parse_at(fault.at()).ok_or_else(|| {
                bad(
                    format!("{n} 番目の故障（{kind}）の at = \"{}\" が読めません。\"day 28 18:00\" のように書いてください", fault.at()),
                    format!("fault {n} ({kind}): at = \"{}\" is not a time: write it like \"day 28 18:00\"", fault.at()),
                )
            })?;
            if at >= end {
                return Err(bad(
                    format!("{n} 番目の故障（{kind}）は最終日より後です"),
                    format!("fault {n} ({kind}) starts after the last day"),
                ));
            }
            if let Some(d) = fault.duration()
                && parse_duration(d).is_none_or(|d| d == 0)
            {
                return Err(bad(
                    format!(
                        "{n} 番目の故障（{kind}）の for = \"{d}\" が読めません。\"8h\"、\"3d\"、\"90m\" のように書いてください"
                    ),
                    format!(
                        "fault {n} ({kind}): for = \"{d}\" is not a duration: write it like \"8h\", \"3d\" or \"90m\""
                    ),
                ));
            }
            if let Fault::Crash {
                restart_after: Some(d),
                ..
            }
            | Fault::RotateKeys {
                restart_after: Some(d),
                ..
            } = fault
                && parse_duration(d).is_none()
            {
                return Err(bad(
                    format!("{n} 番目の故障（{kind}）の restart_after = \"{d}\" が読めません"),
                    format!(
                        "fault {n} ({kind}): restart_after = \"{d}\" is not a duration (\"10m\", \"2h\")"
                    ),
                ));
            }
            if let Some(o) = fault.offices() {
                self.check_offices(n, kind, o)?;
            }
            match fault {
                Fault::Crash { point: Some(p), .. } => {
                    if crate::env::FaultPoint::parse(p).is_none() {
                        let all: Vec<&str> = crate::env::FaultPoint::ALL
                            .iter()
                            .map(|p| p.name())
                            .collect();
                        return Err(bad(
                            format!(
                                "{n} 番目の故障（crash）の point = \"{p}\" は知らない故障点です。使えるのは {} です",
                                all.join(", ")
                            ),
                            format!(
                                "fault {n} (crash): point = \"{p}\" is not a fault point: one of {}",
                                all.join(", ")
                            ),
                        ));
                    }
                }
                Fault::DirectoryOutage { node, .. } | Fault::MailboxLost { node, .. } => {
                    if *node >= self.federation.directory_nodes {
                        return Err(bad(
                            format!(
                                "{n} 番目の故障（{kind}）の node = {node} はありません（ディレクトリノードは 0〜{}）",
                                self.federation.directory_nodes - 1
                            ),
                            format!(
                                "fault {n} ({kind}): there is no directory node {node} (they are 0 to {})",
                                self.federation.directory_nodes - 1
                            ),
                        ));
                    }
                }
                Fault::Partition { cut_nodes, .. } => {
                    if let Some(node) = cut_nodes
                        .iter()
                        .find(|c| **c >= self.federation.directory_nodes)
                    {
                        return Err(bad(
                            format!(
                                "{n} 番目の故障（partition）の cut_nodes の {node} はありません"
                            ),
                            format!(
                                "fault {n} (partition): cut_nodes names directory node {node}, which does not exist"
                            ),
                        ));
                    }
                }
                Fault::LinkLoss { rate, .. } => {
                    if !(0.0..1.0).contains(rate) {
                        return Err(bad(
                            format!(
                                "{n} 番目の故障（link-loss）の rate は 0 以上 1 未満の割合です"
                            ),
                            format!(
                                "fault {n} (link-loss): rate is a share from 0 up to (not including) 1"
                            ),
                        ));
                    }
                }
                Fault::ClockSkew {
                    office, minutes, ..
                } => {
                    self.check_offices(
                        n,
                        kind,
                        &Offices {
                            offices: vec![office.clone()],
                            ..Default::default()
                        },
                    )?;
                    if minutes.unsigned_abs() > 60 * 24 * 30 {
                        return Err(bad(
                            format!(
                                "{n} 番目の故障（clock-skew）の minutes は ±30日以内にしてください"
                            ),
                            format!(
                                "fault {n} (clock-skew): minutes must be within 30 days either way"
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_offices(&self, n: usize, kind: &str, o: &Offices) -> Result<(), (String, String)> {
        if o.offices.is_empty() && o.share <= 0.0 {
            return Err(bad(
                format!(
                    "{n} 番目の故障（{kind}）の対象がありません。offices = [\"cm0\"] か share = 0.3 を書いてください"
                ),
                format!(
                    "fault {n} ({kind}) hits no office: give offices = [\"cm0\"] or share = 0.3"
                ),
            ));
        }
        if !(0.0..=1.0).contains(&o.share) {
            return Err(bad(
                format!("{n} 番目の故障（{kind}）の share は 0〜1 の割合です"),
                format!("fault {n} ({kind}): share is a share from 0 to 1"),
            ));
        }
        for name in &o.offices {
            let ok = match parse_office_name(name) {
                Some((true, i)) => i < self.federation.care_management,
                Some((false, i)) => i < self.federation.service,
                None => false,
            };
            if !ok {
                return Err(bad(
                    format!(
                        "{n} 番目の故障（{kind}）の事業所 \"{name}\" はありません（cm0〜cm{}、sv0〜sv{}）",
                        self.federation.care_management - 1,
                        self.federation.service - 1
                    ),
                    format!(
                        "fault {n} ({kind}): there is no office \"{name}\" (cm0 to cm{}, sv0 to sv{})",
                        self.federation.care_management - 1,
                        self.federation.service - 1
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[federation]\ncare_management = 2\nservice = 4\n";

    #[test]
    fn times_and_durations_read_as_written() {
        assert_eq!(parse_at("day 1 00:00"), Some(0));
        assert_eq!(
            parse_at("day 2 09:30"),
            Some((86400 + 9 * 3600 + 30 * 60) * 1000)
        );
        assert_eq!(parse_at("day 3"), Some(2 * 86_400_000));
        assert_eq!(parse_at("day 0 10:00"), None);
        assert_eq!(parse_at("day 1 24:00"), None);
        assert_eq!(parse_at("28 10:00"), None);
        assert_eq!(parse_duration("90m"), Some(5_400_000));
        assert_eq!(parse_duration("3d"), Some(3 * 86_400_000));
        assert_eq!(parse_duration("3w"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("日"), None);
    }

    #[test]
    fn a_minimal_scenario_takes_the_defaults() {
        let s = Scenario::parse(MIN, "t").unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.federation.directory_nodes, 1);
        assert_eq!(s.workload.plan_kinds.len(), 6);
    }

    #[test]
    fn unknown_keys_kinds_and_bad_values_are_refused_in_both_languages() {
        for (text, says) in [
            (format!("{MIN}colour = 1\n"), "colour"),
            (
                format!("{MIN}[[fault]]\nkind = \"meteor\"\nat = \"day 1 00:00\"\n"),
                "meteor",
            ),
            (
                format!(
                    "{MIN}[[fault]]\nkind = \"office-off\"\nat = \"tomorrow\"\nfor = \"1d\"\nshare = 0.3\n"
                ),
                "tomorrow",
            ),
            (
                format!(
                    "{MIN}[[fault]]\nkind = \"office-off\"\nat = \"day 2 00:00\"\nfor = \"1d\"\noffices = [\"cm9\"]\n"
                ),
                "cm9",
            ),
            (
                format!(
                    "{MIN}[[fault]]\nkind = \"directory-outage\"\nat = \"day 2 00:00\"\nfor = \"1d\"\nnode = 3\n"
                ),
                "node 3",
            ),
            (
                format!(
                    "{MIN}[[fault]]\nkind = \"crash\"\nat = \"day 2 00:00\"\noffices = [\"cm0\"]\npoint = \"explode\"\n"
                ),
                "explode",
            ),
            (
                format!(
                    "{MIN}[[fault]]\nkind = \"link-loss\"\nat = \"day 2 00:00\"\nfor = \"1d\"\nrate = 1.5\n"
                ),
                "rate",
            ),
            (
                format!("{MIN}[[fault]]\nkind = \"revoke\"\nat = \"day 2 00:00\"\n"),
                "no office",
            ),
            (
                format!("{MIN}[workload]\nplan_kinds = [\"UPJSK\"]\n"),
                "UPJSK",
            ),
        ] {
            let e = Scenario::parse(&text, "x.toml").unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(
                e.contains("シナリオ x.toml") && e.contains("/ scenario x.toml"),
                "{e}"
            );
        }
    }
}
