//! Reading a client's error output (psql, mysql, sqlite3, generic) into a `ComponentError`.

use super::*;

/// At most 1000 characters of a message.
pub(super) fn short(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= 1000 {
        return s.to_string();
    }
    let mut t: String = s.chars().take(1000).collect();
    t.push('…');
    t
}

/// A connection problem in words a certifier understands.
pub(super) fn connect_problem(settings: &SqlSettings, text: &str) -> ComponentError {
    let lower = text.to_lowercase();
    let what = if lower.contains("authentication failed")
        || lower.contains("access denied")
        || lower.contains("password")
    {
        "authentication failed (wrong user name or password?)"
    } else if lower.contains("connection refused") {
        "connection refused (is the server running and listening there?)"
    } else {
        "cannot connect"
    };
    settings.connect_err(format!("{what}: {}", short(text)))
}

pub(super) fn classify_generic(settings: &SqlSettings, message: &str, all: &str) -> ComponentError {
    let lower = all.to_lowercase();
    let connecting = [
        "authentication failed",
        "access denied",
        "connection refused",
        "could not connect",
        "can't connect",
        "unable to open database",
        "could not translate host",
    ];
    if connecting.iter().any(|c| lower.contains(c)) {
        connect_problem(settings, all)
    } else {
        ComponentError::Operation(short(message))
    }
}

/// psql exits 2 when the connection failed and 3 when a statement failed (`ON_ERROR_STOP`);
/// `VERBOSITY=verbose` puts the SQLSTATE in front of the message (`ERROR:  23505: …`).
pub(super) fn psql_error(settings: &SqlSettings, code: i32, text: &str) -> ComponentError {
    if code == 2 {
        return connect_problem(settings, text.trim_start_matches("psql: error: "));
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.contains("ERROR:") || l.contains("FATAL:"))
    else {
        return ComponentError::Operation(short(text));
    };
    let first = lines[start];
    let body = first
        .split_once("ERROR:")
        .or_else(|| first.split_once("FATAL:"))
        .map_or(first, |(_, b)| b)
        .trim();
    let (sqlstate, message) = match body.split_once(": ") {
        Some((c, m)) if c.len() == 5 && c.chars().all(|ch| ch.is_ascii_alphanumeric()) => {
            (Some(c), m)
        }
        _ => (None, body),
    };
    let mut detail = Vec::new();
    for l in &lines[start + 1..] {
        let t = l.trim_start();
        if let Some(d) = t
            .strip_prefix("DETAIL:")
            .or_else(|| t.strip_prefix("HINT:"))
        {
            detail.push(d.trim());
        } else if t.starts_with("LINE ")
            || t.starts_with('^')
            || t.contains("NAME:")
            || t.starts_with("LOCATION:")
        {
            continue;
        } else if t.contains("ERROR:") {
            break;
        }
    }
    let codes = sqlstate
        .map(|c| format!("SQLSTATE {c}"))
        .unwrap_or_default();
    let detail = (!detail.is_empty()).then(|| detail.join(" "));
    let text = sql_error_text(message, &codes, detail.as_deref());
    if sqlstate.is_some_and(crate::component::sql_errors::postgres_server_gone) {
        return settings.lost(short(&text));
    }
    ComponentError::Operation(text)
}

/// `ERROR 1062 (23000) at line 1: Duplicate entry …`; client errors (2xxx) are connection
/// problems, 1045 is a rejected password.
pub(super) fn mysql_error(settings: &SqlSettings, text: &str) -> ComponentError {
    let re = Regex::new(r"ERROR (\d+)(?: \(([0-9A-Z]{5})\))?(?: at line \d+)?: (.*)")
        .expect("valid regex");
    let Some(line) = text.lines().find(|l| re.is_match(l)) else {
        return classify_generic(settings, text, text);
    };
    let c = re.captures(line).expect("matched");
    let number: u32 = c[1].parse().unwrap_or(0);
    let message = c[3].to_string();
    // the message may continue on the following lines
    let rest: Vec<&str> = text.lines().skip_while(|l| *l != line).skip(1).collect();
    let message = if rest.is_empty() {
        message
    } else {
        format!("{message}\n{}", rest.join("\n"))
    };
    let codes = match c.get(2) {
        Some(s) => format!("error {number}, SQLSTATE {}", s.as_str()),
        None => format!("error {number}"),
    };
    let full = sql_error_text(&message, &codes, None);
    match number {
        1045 | 1698 | 1251 => settings.connect_err(format!(
            "authentication failed (wrong user name or password?): {}",
            short(&full)
        )),
        // the MariaDB client reports a refused connection as errno 115 (EINPROGRESS)
        2002 | 2003 if message.contains("(111)") || message.contains("(115)") => settings
            .connect_err(format!(
                "connection refused (is the server running and listening there?): {}",
                short(&full)
            )),
        n if crate::component::sql_errors::mysql_server_gone(n) => settings.lost(short(&full)),
        2000..=2999 => connect_problem(settings, &full),
        _ => ComponentError::Operation(full),
    }
}

/// `Runtime error near line 7: UNIQUE constraint failed: t.a (19)`, `Parse error near line 3: …`,
/// `Error: unable to open database "x"`.
pub(super) fn sqlite_error(settings: &SqlSettings, text: &str) -> ComponentError {
    let line = text
        .lines()
        .find(|l| l.contains("error") || l.contains("Error"))
        .unwrap_or(text)
        .trim();
    if line.contains("unable to open database") {
        return settings.connect_err(short(text));
    }
    let body = match line.find(": ") {
        Some(i) if line[..i].contains("rror") => &line[i + 2..],
        _ => line,
    };
    let re = Regex::new(r"^(.*) \((\d+)\)$").expect("valid regex");
    let rest: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != line)
        .skip(1)
        .collect();
    let full = match re.captures(body) {
        Some(c) => sql_error_text(&c[1], &format!("error {}", &c[2]), None),
        None => sql_error_text(body, "", None),
    };
    let full = if rest.is_empty() {
        full
    } else {
        format!("{full}\n{}", rest.join("\n"))
    };
    ComponentError::Operation(full)
}
