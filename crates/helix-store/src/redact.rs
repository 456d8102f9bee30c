//! How a configured URL (DB_URL, COLLECTOR_ENDPOINT, a verify_url, …) may be shown in logs,
//! errors and pages: without anything that could be a credential.

/// Query parameters whose values are connection settings, never credentials.
const HARMLESS_PARAMS: [&str; 4] = ["sslmode", "connect_timeout", "application_name", "target_session_attrs"];

/// `url` with its credentials replaced by `***`: the password, the user name too unless it is
/// a database URL (`https://TOKEN@host` is a common way to pass a token), every query value but
/// a few connection settings (`?password=…`, `?token=…`), and the fragment dropped. A string
/// without a scheme is treated as `userinfo@host…` all the same.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let database = scheme.is_some_and(|s| s.starts_with("postgres"));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // A password may itself contain '@': the host follows the last one.
    let authority = match authority.rfind('@') {
        None => authority.to_owned(),
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) if database => format!("{user}:***@{host}"),
                None if database => format!("{userinfo}@{host}"),
                _ => format!("***@{host}"),
            }
        }
    };
    let tail = tail.split('#').next().unwrap_or("");
    let tail = match tail.split_once('?') {
        None => tail.to_owned(),
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if HARMLESS_PARAMS.contains(&key) => pair.to_owned(),
                    Some((key, _)) => format!("{key}=***"),
                    None if pair.is_empty() => String::new(),
                    None => "***".to_owned(),
                })
                .collect();
            format!("{path}?{}", pairs.join("&"))
        }
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{tail}"),
        None => format!("{authority}{tail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_urls_keep_the_user_and_the_connection_settings() {
        assert_eq!(
            redact_url("postgres://helix:s3cr@t@db:5432/helix?sslmode=disable&password=pw"),
            "postgres://helix:***@db:5432/helix?sslmode=disable&password=***"
        );
        assert_eq!(redact_url("postgres://helix@127.0.0.1:5432/x"), "postgres://helix@127.0.0.1:5432/x");
        assert_eq!(redact_url("postgresql://db/x"), "postgresql://db/x");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn other_urls_lose_the_whole_userinfo_query_values_and_fragment() {
        assert_eq!(redact_url("https://u:p@sso.example/verify?key=K#f"), "https://***@sso.example/verify?key=***");
        assert_eq!(redact_url("http://ghp_TOKEN@collector:4317"), "http://***@collector:4317");
        assert_eq!(redact_url("user:pw@collector:4317"), "***@collector:4317");
        assert_eq!(redact_url("http://collector:4317/?TOKEN"), "http://collector:4317/?***");
        assert_eq!(redact_url("http://marquez:5000/"), "http://marquez:5000/");
    }
}
