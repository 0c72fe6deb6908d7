//! The offices of a generated national directory, shared by the directory crate's `national`
//! bench and the node's `delivery` bench (each includes this file by path), so both measure the
//! same directory.

use rand::RngExt;
use rand_chacha::ChaCha20Rng;
use renkei_directory::{Entry, OfficeKey, Status};
use renkei_protocol::{OfficeNumber, ServiceKind};

/// Offices in the national directory.
pub(crate) const OFFICES: usize = 300_000;
const YEAR: u64 = 365 * 86400;

/// Approximate population of each prefecture in units of 10,000 (01 北海道 … 47 沖縄県): offices
/// are spread over the regions in proportion, so 東京都 holds about 34,000 and 鳥取県 1,300.
pub(crate) const POPULATION: [u32; 47] = [
    514, 120, 118, 228, 93, 104, 179, 284, 191, 191, 734, 628, 1404, 923, 213, 102, 111, 75, 80,
    201, 195, 355, 748, 174, 141, 255, 878, 537, 130, 90, 54, 65, 185, 275, 131, 70, 93, 131, 67,
    510, 80, 128, 172, 111, 105, 155, 147,
];

const CORPORATIONS: [&str; 8] = [
    "社会福祉法人",
    "医療法人社団",
    "株式会社",
    "有限会社",
    "特定非営利活動法人",
    "合同会社",
    "医療法人",
    "一般社団法人",
];
const PLACES: [&str; 16] = [
    "さくら",
    "青空",
    "ひまわり",
    "みどり",
    "つばさ",
    "あおば",
    "やまびこ",
    "いずみ",
    "こもれび",
    "なごみ",
    "ふれあい",
    "陽だまり",
    "若葉",
    "松風",
    "白鷺",
    "すずらん",
];
const SERVICES: [&str; 8] = [
    "居宅介護支援事業所",
    "ケアプランセンター",
    "訪問介護ステーション",
    "デイサービスセンター",
    "訪問看護ステーション",
    "福祉用具貸与事業所",
    "ショートステイ",
    "グループホーム",
];
const TOWNS: [&str; 6] = ["世田谷", "中央", "港北", "城東", "緑ヶ丘", "桜台"];
const BRANCHES: [&str; 6] = ["", "", "本店", "駅前", "第二", "北"];
const KINDS: [&str; 10] = ["43", "11", "13", "15", "17", "A2", "A6", "46", "32", "78"];

fn pick<'a>(rng: &mut ChaCha20Rng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

/// An office name of 15–25 characters, e.g. 社会福祉法人さくら居宅介護支援事業所.
fn office_name(rng: &mut ChaCha20Rng) -> String {
    let mut name = String::new();
    name.push_str(pick(rng, &CORPORATIONS));
    if rng.random_range(0..3) == 0 {
        name.push_str(pick(rng, &TOWNS));
    }
    name.push_str(pick(rng, &PLACES));
    name.push_str(pick(rng, &SERVICES));
    name.push_str(pick(rng, &BRANCHES));
    if name.chars().count() < 15 {
        name.insert_str(0, pick(rng, &TOWNS));
    }
    name.chars().take(25).collect()
}

/// One office's entry: 1–2 kinds, one key valid from up to three years before `t0` for ten
/// years, one address, 1% revoked.
pub(crate) fn office_entry(rng: &mut ChaCha20Rng, number: OfficeNumber, t0: u64) -> Entry {
    let mut kinds = vec![ServiceKind::parse(pick(rng, &KINDS)).unwrap()];
    if rng.random_range(0..3) == 0 {
        kinds.push(ServiceKind::parse(pick(rng, &KINDS)).unwrap());
    }
    let valid_from = t0 - rng.random_range(0..3 * YEAR);
    let address = format!(
        "/ip4/{}.{}.{}.{}/udp/{}/quic-v1",
        rng.random_range(1..224u8),
        rng.random::<u8>(),
        rng.random::<u8>(),
        rng.random_range(1..255u8),
        rng.random_range(1024..65535u16),
    );
    Entry {
        office: number,
        name: office_name(rng),
        kinds,
        keys: vec![OfficeKey {
            identity: rng.random(),
            encryption: rng.random(),
            valid_from,
            valid_until: valid_from + 10 * YEAR,
        }],
        addresses: vec![address],
        status: if rng.random_range(0..100) == 0 {
            Status::Revoked
        } else {
            Status::Active
        },
        mailboxes: Vec::new(),
    }
}

/// How many of the [`OFFICES`] each prefecture (index 0 = 01 北海道) holds, in proportion to its
/// population; the remainder goes to 東京都.
pub(crate) fn region_counts() -> Vec<usize> {
    let total: u32 = POPULATION.iter().sum();
    let mut counts: Vec<usize> = POPULATION
        .iter()
        .map(|p| OFFICES * *p as usize / total as usize)
        .collect();
    counts[12] += OFFICES - counts.iter().sum::<usize>();
    counts
}
