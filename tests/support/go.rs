//! The few Go standard-library behaviours the kubelet's rules rest on, written in Rust from
//! their documented semantics: `time.ParseDuration`, `path/filepath.Match` (Unix, separator
//! `/`), `net/url.Parse` for `scheme://authority/path` strings, and `net.SplitHostPort`.
//! They are test support, checked by the table tests in tests/kubelet_rules.rs, and only as
//! faithful as those inputs need (see the notes on each function).

/// `time.ParseDuration`: an optional sign, then one or more decimal numbers (with an optional
/// fraction) each followed by a unit (ns, us, µs, μs, ms, s, m, h); a bare "0" is allowed.
/// Returns nanoseconds.
pub(crate) fn parse_duration(input: &str) -> Result<i128, String> {
    let err = || Err(format!("time: invalid duration {input:?}"));
    let mut s = input;
    let mut negative = false;
    if let Some(rest) = s.strip_prefix('-') {
        negative = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return err();
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return err();
        }
        let int_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (int_part, rest) = s.split_at(int_len);
        s = rest;
        let mut frac_part = "";
        if let Some(rest) = s.strip_prefix('.') {
            let frac_len = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            frac_part = &rest[..frac_len];
            s = &rest[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return err();
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {input:?}"));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let scale: f64 = match unit {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {input:?}")),
        };
        let number: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .map_err(|_| format!("time: invalid duration {input:?}"))?;
        total += number * scale;
        if total > i64::MAX as f64 {
            return err();
        }
    }
    let ns = total.round() as i128;
    Ok(if negative { -ns } else { ns })
}

/// `path/filepath.Match` on Unix: `*` (any run of non-`/`), `?` (one non-`/` character),
/// `[...]` classes with ranges and `^` negation, `\` escapes. A malformed pattern is an
/// error (`ErrBadPattern`), also when the name already failed to match.
pub(crate) fn filepath_match(pattern: &str, name: &str) -> Result<bool, String> {
    let mut pattern = pattern;
    let mut name = name;
    'outer: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            return Ok(!name.contains('/'));
        }
        let (t, ok) = match_chunk(chunk, name)?;
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let (t, ok) = match_chunk(chunk, &name[i + c.len_utf8()..])?;
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'outer;
                }
            }
        }
        // A failed match still reports a malformed remainder of the pattern.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, "")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Leading stars, then the chunk up to the next star outside a class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let trimmed = pattern.trim_start_matches('*');
    let star = trimmed.len() != pattern.len();
    let bytes = trimmed.as_bytes();
    let mut in_range = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &trimmed[..i], &trimmed[i..])
}

/// Matches `chunk` (no stars) against the start of `s`; returns the rest of `s` and whether it
/// matched. Keeps reading the chunk after a mismatch so that syntax errors are reported.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<(&'a str, bool), String> {
    let bad = || Err("syntax error in pattern".to_owned());
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(first) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            '[' => {
                let mut r = '\0';
                if !failed {
                    r = s.chars().next().unwrap_or('\0');
                    s = &s[r.len_utf8()..];
                }
                chunk = &chunk[1..];
                let mut negated = false;
                if let Some(rest) = chunk.strip_prefix('^') {
                    negated = true;
                    chunk = rest;
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if ranges > 0
                        && let Some(rest) = chunk.strip_prefix(']')
                    {
                        chunk = rest;
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if let Some(rest) = chunk.strip_prefix('-') {
                        let (h, rest) = class_char(rest)?;
                        hi = h;
                        chunk = rest;
                    }
                    if lo <= r && r <= hi {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let c = s.chars().next().unwrap_or('\0');
                    if c == '/' {
                        failed = true;
                    }
                    s = &s[c.len_utf8()..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                let mut literal = first;
                if first == '\\' {
                    chunk = &chunk[1..];
                    match chunk.chars().next() {
                        Some(c) => literal = c,
                        None => return bad(),
                    }
                }
                if !failed {
                    if !s.starts_with(literal) {
                        failed = true;
                    } else {
                        s = &s[literal.len_utf8()..];
                    }
                }
                chunk = &chunk[literal.len_utf8()..];
            }
        }
    }
    Ok(if failed { ("", false) } else { (s, true) })
}

/// One character of a class (possibly escaped); the class must go on after it.
fn class_char(chunk: &str) -> Result<(char, &str), String> {
    let bad = || Err("syntax error in pattern".to_owned());
    let mut chunk = chunk;
    match chunk.chars().next() {
        None | Some('-') | Some(']') => return bad(),
        Some('\\') => chunk = &chunk[1..],
        _ => {}
    }
    let Some(c) = chunk.chars().next() else {
        return bad();
    };
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return bad();
    }
    Ok((c, rest))
}

/// What `net/url.Parse` gives for `scheme://authority/path?query#fragment`: the host (with
/// port, without user info) and the unescaped path. Errors as Go's: control characters, an
/// invalid port after the host, a character not allowed in a host, a bad percent escape.
/// Percent escapes in the host are rejected outright (Go accepts a few); no test input has one.
pub(crate) fn url_parse(raw: &str) -> Result<(String, String), String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    let without_fragment = raw.split('#').next().unwrap_or("");
    let without_query = without_fragment.split('?').next().unwrap_or("");
    let (_, rest) = without_query
        .split_once("://")
        .ok_or_else(|| "missing scheme".to_owned())?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    check_host(host)?;
    Ok((host.to_owned(), unescape(path)?))
}

fn check_host(host: &str) -> Result<(), String> {
    let name = if let Some(v6) = host.strip_prefix('[') {
        let close = v6.find(']').ok_or("missing ']' in host")?;
        valid_optional_port(&v6[close + 1..])?;
        &v6[..close]
    } else if let Some(i) = host.rfind(':') {
        valid_optional_port(&host[i..])?;
        &host[..i]
    } else {
        host
    };
    let allowed =
        |c: u8| c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c) || c >= 0x80;
    if name.bytes().all(allowed) {
        Ok(())
    } else {
        Err(format!("invalid character in host name {host:?}"))
    }
}

fn valid_optional_port(port: &str) -> Result<(), String> {
    match port.strip_prefix(':') {
        _ if port.is_empty() => Ok(()),
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!("invalid port {port:?} after host")),
    }
}

fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("invalid URL escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `net.SplitHostPort`; `None` where Go returns an error (no port, too many colons, a
/// missing bracket).
pub(crate) fn split_host_port(hostport: &str) -> Option<(String, String)> {
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return (!host.contains(['[', ']']) && !port.contains(['[', ']', ':']))
            .then(|| (host.to_owned(), port.to_owned()));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    (!host.contains([':', '[', ']']) && !port.contains(['[', ']']))
        .then(|| (host.to_owned(), port.to_owned()))
}
