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

/// What is wrong with a JSON document, without quoting any of it: its category (syntax, an
/// early end, a field missing or of the wrong type), the missing field's name and the position.
/// serde's own messages can quote values, and values are secrets in credential files and
/// tokens in answers. Every JSON error that reaches a message goes through here.
pub(crate) fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {} column {}", e.line(), e.column());
    match e.classify() {
        // serde words every missing field the same way (`de::Error::missing_field`), and
        // serde_json offers the name no other way; the value is never part of it.
        Category::Data => match e.to_string().strip_prefix("missing field ") {
            Some(field) => format!(
                "missing field {}",
                field.split_whitespace().next().unwrap_or("")
            ),
            None => format!("a field has the wrong type {at}"),
        },
        Category::Eof => format!("unexpected end {at}"),
        Category::Syntax => format!("syntax error {at}"),
        Category::Io => "read error".to_owned(),
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
        assert_eq!(
            json_error(&e),
            "a field has the wrong type at line 1 column 17"
        );
        let e = serde_json::from_str::<Key>(r#"{"n": "secret-value"}"#).unwrap_err();
        assert!(!json_error(&e).contains("secret-value"));
        let e = serde_json::from_str::<Key>(r#"{"n": 1}"#).unwrap_err();
        assert_eq!(json_error(&e), "missing field `private_key`");
        let e = serde_json::from_str::<Key>("{").unwrap_err();
        assert_eq!(json_error(&e), "unexpected end at line 1 column 1");
        let e = serde_json::from_str::<Key>("{\n  \"n\": x").unwrap_err();
        assert_eq!(json_error(&e), "syntax error at line 2 column 8");
    }
}
