//! Text for messages: short, single-line excerpts of what another program or server said.

/// A short, single-line, printable excerpt for error messages (at most 200 characters).
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    out = one_line(&out);
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The first `shown` names, then how many more: `a, b, … and 7 more`.
pub(crate) fn abbreviate(names: &[String], shown: usize) -> String {
    if names.len() <= shown {
        names.join(", ")
    } else {
        format!(
            "{}, … and {} more",
            names[..shown].join(", "),
            names.len() - shown
        )
    }
}

/// Collapses all whitespace runs to single spaces: protocol answers are one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A serde_json error reduced to its category, field name and position: serde's own messages
/// can quote values, and values in credential files are secrets.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if let Some(field) = text.strip_prefix("missing field ") {
        return format!(
            "missing field {}",
            field.split_whitespace().next().unwrap_or("")
        );
    }
    match e.classify() {
        serde_json::error::Category::Data => "a field has the wrong type".to_owned(),
        _ => format!("invalid JSON at line {} column {}", e.line(), e.column()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(
            excerpt(b"<html>\n<body>oops</body></html>"),
            "<html> <body>oops</body></html>"
        );
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), 201);
        assert_eq!(excerpt(b"a\x00b\x1b[31m"), "a b [31m");
        assert_eq!(one_line(" a \n b\t"), "a b");
    }

    #[test]
    fn json_errors_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Key {
            private_key: String,
            n: u32,
        }
        let e = serde_json::from_str::<Key>(r#"{"private_key": 5, "n": 1}"#).unwrap_err();
        assert_eq!(json_error(&e), "a field has the wrong type");
        let e = serde_json::from_str::<Key>(r#"{"n": "secret-value"}"#).unwrap_err();
        assert!(!json_error(&e).contains("secret-value"));
        let e = serde_json::from_str::<Key>(r#"{"n": 1}"#).unwrap_err();
        assert_eq!(json_error(&e), "missing field `private_key`");
        let e = serde_json::from_str::<Key>("{").unwrap_err();
        assert!(json_error(&e).starts_with("invalid JSON at line 1"));
    }
}
