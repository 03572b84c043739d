//! libpq connection strings as ddlgate reads and shows them: URLs (`postgres://…?…`) and
//! `key=value` strings. Whatever ddlgate prints of one (`serve --check-config`, errors, logs)
//! goes through [`redact`]: a password never appears.

/// The connection string with its password replaced by `***` (the URL's `user:password@`,
/// a `password=` parameter of a URL, or a `password=` keyword, quoted or not).
pub(crate) fn redact(dsn: &str) -> String {
    let trimmed = dsn.trim();
    if let Some((scheme, rest)) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|p| trimmed.strip_prefix(p).map(|rest| (*p, rest)))
    {
        let (authority_end, _) = rest
            .char_indices()
            .find(|(_, c)| matches!(c, '/' | '?'))
            .unwrap_or((rest.len(), ' '));
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, hosts)) => match user_info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{hosts}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let query: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", query.join("&"))
            }
            None => tail.to_owned(),
        };
        return format!("{scheme}{authority}{tail}");
    }
    redact_keywords(trimmed)
}

/// `password=…` of a keyword string replaced by `password=***`.
fn redact_keywords(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    while let Some(at) = find_password_key(rest) {
        out.push_str(&rest[..at]);
        out.push_str("password=***");
        let after_key = &rest[at..];
        let value_start = after_key.find('=').map_or(after_key.len(), |i| i + 1);
        let value = after_key[value_start..].trim_start();
        let skipped = after_key.len() - value.len();
        let value_len = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            let mut end = quoted.len();
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        rest = &rest[at + skipped + value_len..];
    }
    out.push_str(rest);
    out
}

/// Where a `password` keyword (followed by `=`, spaces allowed) starts, at a word boundary.
fn find_password_key(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("password") {
        let at = from + i;
        let boundary = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[at + "password".len()..].trim_start();
        if boundary && after.starts_with('=') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A `%`-encoded URL component decoded.
pub(crate) fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

/// The query parameters of a URL, decoded (empty for a keyword string or a URL without any).
pub(crate) fn url_parameters(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let dsn = dsn.trim();
    if !(dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")) {
        return Ok(Vec::new());
    }
    let Some((_, query)) = dsn.split_once('?') else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        for (dsn, shown) in [
            (
                "postgres://migrator:hunter2@db:5432/app?sslmode=require",
                "postgres://migrator:***@db:5432/app?sslmode=require",
            ),
            (
                "postgresql://u@db/app?password=hunter2&x=1",
                "postgresql://u@db/app?password=***&x=1",
            ),
            (
                "host=db user=u password=hunter2 dbname=app",
                "host=db user=u password=*** dbname=app",
            ),
            (
                "host=db password = 'hun ter\\'2' dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("host=db mypassword=x", "host=db mypassword=x"),
            ("db.internal:5432", "db.internal:5432"),
        ] {
            assert_eq!(redact(dsn), shown, "{dsn}");
            assert!(!redact(dsn).contains("hunter2"));
        }
    }

    #[test]
    fn url_parameters_are_decoded() {
        assert_eq!(
            url_parameters("postgres://h/app?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem")
                .unwrap(),
            [
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/ca.pem".to_owned())
            ]
        );
        assert!(url_parameters("host=h sslmode=require").unwrap().is_empty());
        assert!(url_parameters("postgres://h/?a=%zz").is_err());
    }
}
