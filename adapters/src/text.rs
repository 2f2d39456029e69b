//! Text helpers shared by the adapters and the harness: an error with its sources on one line,
//! and output cut to a size at a character boundary.

/// `outer: inner: innermost` for an error and its sources. A source whose text is empty or
/// already part of the line (an outer message that embeds its cause, as hyper and rustls do) is
/// not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        let t = t.trim();
        if !t.is_empty() && !s.contains(t) {
            s.push_str(": ");
            s.push_str(t);
        }
        cur = c.source();
    }
    s
}

/// The last `max` bytes of `bytes` as text, cut at a character boundary, `…` in front when cut
/// (the end of a command's output is where its failure is).
pub fn excerpt(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= max {
        return text.into_owned();
    }
    let start = text.ceil_char_boundary(text.len() - max);
    format!("…{}", &text[start..])
}

/// The first `max` characters of `s`, `…` after them when cut (a value in a message).
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);
    #[derive(Debug, thiserror::Error)]
    #[error("connect failed: refused")]
    struct Embeds(#[source] std::io::Error);

    #[test]
    fn error_chain_joins_sources_once() {
        let e = Outer(Inner(std::io::Error::other("innermost")));
        assert_eq!(error_chain(&e), "outer: inner: innermost");
        let e = Embeds(std::io::Error::other("refused"));
        assert_eq!(error_chain(&e), "connect failed: refused");
    }

    #[test]
    fn excerpt_keeps_the_tail_at_a_char_boundary() {
        assert_eq!(excerpt(b"short", 10), "short");
        // "é" is two bytes: keeping 3 bytes of "aéé" would start inside the first "é".
        assert_eq!(excerpt("aéé".as_bytes(), 3), "…é");
        assert_eq!(excerpt(b"abcdef", 2), "…ef");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo", 2), "hé…");
    }
}
