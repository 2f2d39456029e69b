//! `*` and `?` glob patterns over ids (`os.*`, `db.sql-*`).

/// Does `pattern` match the whole of `text`? `*` matches any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("os.*", "os.basic"));
        assert!(glob_match("*", ""));
        assert!(glob_match("db.sql-*", "db.sql-core"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("os.*", "db.os"));
        assert!(!glob_match("os.basic", "os.basic2"));
        assert!(glob_match("*basic*", "os.basic.x"));
    }
}
