//! Messages for office staff: what is wrong and what to do, in Japanese and English.

use super::codes::ErrorCode;
use super::layout::{CodeTable, Field};
use crate::name::FileKind;

/// What went wrong with a `"`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum QuoteProblem {
    Stray,
    AfterClose,
    Unterminated,
}

/// Facts a message may mention.
#[derive(Default)]
pub(crate) struct Ctx<'a> {
    pub field: Option<&'a Field>,
    pub value: Option<&'a str>,
    pub expected: Option<&'a str>,
    pub table: Option<&'a CodeTable>,
    pub kind: Option<FileKind>,
    pub detail: Option<QuoteProblem>,
}

const FIX_JA: &str = "介護ソフトで内容を確認し、ファイルを出力し直してください。";
const FIX_EN: &str = "Correct it in your care software and export the file again.";

/// Shortens a value for display (the value may be long free text).
fn short(v: &str) -> String {
    let mut s: String = v.chars().take(40).collect();
    if v.chars().count() > 40 {
        s.push('…');
    }
    s.replace(['\r', '\n'], " ")
}

pub(crate) fn render(code: ErrorCode, _line: u64, field: u32, c: &Ctx<'_>) -> (String, String) {
    let fja_n = format!("{field}項目目");
    let fen_n = format!("field {field}");
    let fja = c.field.map(|f| f.name_ja).unwrap_or(&fja_n);
    let fen = c.field.map(|f| f.name_en).unwrap_or(&fen_n);
    let v = short(c.value.unwrap_or(""));
    let exp = c.expected.unwrap_or("");
    let kind_ja = c.kind.map(FileKind::name_ja).unwrap_or("このファイル");
    let kind_en = c.kind.map(FileKind::prefix).unwrap_or("this file");
    let bad = |what_ja: &str, what_en: &str| {
        if c.value.is_none() {
            return (
                format!("「{fja}」が{what_ja}ではありません。{FIX_JA}"),
                format!("{fen} is not {what_en}. {FIX_EN}"),
            );
        }
        (
            format!("「{fja}」の値「{v}」は{what_ja}ではありません。{FIX_JA}"),
            format!("{fen} is \"{v}\", which is not {what_en}. {FIX_EN}"),
        )
    };
    let name_fix_ja = "標準仕様のファイル名（例: UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV）で出力し直してください。";
    let name_fix_en = "Export it again under its standard name (e.g. UPPLAN_202610_1310000001_43_1310000011_11_20260928103000.CSV).";
    match code {
        ErrorCode::NameExtension => (
            format!("ファイルの拡張子が .CSV（家族構成画像は .jpg）ではありません。{name_fix_ja}"),
            format!("The file's extension is not .CSV (.jpg for the family image). {name_fix_en}"),
        ),
        ErrorCode::NamePrefix => (
            format!("ファイル名の先頭が標準仕様のファイル種別（UPPLAN など）ではありません。{name_fix_ja}"),
            format!("The file name does not start with a standard file kind such as UPPLAN. {name_fix_en}"),
        ),
        ErrorCode::NameShape => (
            format!("ファイル名の区切り（_）の数や並びが標準仕様と違います。{name_fix_ja}"),
            format!("The parts of the file name between the underscores are not as the standard defines. {name_fix_en}"),
        ),
        ErrorCode::NameMonth => (
            format!("ファイル名の対象年月が正しい年月(YYYYMM)ではありません。{name_fix_ja}"),
            format!("The target month in the file name is not a valid YYYYMM. {name_fix_en}"),
        ),
        ErrorCode::NameOffice => (
            format!("ファイル名の事業所番号が10桁の数字ではありません。{name_fix_ja}"),
            format!("An office number in the file name is not 10 digits. {name_fix_en}"),
        ),
        ErrorCode::NameKind => (
            format!("ファイル名のサービス種類コードが2桁ではありません。{name_fix_ja}"),
            format!("A service kind code in the file name is not 2 characters. {name_fix_en}"),
        ),
        ErrorCode::NameStamp => (
            format!("ファイル名末尾の14桁（送信日時）が実在する日時ではありません。{name_fix_ja}"),
            format!("The 14-digit stamp at the end of the file name is not a real date and time. {name_fix_en}"),
        ),
        ErrorCode::NameCharacters => (
            format!("ファイル名に使えない文字（英数字・_・. 以外）が含まれています。{name_fix_ja}"),
            format!("The file name has characters other than letters, digits, _ and the dot. {name_fix_en}"),
        ),
        ErrorCode::EncodingUtf8Bom => (
            "ファイルがBOM付きUTF-8で保存されています。標準仕様はShift_JIS（MS932）です。介護ソフトの出力設定を Shift_JIS にして出力し直してください（表計算ソフトで開いて保存しないでください）。".into(),
            "The file is saved as UTF-8 with a byte-order mark; the standard requires Shift_JIS (MS932). Set your care software's export to Shift_JIS and export again (do not open and re-save it in a spreadsheet).".into(),
        ),
        ErrorCode::EncodingUtf8 => (
            "ファイルがUTF-8で保存されています。標準仕様はShift_JIS（MS932）です。介護ソフトの出力設定を Shift_JIS にして出力し直してください。".into(),
            "The file is saved as UTF-8; the standard requires Shift_JIS (MS932). Set your care software's export to Shift_JIS and export again.".into(),
        ),
        ErrorCode::EncodingInvalid => (
            format!("Shift_JIS（MS932）として読めないバイト（{v}）があります。ファイルが壊れているか別の文字コードです。介護ソフトから出力し直してください。"),
            format!("There is a byte ({v}) that is not valid Shift_JIS (MS932): the file is damaged or in another encoding. Export it again from your care software."),
        ),
        ErrorCode::EncodingGaiji => (
            format!("外字（{v}）が使われています。標準仕様では外字は使えません。通常の文字に置き換えて出力し直してください。"),
            format!("A user-defined character (gaiji, {v}) is used; the standard forbids them. Replace it with a standard character and export again."),
        ),
        ErrorCode::FileEmpty => (
            "ファイルにデータ（レコード）がありません。介護ソフトから出力し直してください。".into(),
            "The file holds no records. Export it again from your care software.".into(),
        ),
        ErrorCode::ImageNotJpeg => (
            "家族構成画像ファイルがJPEG画像ではありません。JPEG形式で保存し直してください。".into(),
            "The family-structure image is not a JPEG image. Save it as JPEG and send it again.".into(),
        ),
        ErrorCode::CsvQuote => {
            let (ja, en) = match c.detail {
                Some(QuoteProblem::Stray) => (
                    "ダブルクォート（\"）で囲まれていない項目の中に \" があります",
                    "a \" appears inside a field that is not enclosed in double quotes",
                ),
                Some(QuoteProblem::AfterClose) => (
                    "閉じたダブルクォート（\"）の後に文字があります",
                    "there is text after a closing double quote",
                ),
                Some(QuoteProblem::Unterminated) => (
                    "ダブルクォート（\"）で始まった項目が閉じられないままファイルが終わっています",
                    "a field opened with a double quote is never closed before the end of the file",
                ),
                None => ("ダブルクォートの使い方が正しくありません", "the double quotes are not used correctly"),
            };
            (
                format!("CSVの形式の誤り: {ja}。文中の \" は \"\" と二重にします。{FIX_JA}"),
                format!("CSV format error: {en}. A \" inside text must be written as \"\". {FIX_EN}"),
            )
        }
        ErrorCode::FieldCount => (
            format!("{kind_ja}の項目数は{exp}ですが、この行は{v}項目です。{FIX_JA}"),
            format!("A {kind_en} record has {exp} fields, but this one has {v}. {FIX_EN}"),
        ),
        ErrorCode::RecordTooLong => (
            format!("1件のデータ（レコード）が1MBを超えていて読めません。ファイルが壊れているか、終わりのない項目があります。{FIX_JA}"),
            format!("A record is longer than 1 MB and cannot be read: the file is damaged or a field never ends. {FIX_EN}"),
        ),
        ErrorCode::CsvVersionUnknown => (
            format!("CSVバージョン（1項目目）「{v}」は標準仕様の値（202407、202504、202208）ではありません。介護ソフトを最新にして出力し直してください。"),
            format!("The CSV version (field 1) \"{v}\" is not one the standard defines (202407, 202504, 202208). Update your care software and export again."),
        ),
        ErrorCode::CsvVersionMixed => (
            format!("CSVバージョン「{v}」が最初の行の「{exp}」と違います。1つのファイルに異なるバージョンは混在できません。{FIX_JA}"),
            format!("The CSV version \"{v}\" differs from the first record's \"{exp}\"; one file must not mix versions. {FIX_EN}"),
        ),
        ErrorCode::CsvVersionKind => (
            format!("{kind_ja}はCSVバージョン{v}には存在しません（第3表と介護予防のファイルはV4から）。CSVバージョン202407で出力し直してください。"),
            format!("{kind_en} files do not exist at CSV version {v} (第3表 and the 介護予防 files start with V4). Export again at CSV version 202407."),
        ),
        ErrorCode::Required => (
            format!("必須項目「{fja}」が空です。{FIX_JA}"),
            format!("The required field {fen} is empty. {FIX_EN}"),
        ),
        ErrorCode::Date => bad("正しい日付（YYYYMMDD、実在する日）", "a real date (YYYYMMDD)"),
        ErrorCode::Month => bad("正しい年月（YYYYMM）", "a valid month (YYYYMM)"),
        ErrorCode::Time => bad("正しい時刻（HHMM、0000〜2359、または時間表示なしの9999）", "a time HHMM from 0000 to 2359, or 9999 for no time"),
        ErrorCode::Insurer => bad("6桁の保険者番号", "a 6-digit insurer number"),
        ErrorCode::Insured => bad("被保険者番号（10桁の数字、生保単独は H＋9桁）", "an insured-person number (10 digits, or H and 9 digits)"),
        ErrorCode::Office => bad("10桁の事業所番号", "a 10-digit office number"),
        ErrorCode::Kind => bad("2桁のサービス種類コード", "a 2-character service kind code"),
        ErrorCode::ServiceCode => bad("6桁のサービスコード", "a 6-character service code"),
        ErrorCode::Integer => bad(&format!("{exp}桁以内の整数"), &format!("an integer of at most {exp} digits")),
        ErrorCode::Decimal => bad("数値（例: 10.90）", "a decimal number such as 10.90"),
        ErrorCode::Code => {
            let (tja, ten) = c.table.map(|t| (t.name_ja, t.name_en)).unwrap_or(("コード表", "code table"));
            (
                format!("「{fja}」の値「{v}」は{tja}のコード（{exp}）にありません。{FIX_JA}"),
                format!("{fen} is \"{v}\", which is not a {ten} code ({exp}). {FIX_EN}"),
            )
        }
        ErrorCode::DayMask => (
            format!("日割対象日「{v}」は 0 と 1 の31文字で、その月にない日に 1 を付けることはできません。{FIX_JA}"),
            format!("The day-rate mask \"{v}\" must be 31 characters of 0 and 1, with no 1 on a day the month does not have. {FIX_EN}"),
        ),
        ErrorCode::Postal => bad("郵便番号（NNN-NNNN）", "a postal code (NNN-NNNN)"),
        ErrorCode::MonthNameMismatch => (
            format!("対象年月「{v}」がファイル名の対象年月「{exp}」と違います。ファイル名か内容が誤っています。{FIX_JA}"),
            format!("The target month \"{v}\" differs from the file name's \"{exp}\": the name or the content is wrong. {FIX_EN}"),
        ),
        ErrorCode::MonthMixed => (
            format!("対象年月「{v}」が最初の行の「{exp}」と違います。1ファイルには1か月分だけを入れてください。月ごとに別のファイルで出力し直してください。"),
            format!("The target month \"{v}\" differs from the first record's \"{exp}\"; a file holds one service month only. Export one file per month."),
        ),
        ErrorCode::ServiceDateMonth => (
            format!("サービス利用日「{v}」が対象年月「{exp}」の日付ではありません。{FIX_JA}"),
            format!("The service date \"{v}\" is not in the target month \"{exp}\". {FIX_EN}"),
        ),
        ErrorCode::Plan2NumberDuplicate => (
            format!("第2表の番号（課題NO-援助目標NO-援助内容NO）「{v}」が{exp}行目と重複しています。相手の介護ソフトで取り込みエラーになります。{FIX_JA}"),
            format!("第2表 numbers (issue-goal-service) \"{v}\" repeat those on line {exp}; the partner's import would fail. {FIX_EN}"),
        ),
        ErrorCode::Plan2TextConflict => (
            format!("同じ番号の「{fja}」に別の内容「{v}」があります（先の行では「{}」）。同じ課題・目標は同じ文にするか、2行目以降を空にしてください。{FIX_JA}", short(exp)),
            format!("{fen} has a different text \"{v}\" for the same number (earlier: \"{}\"). Repeat the same text or leave later rows empty. {FIX_EN}", short(exp)),
        ),
        ErrorCode::Plan3RowEmpty => (
            format!("第3表の行に、サービス・日常生活の活動・週単位以外のサービスのいずれも入っていません。{FIX_JA}"),
            format!("This 第3表 row has none of service, daily activity or non-weekly service filled in. {FIX_EN}"),
        ),
        ErrorCode::EquipmentCodeMissing => (
            format!("福祉用具貸与の行にTAISコードも福祉用具届出コードもありません。どちらかを入力してください。{FIX_JA}"),
            format!("A welfare-equipment rental row has neither a TAIS code nor a notification code; one is required. {FIX_EN}"),
        ),
        ErrorCode::RouteSender => (
            "ファイル名の送信元事業所番号（またはサービス種類）が、この事業所ではありません。自事業所から送るファイルだけを送信フォルダに置いてください。".into(),
            "The sender office number (or service kind) in the file name is not this office's. Put only files sent by this office in the outbox.".into(),
        ),
        ErrorCode::RouteRecipient => (
            "ファイル名の送信先事業所番号が、受け取った事業所と違います。送信元に確認してください。".into(),
            "The recipient office number in the file name is not the office that received it. Ask the sender to check the name.".into(),
        ),
        ErrorCode::RecipientUnknown => (
            "送信先の事業所（番号とサービス種類）が連携名簿に登録されていないか、登録が取り消されています。送信先の事業所番号を確認し、相手が renkei に登録済みか問い合わせてください。".into(),
            "The recipient office (number and service kind) is not an active member of the directory. Check the recipient's office number and ask whether they are enrolled in renkei.".into(),
        ),
        ErrorCode::PartnerRefused => (
            "相手先のノードがこのファイルの受け取りを拒否しました（内容ではなく、封筒・鍵・宛先の問題）。連携名簿が最新か、相手先の事業所番号が正しいかを確認し、解決しない場合は協会に連絡してください。".into(),
            "The partner's node refused this file (a problem with the envelope, keys or address, not the content). Check that the directory is current and the recipient's office number is right; if it persists, contact your association.".into(),
        ),
        ErrorCode::FileTooLarge => (
            "ファイルが大きすぎるため送受信できません（上限は各ノードの設定 max_file_mb）。ファイルを分けて出力するか、相手先と上限を確認してください。".into(),
            "The file is larger than the node sends or receives (each node's max_file_mb setting). Export it in parts, or agree the limit with the partner.".into(),
        ),
        ErrorCode::MailboxExpired => (
            "相手先のノードが起動しないまま、協会のメールボックスの保管期限（通常14日）が過ぎたため、預けたファイルは削除されました（削除証明は受領記録の横にあります）。相手先に連絡してノードを起動してもらい、このファイルを送信フォルダに置き直してください。".into(),
            "The partner's node did not start before the association mailbox's time limit (usually 14 days), so the file left there was deleted (the signed deletion statement is kept beside the receipts). Contact the partner to start their node, then put this file in the outbox again.".into(),
        ),
        ErrorCode::TooManyErrors => (
            "誤りが多すぎるため、以降は省略しました。ファイル全体を確認してください。".into(),
            "There are too many errors; the rest are not listed. Check the whole file.".into(),
        ),
    }
}
