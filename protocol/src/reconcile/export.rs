//! A [`Reconciliation`] as a CSV file for Excel: one summary row per user and office, then one
//! row per difference, headers in Japanese or English, CP932 or UTF-8 with a byte-order mark.
//!
//! Excel reads a bare `0800` or `0000123451` as a number and drops the zeros (and shows a
//! 31-digit 日割対象日 as `1.11E+30`), so such values are written as `="0800"`, which Excel shows
//! as the text itself.

use super::{Difference, Reconciliation, RowView, Status, UserOffice, UserResult};

/// The language of headers and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// 日本語.
    Ja,
    /// English.
    En,
}

/// The encoding of the CSV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvEncoding {
    /// CP932 (Shift_JIS), what Excel on a Japanese Windows opens by default.
    Cp932,
    /// UTF-8 with a byte-order mark, which Excel recognises as UTF-8.
    Utf8Bom,
}

const HEADER_JA: [&str; 25] = [
    "対象年月",
    "保険者番号",
    "被保険者番号",
    "利用者氏名",
    "事業所番号",
    "事業所名",
    "状態",
    "印",
    "区分",
    "予定_サービス利用日",
    "予定_開始時刻",
    "予定_終了時刻",
    "予定_サービスコード",
    "予定_回数",
    "予定_単位数",
    "予定_日割対象日",
    "実績_事業所番号",
    "実績_サービス利用日",
    "実績_開始時刻",
    "実績_終了時刻",
    "実績_サービスコード",
    "実績_回数",
    "実績_単位数",
    "実績_日割対象日",
    "単位数合計（予定／実績）",
];

const HEADER_EN: [&str; 25] = [
    "month",
    "insurer",
    "insured",
    "name",
    "office",
    "office name",
    "status",
    "mark",
    "item",
    "planned date",
    "planned start",
    "planned end",
    "planned service code",
    "planned count",
    "planned units",
    "planned day mask",
    "actual office",
    "actual date",
    "actual start",
    "actual end",
    "actual service code",
    "actual count",
    "actual units",
    "actual day mask",
    "unit totals (planned/actual)",
];

/// A CSV field: quoted when it must be.
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// A code (number, time, mask) as Excel text, so Excel neither drops its leading zeros nor
/// turns it into a number.
fn code(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        format!("=\"{value}\"")
    } else {
        value.to_string()
    }
}

fn row_fields(month: &str, r: Option<&RowView>, with_office: bool) -> Vec<String> {
    let Some(r) = r else {
        return vec![String::new(); if with_office { 8 } else { 7 }];
    };
    let mut v = Vec::new();
    if with_office {
        v.push(code(&r.office));
    }
    v.push(format!("{month}{:02}", r.day));
    v.push(code(&r.start));
    v.push(code(&r.end));
    v.push(code(&r.service_code));
    v.push(r.count.to_string());
    v.push(r.units.map(|u| u.to_string()).unwrap_or_default());
    v.push(r.day_mask.as_deref().map(code).unwrap_or_default());
    v
}

fn status_label(s: Status, lang: Lang) -> &'static str {
    match lang {
        Lang::Ja => s.label_ja(),
        Lang::En => s.label_en(),
    }
}

fn push_line(out: &mut String, cells: &[String]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(out, c);
    }
    out.push_str("\r\n");
}

fn head(month: &str, u: &UserResult, o: &UserOffice, lang: Lang) -> Vec<String> {
    vec![
        month.to_string(),
        code(&u.insurer),
        code(&u.insured),
        u.name.clone(),
        code(&o.office),
        o.office_name.clone(),
        status_label(o.status, lang).to_string(),
    ]
}

fn difference_line(
    month: &str,
    u: &UserResult,
    o: &UserOffice,
    d: &Difference,
    lang: Lang,
) -> Vec<String> {
    let mut cells = head(month, u, o, lang);
    cells.push("☆".into());
    cells.push(match lang {
        Lang::Ja => d.label_ja(),
        Lang::En => d.label_en(),
    });
    cells.extend(row_fields(month, d.planned.as_ref(), false));
    cells.extend(row_fields(month, d.actual.as_ref(), true));
    cells.push(String::new());
    cells
}

impl Reconciliation {
    /// The result as CSV text: a header, then per user and office a summary row (状態, unit
    /// totals; marked ☆ unless it matches) followed by its differences, each marked ☆.
    pub fn to_csv_text(&self, lang: Lang) -> String {
        let mut out = String::new();
        let header = match lang {
            Lang::Ja => &HEADER_JA,
            Lang::En => &HEADER_EN,
        };
        push_line(
            &mut out,
            &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
        );
        for u in &self.users {
            for o in &u.offices {
                let mut cells = head(&self.month, u, o, lang);
                cells.push(if o.status == Status::Match {
                    String::new()
                } else {
                    "☆".into()
                });
                cells.push(
                    match lang {
                        Lang::Ja => "合計",
                        Lang::En => "total",
                    }
                    .into(),
                );
                cells.extend(std::iter::repeat_n(String::new(), 15));
                cells.push(format!("{}/{}", o.planned_units, o.actual_units));
                push_line(&mut out, &cells);
                for d in &o.differences {
                    push_line(&mut out, &difference_line(&self.month, u, o, d, lang));
                }
            }
        }
        out
    }

    /// The result as a CSV file's bytes in `encoding`. Every character of the files read and
    /// of the labels exists in CP932; one that does not is written as `?` rather than lost
    /// silently into an error.
    pub fn to_csv(&self, lang: Lang, encoding: CsvEncoding) -> Vec<u8> {
        let text = self.to_csv_text(lang);
        match encoding {
            CsvEncoding::Utf8Bom => {
                let mut b = vec![0xEF, 0xBB, 0xBF];
                b.extend_from_slice(text.as_bytes());
                b
            }
            CsvEncoding::Cp932 => {
                let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
                if !unmappable {
                    return bytes.into_owned();
                }
                // encoding_rs writes an unmappable character as an HTML numeric reference.
                let mut out = Vec::with_capacity(text.len());
                let mut buf = [0u8; 4];
                for c in text.chars() {
                    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
                    if bad {
                        out.push(b'?');
                    } else {
                        out.extend_from_slice(&b);
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_zeros_in_excel() {
        assert_eq!(code("0800"), "=\"0800\"");
        assert_eq!(code("1310000011"), "=\"1310000011\"");
        assert_eq!(code("H000000521"), "H000000521");
        assert_eq!(
            code("1111111111111111111111111111111"),
            "=\"1111111111111111111111111111111\""
        );
        let mut s = String::new();
        field(&mut s, &code("0800"));
        assert_eq!(s, "\"=\"\"0800\"\"\"");
    }
}
