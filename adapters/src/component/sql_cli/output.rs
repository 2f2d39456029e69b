//! Parsing what the client printed: TSV, CSV, JSON and mysql XML into result sets.

use super::*;

/// What the client printed: result sets in order, and the affected row count if it said.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Parsed {
    pub(super) sets: Vec<RowSet>,
    pub(super) affected: Option<u64>,
}

impl Parsed {
    pub(super) fn outcome(mut self, sql: &str, want_rows: bool) -> Outcome {
        if !want_rows {
            return Outcome::Affected(self.affected);
        }
        if self.sets.is_empty() {
            // Clients that print nothing for an empty result (sqlite3) cannot tell it from a
            // statement without rows: judge by the statement.
            return if looks_like_query(sql) {
                Outcome::Rows(RowSet::default())
            } else {
                Outcome::Affected(self.affected)
            };
        }
        let mut first = self.sets.remove(0);
        for s in self.sets {
            first.rows.extend(s.rows);
        }
        if first.types.is_empty() {
            first.types = infer_types(&first);
        }
        Outcome::Rows(first)
    }
}

/// Type letters judged from the values (a client prints no types): all integers → `I`, all
/// numbers → `R`, else `T`.
pub(super) fn infer_types(set: &RowSet) -> Vec<String> {
    (0..set.columns.len())
        .map(|i| {
            let mut values = set
                .rows
                .iter()
                .filter_map(|r| r.get(i).cloned().flatten())
                .peekable();
            if values.peek().is_none() {
                return "T".to_string();
            }
            let mut all_int = true;
            let mut all_num = true;
            for v in values {
                let v = v.trim();
                if v.parse::<i128>().is_err() {
                    all_int = false;
                }
                if v.parse::<f64>().is_err() {
                    all_num = false;
                }
            }
            if all_int {
                "I"
            } else if all_num {
                "R"
            } else {
                "T"
            }
            .to_string()
        })
        .collect()
}

/// Bytes as text: UTF-8 as it is, anything else as `\x` hex.
pub(super) fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => hex_text(b),
    }
}

pub(super) fn parse_output(spec: &CliSpec, stdout: &[u8]) -> Result<Parsed, String> {
    let mut affected = None;
    // Lines that are not data: affected-count lines and ignored lines (generic clients).
    let stdout: std::borrow::Cow<'_, [u8]> =
        if spec.affected_regex.is_some() || spec.ignore_regex.is_some() {
            let mut kept = Vec::with_capacity(stdout.len());
            for line in stdout.split_inclusive(|b| *b == b'\n') {
                let text = String::from_utf8_lossy(line);
                let t = text.trim_end_matches(['\r', '\n']);
                if let Some(c) = spec.affected_regex.as_ref().and_then(|re| re.captures(t)) {
                    affected = c
                        .get(1)
                        .and_then(|m| m.as_str().parse::<u64>().ok())
                        .or(affected);
                    continue;
                }
                if spec.ignore_regex.as_ref().is_some_and(|re| re.is_match(t)) {
                    continue;
                }
                kept.extend_from_slice(line);
            }
            kept.into()
        } else {
            stdout.into()
        };
    let mut parsed = match spec.format {
        Format::Csv => records_to_sets(parse_csv(&stdout)?, spec),
        Format::Tsv => records_to_sets(parse_tsv(&stdout, spec.escapes), spec),
        Format::Json => parse_json_sets(&stdout)?,
        Format::MysqlXml => parse_mysql_xml(&stdout)?,
    };
    // The marker result the epilogue printed, last.
    if let Some(last) = parsed.sets.last()
        && last.columns.len() == 1
        && last.columns[0] == AFFECTED_MARK
    {
        let n = last
            .rows
            .last()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.trim().parse::<i64>().ok());
        parsed.affected = n.map(|n| n.max(0) as u64);
        parsed.sets.pop();
    }
    if parsed.affected.is_none() {
        parsed.affected = affected;
    }
    Ok(parsed)
}

/// One field of a delimited record: its bytes and whether it was quoted.
type Field = (Vec<u8>, bool);

/// Records (header first) into result sets. Delimited output has no boundaries between results,
/// so everything is one set, except the marker the epilogue printed last (two records).
pub(super) fn records_to_sets(mut records: Vec<Vec<Field>>, spec: &CliSpec) -> Parsed {
    let mut parsed = Parsed::default();
    let n = records.len();
    let marker_at = n.checked_sub(2).filter(|&i| {
        records[i].len() == 1
            && records[i][0].0 == AFFECTED_MARK.as_bytes()
            && records[i + 1].len() == 1
    });
    let marker = marker_at.map(|i| records.split_off(i));
    let value = |(bytes, quoted): Field| -> Option<String> {
        if !quoted
            && spec
                .null
                .as_deref()
                .is_some_and(|n| n.as_bytes() == bytes.as_slice())
        {
            None
        } else {
            Some(bytes_text(&bytes))
        }
    };
    if !records.is_empty() {
        let mut it = records.into_iter();
        let mut set = RowSet::default();
        if spec.header {
            let header = it.next().expect("not empty");
            set.columns = header.into_iter().map(|(b, _)| bytes_text(&b)).collect();
        }
        for r in it {
            set.rows.push(r.into_iter().map(value).collect());
        }
        if !spec.header {
            let width = set.rows.iter().map(Vec::len).max().unwrap_or(0);
            set.columns = (1..=width).map(|i| format!("column{i}")).collect();
        }
        parsed.sets.push(set);
    }
    if let Some(mut m) = marker {
        let count = m.pop().expect("two records").remove(0);
        parsed.sets.push(RowSet {
            columns: vec![AFFECTED_MARK.into()],
            types: vec!["I".into()],
            rows: vec![vec![Some(bytes_text(&count.0))]],
        });
    }
    parsed
}

/// RFC 4180 CSV (quotes doubled inside quoted fields; newlines inside quotes are data; CRLF or
/// LF between records).
pub(super) fn parse_csv(input: &[u8]) -> Result<Vec<Vec<Field>>, String> {
    let mut records = Vec::new();
    let mut record: Vec<Field> = Vec::new();
    let mut field = Vec::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut i = 0;
    let mut at_record_start = true;
    while i < input.len() {
        let b = input[i];
        if in_quotes {
            if b == b'"' {
                if input.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(b);
            }
        } else {
            match b {
                b'"' if field.is_empty() && !quoted => {
                    in_quotes = true;
                    quoted = true;
                }
                b',' => record.push((
                    std::mem::take(&mut field),
                    std::mem::replace(&mut quoted, false),
                )),
                b'\r' if input.get(i + 1) == Some(&b'\n') => {}
                b'\n' => {
                    record.push((
                        std::mem::take(&mut field),
                        std::mem::replace(&mut quoted, false),
                    ));
                    records.push(std::mem::take(&mut record));
                    at_record_start = true;
                    i += 1;
                    continue;
                }
                _ => field.push(b),
            }
        }
        at_record_start = false;
        i += 1;
    }
    if in_quotes {
        return Err("a quoted CSV field is not closed".into());
    }
    if !at_record_start {
        record.push((field, quoted));
        records.push(record);
    }
    Ok(records)
}

/// Tab-separated lines; with `escapes`, `\t`, `\n`, `\r`, `\0` and `\\` inside values.
pub(super) fn parse_tsv(input: &[u8], escapes: bool) -> Vec<Vec<Field>> {
    let mut records = Vec::new();
    for line in input.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        records.push(
            line.split(|b| *b == b'\t')
                .map(|f| {
                    if !escapes {
                        return (f.to_vec(), false);
                    }
                    let mut out = Vec::with_capacity(f.len());
                    let mut it = f.iter();
                    while let Some(&b) = it.next() {
                        if b == b'\\' {
                            match it.next() {
                                Some(b't') => out.push(b'\t'),
                                Some(b'n') => out.push(b'\n'),
                                Some(b'r') => out.push(b'\r'),
                                Some(b'0') => out.push(0),
                                Some(&o) => out.push(o),
                                None => out.push(b'\\'),
                            }
                        } else {
                            out.push(b);
                        }
                    }
                    (out, false)
                })
                .collect(),
        );
    }
    // the newline after the last line does not start a record
    if records
        .last()
        .is_some_and(|r: &Vec<Field>| r.len() == 1 && r[0].0.is_empty())
    {
        records.pop();
    }
    records
}

/// A JSON object with its keys in the order written.
pub(super) struct OrderedObject(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for OrderedObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<OrderedObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(OrderedObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A sequence of JSON arrays of objects (`sqlite3 -json`), one per result.
pub(super) fn parse_json_sets(input: &[u8]) -> Result<Parsed, String> {
    let text = String::from_utf8_lossy(input);
    let mut parsed = Parsed::default();
    for item in serde_json::Deserializer::from_str(&text).into_iter::<Vec<OrderedObject>>() {
        let objects = item.map_err(|e| e.to_string())?;
        let mut set = RowSet::default();
        for (i, obj) in objects.into_iter().enumerate() {
            if i == 0 {
                set.columns = obj.0.iter().map(|(k, _)| k.clone()).collect();
            }
            set.rows.push(
                obj.0
                    .into_iter()
                    .map(|(_, v)| match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            );
        }
        parsed.sets.push(set);
    }
    Ok(parsed)
}

/// `mysql --xml`: `<resultset>` elements of `<row>`s of `<field name="…">value</field>` (or
/// `xsi:nil="true"` for NULL). Values may be any bytes; they are read as bytes.
pub(super) fn parse_mysql_xml(input: &[u8]) -> Result<Parsed, String> {
    fn find(h: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        h.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }
    let mut parsed = Parsed::default();
    let mut pos = 0;
    while let Some(start) = find(input, b"<resultset", pos) {
        let open_end = find(input, b">", start).ok_or("unterminated <resultset>")?;
        let mut set = RowSet::default();
        if input[open_end - 1] == b'/' {
            pos = open_end + 1;
            parsed.sets.push(set);
            continue;
        }
        let end = find(input, b"</resultset>", open_end).ok_or("missing </resultset>")?;
        let body = &input[open_end + 1..end];
        let mut rp = 0;
        let mut first = true;
        while let Some(rs) = find(body, b"<row>", rp) {
            let re = find(body, b"</row>", rs).ok_or("missing </row>")?;
            let row_body = &body[rs + 5..re];
            let mut values = Vec::new();
            let mut fp = 0;
            while let Some(fs) = find(row_body, b"<field name=\"", fp) {
                let name_start = fs + 13;
                let name_end =
                    find(row_body, b"\"", name_start).ok_or("unterminated field name")?;
                let name = unescape_xml(&row_body[name_start..name_end]);
                let tag_end = find(row_body, b">", name_end).ok_or("unterminated <field>")?;
                let tag = &row_body[name_end..tag_end];
                if first {
                    set.columns.push(bytes_text(&name));
                }
                if tag.ends_with(b"/") {
                    // <field name="b" xsi:nil="true" />
                    values.push(if find(tag, b"xsi:nil=\"true\"", 0).is_some() {
                        None
                    } else {
                        Some(String::new())
                    });
                    fp = tag_end + 1;
                } else {
                    let close = find(row_body, b"</field>", tag_end).ok_or("missing </field>")?;
                    values.push(Some(bytes_text(&unescape_xml(
                        &row_body[tag_end + 1..close],
                    ))));
                    fp = close + 8;
                }
            }
            first = false;
            set.rows.push(values);
            rp = re + 6;
        }
        parsed.sets.push(set);
        pos = end + 12;
    }
    Ok(parsed)
}

pub(super) fn unescape_xml(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'&'
            && let Some(len) = b[i..].iter().take(12).position(|c| *c == b';')
        {
            let ent = &b[i + 1..i + len];
            let rep: Option<Vec<u8>> = match ent {
                b"lt" => Some(b"<".to_vec()),
                b"gt" => Some(b">".to_vec()),
                b"amp" => Some(b"&".to_vec()),
                b"quot" => Some(b"\"".to_vec()),
                b"apos" => Some(b"'".to_vec()),
                _ if ent.first() == Some(&b'#') => {
                    let digits = String::from_utf8_lossy(&ent[1..]).to_string();
                    let n = match digits.strip_prefix('x') {
                        Some(h) => u32::from_str_radix(h, 16).ok(),
                        None => digits.parse::<u32>().ok(),
                    };
                    n.and_then(char::from_u32)
                        .map(|c| c.to_string().into_bytes())
                }
                _ => None,
            };
            if let Some(r) = rep {
                out.extend_from_slice(&r);
                i += len + 1;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}
