//! Where telemetry goes: builder settings > `OTEL_EXPORTER_OTLP_*` environment > defaults.

use crate::Error;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, paths `/v1/traces` and `/v1/logs`).
    HttpProtobuf,
}

impl Protocol {
    /// Parse the values of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn parse(value: &str) -> Result<Protocol, Error> {
        match value.trim() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" | "http" => Ok(Protocol::HttpProtobuf),
            other => {
                Err(Error::Config(format!("unsupported OTLP protocol {other:?}: use \"grpc\" or \"http/protobuf\"")))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Logs,
}

impl Signal {
    fn env(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Signal::Traces => "/v1/traces",
            Signal::Logs => "/v1/logs",
        }
    }
}

/// Where and how one signal is exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) protocol: Protocol,
    /// gRPC: `scheme://host:port`; HTTP: the full URL including the signal's path.
    pub(crate) url: String,
    pub(crate) tls: bool,
}

pub(crate) fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()))
}

pub(crate) fn resolve_protocol(explicit: Option<Protocol>, signal: Signal) -> Result<Protocol, Error> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    match env(&[&format!("OTEL_EXPORTER_OTLP_{}_PROTOCOL", signal.env()), "OTEL_EXPORTER_OTLP_PROTOCOL"]) {
        Some(v) => Protocol::parse(&v),
        None => Ok(Protocol::Grpc),
    }
}

fn split_scheme(endpoint: &str) -> (Option<String>, &str) {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, endpoint),
    }
}

/// The port of `host:port[/path]` (IPv6 in brackets allowed).
fn port_of(authority_and_path: &str) -> Option<u16> {
    let authority = authority_and_path.split('/').next().unwrap_or("");
    let after_host = match authority.rfind(']') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    after_host.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// Resolve `endpoint` (a `host:port` or a URL; `None`: the environment, then the default) for
/// `signal`. TLS: `https://` / `http://` decide when given; else
/// `OTEL_EXPORTER_OTLP_[SIGNAL_]INSECURE`; else TLS exactly on port 443.
pub(crate) fn resolve_target(
    endpoint: Option<&str>,
    insecure: Option<bool>,
    protocol: Protocol,
    signal: Signal,
) -> Result<Target, Error> {
    let mut signal_specific = false;
    let endpoint = match endpoint {
        Some(e) => e.trim().to_owned(),
        None => match env(&[&format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.env())]) {
            Some(e) => {
                signal_specific = true;
                e
            }
            None => env(&["OTEL_EXPORTER_OTLP_ENDPOINT"]).unwrap_or_else(|| {
                match protocol {
                    Protocol::Grpc => "localhost:4317",
                    Protocol::HttpProtobuf => "localhost:4318",
                }
                .to_owned()
            }),
        },
    };
    let (scheme, rest) = split_scheme(&endpoint);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(Error::Config(format!(
            "OTLP endpoint {endpoint:?} has no host: use host:port, e.g. \"localhost:4317\""
        )));
    }
    let tls = match (&scheme, insecure) {
        (Some(s), _) if s == "https" => true,
        (Some(s), _) if s == "http" => false,
        (Some(s), _) => {
            return Err(Error::Config(format!(
                "OTLP endpoint {endpoint:?}: unsupported scheme {s:?} (use http:// or https://)"
            )))
        }
        (None, Some(insecure)) => !insecure,
        (None, None) => {
            match env(&[&format!("OTEL_EXPORTER_OTLP_{}_INSECURE", signal.env()), "OTEL_EXPORTER_OTLP_INSECURE"]) {
                Some(v) => !v.eq_ignore_ascii_case("true"),
                None => port_of(rest) == Some(443),
            }
        }
    };
    let scheme = if tls { "https" } else { "http" };
    let url = match protocol {
        Protocol::Grpc => {
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }
        Protocol::HttpProtobuf => {
            let has_path = rest.contains('/');
            if signal_specific || has_path {
                format!("{scheme}://{rest}")
            } else {
                format!("{scheme}://{rest}{}", signal.path())
            }
        }
    };
    if tls && !cfg!(feature = "tls") {
        return Err(Error::Config(format!(
            "OTLP endpoint {endpoint:?} needs TLS: enable the `tls` feature of helixobs, or use a plaintext endpoint (http://, .insecure(true))"
        )));
    }
    Ok(Target { protocol, url, tls })
}

/// `OTEL_EXPORTER_OTLP_HEADERS` (`k=v,k2=v2`, values percent-decoded).
pub(crate) fn env_headers() -> Vec<(String, String)> {
    let Some(raw) = env(&["OTEL_EXPORTER_OTLP_HEADERS"]) else {
        return Vec::new();
    };
    raw.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), percent_decode(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() && s.is_char_boundary(i + 3) {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_and_urls() {
        let t = resolve_target(Some("localhost:4317"), None, Protocol::Grpc, Signal::Traces).unwrap();
        assert_eq!(t, Target { protocol: Protocol::Grpc, url: "http://localhost:4317".into(), tls: false });
        let t = resolve_target(Some("http://127.0.0.1:9/"), None, Protocol::Grpc, Signal::Logs).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:9");
        let t = resolve_target(Some("127.0.0.1:4318"), None, Protocol::HttpProtobuf, Signal::Logs).unwrap();
        assert_eq!(t.url, "http://127.0.0.1:4318/v1/logs");
        let t = resolve_target(Some("http://h:1/custom/traces"), None, Protocol::HttpProtobuf, Signal::Traces).unwrap();
        assert_eq!(t.url, "http://h:1/custom/traces");
        let err = resolve_target(Some("ftp://h:1"), None, Protocol::Grpc, Signal::Traces).unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
    }

    #[test]
    fn port_443_means_tls() {
        let t = resolve_target(Some("herald.example.org:443"), None, Protocol::Grpc, Signal::Traces);
        if cfg!(feature = "tls") {
            assert!(t.unwrap().tls);
        } else {
            assert!(t.unwrap_err().to_string().contains("`tls` feature"));
        }
        let t = resolve_target(Some("herald.example.org:443"), Some(true), Protocol::Grpc, Signal::Traces).unwrap();
        assert!(!t.tls);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("Bearer%20abc"), "Bearer abc");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::parse("grpc").unwrap(), Protocol::Grpc);
        assert_eq!(Protocol::parse("http/protobuf").unwrap(), Protocol::HttpProtobuf);
        assert!(Protocol::parse("http/json").unwrap_err().to_string().contains("http/protobuf"));
    }
}
