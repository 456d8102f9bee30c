//! `GET /api/openapi.json`: the hand-maintained OpenAPI 3 document (`openapi.json` beside
//! this file), and the tests that keep it and the router in agreement.

use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Route;

/// The document, served verbatim. Edit it together with any route or parameter change;
/// the tests below fail when the two drift apart.
pub const DOCUMENT: &str = include_str!("openapi.json");
/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";

pub fn routes() -> Vec<Route> {
    vec![Route { method: Method::GET, path: PATH, query: &[], handler: get(document) }]
}

async fn document() -> Response {
    let mut response = DOCUMENT.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::super::fake::FakeStore;
    use super::super::{routes, RESOURCES};
    use super::*;

    fn doc() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    /// Follows a local `$ref` such as `#/components/parameters/id`.
    fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').expect("local reference");
                doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {reference}"))
            }
            None => value,
        }
    }

    /// (METHOD, path) of every operation in the document.
    fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
        let paths = doc["paths"].as_object().expect("paths object");
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object().expect("path item").keys().map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let doc = doc();
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let routed: BTreeSet<(String, String)> =
            routes().iter().map(|r| (r.method.as_str().to_owned(), r.path.to_owned())).collect();
        assert_eq!(routed.len(), routes().len(), "a route is registered twice");
        assert_eq!(routed, documented_operations(&doc));
    }

    #[test]
    fn every_operation_is_tagged_with_the_resource_that_serves_it() {
        let doc = doc();
        for resource in RESOURCES {
            for route in (resource.routes)() {
                let tags = &doc["paths"][route.path][route.method.as_str().to_lowercase()]["tags"];
                assert_eq!(tags, &serde_json::json!([resource.name]), "tags of {}", route.path);
            }
        }
    }

    #[test]
    fn the_documented_id_limit_is_the_model_rule() {
        let doc = doc();
        let max = doc["components"]["parameters"]["id"]["schema"]["maxLength"].as_u64();
        assert_eq!(max, Some(helix_model::MAX_ENTITY_ID_BYTES as u64));
    }

    #[test]
    fn documented_parameters_match_what_each_handler_accepts() {
        let doc = doc();
        for route in routes() {
            let operation = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
            let mut by_location: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for parameter in operation["parameters"].as_array().expect("parameters array") {
                let parameter = resolve(&doc, parameter);
                let location = parameter["in"].as_str().expect("in").to_owned();
                let name = parameter["name"].as_str().expect("name").to_owned();
                by_location.entry(location).or_default().insert(name);
            }
            let accepted: BTreeSet<String> = route.query.iter().map(|name| (*name).to_owned()).collect();
            assert_eq!(by_location.remove("query").unwrap_or_default(), accepted, "query of {}", route.path);
            let templated: BTreeSet<String> = route
                .path
                .split('/')
                .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            assert_eq!(by_location.remove("path").unwrap_or_default(), templated, "path of {}", route.path);
            assert!(by_location.is_empty(), "unexpected parameter locations on {}", route.path);
        }
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(doc: &Value, value: &Value) {
            match value {
                Value::Object(map) => {
                    if map.contains_key("$ref") {
                        resolve(doc, value);
                    }
                    map.values().for_each(|v| walk(doc, v));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(doc, v)),
                _ => {}
            }
        }
        let doc = doc();
        walk(&doc, &doc);
    }

    /// The rules every handler shares, stated on every operation so a schema-driven client
    /// (and tests/openapi's fuzzer) knows them: an empty query value is the parameter left
    /// out, a required one therefore needs a character; the listeners' 414 and 431.
    #[test]
    fn shared_request_rules_are_stated_on_every_operation() {
        let doc = doc();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                let responses = &operation["responses"];
                for status in ["414", "431"] {
                    assert!(responses.get(status).is_some(), "{method} {path} documents {status}");
                }
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let parameter = resolve(&doc, parameter);
                    if parameter["in"] != "query" {
                        continue;
                    }
                    let name = parameter["name"].as_str().expect("name");
                    if parameter["required"] == true {
                        let schema = &parameter["schema"];
                        let min = schema["minLength"].as_u64().or_else(|| schema["items"]["minLength"].as_u64());
                        assert!(min >= Some(1), "{method} {path}: required `{name}` has minLength 1");
                    } else {
                        assert_eq!(
                            parameter["allowEmptyValue"], true,
                            "{method} {path}: optional `{name}` may be empty"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn documented_cursor_and_id_patterns_are_the_server_rules() {
        let doc = doc();
        let parameters = &doc["components"]["parameters"];
        assert_eq!(parameters["cursor"]["schema"]["pattern"], "^[!-~]*$", "printable ASCII, as QueryParams::cursor");
        assert_eq!(parameters["cursor"]["schema"]["maxLength"], super::super::params::MAX_CURSOR_BYTES as u64);
        // char::is_control is exactly Unicode's Cc: U+0000–U+001F and U+007F–U+009F.
        assert_eq!(parameters["id"]["schema"]["pattern"], "^[^\\x00-\\x1f\\x7f-\\x9f]+$");
        for c in ['\u{0}', '\u{1f}', '\u{7f}', '\u{9f}'] {
            assert!(c.is_control());
        }
        for c in ['\u{20}', '\u{7e}', '\u{a0}'] {
            assert!(!c.is_control());
        }
    }

    /// A documented schema lists exactly the fields the store type serializes.
    fn assert_schema_matches<T: serde::Serialize>(schema: &str, sample: &T) {
        let doc = doc();
        let properties: BTreeSet<String> = doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema} has properties"))
            .keys()
            .cloned()
            .collect();
        let serialized: BTreeSet<String> =
            serde_json::to_value(sample).expect("serializes").as_object().expect("object").keys().cloned().collect();
        assert_eq!(properties, serialized, "schema {schema}");
    }

    #[test]
    fn schemas_match_the_serialized_store_types() {
        use helix_model::{EntityEvent, LogRecorded, Status};
        use helix_store::{Edge, Entity, GraphNode, LineageNode, Operation, StageSummary};
        assert_schema_matches(
            "Entity",
            &Entity {
                id: "e".into(),
                instrument_id: "I".into(),
                trace_id: None,
                span_id: None,
                timestamp_ns: 0,
                end_ns: None,
                stage: None,
                service_name: None,
                process_name: None,
                status: Status::Ok,
                placeholder: true,
                parent_ids: vec![],
                metadata: Default::default(),
                created_at: String::new(),
            },
        );
        assert_schema_matches(
            "EntityEvent",
            &EntityEvent {
                entity_id: "e".into(),
                instrument_id: "I".into(),
                event_name: helix_model::ERROR_EVENT.into(),
                timestamp_ns: 0,
                metadata: Default::default(),
                trace_id: String::new(),
                span_id: String::new(),
                ordinal: 0,
            },
        );
        assert_schema_matches(
            "Operation",
            &Operation {
                entity_id: "e".into(),
                instrument_id: "I".into(),
                operation: "archive".into(),
                trace_id: String::new(),
                span_id: String::new(),
                timestamp_ns: 0,
                duration_ns: 0,
                status: Status::Ok,
                service_name: None,
                metadata: Default::default(),
                created_at: String::new(),
            },
        );
        assert_schema_matches(
            "LogRecord",
            &LogRecorded {
                timestamp_ns: 0,
                observed_ns: 0,
                severity: "INFO".into(),
                severity_number: 9,
                body: String::new(),
                trace_id: None,
                span_id: None,
                entity_id: None,
                instrument_id: None,
                process_name: None,
                service_name: None,
                source: None,
                attributes: Default::default(),
                resource: Default::default(),
            },
        );
        assert_schema_matches("Edge", &Edge { source: "a".into(), target: "b".into() });
        assert_schema_matches(
            "GraphNode",
            &GraphNode {
                id: "e".into(),
                instrument_id: "I".into(),
                trace_id: None,
                timestamp_ns: 0,
                parent_ids: vec![],
                metadata: Default::default(),
                has_error: false,
            },
        );
        assert_schema_matches(
            "LineageNode",
            &LineageNode {
                id: "e".into(),
                depth: 0,
                stage: None,
                status: Status::Ok,
                instrument_id: "I".into(),
                timestamp_ns: 0,
                parent_ids: vec![],
                placeholder: false,
            },
        );
        let index = super::super::index::build();
        assert_schema_matches("ApiIndex", &index);
        assert_schema_matches("IndexResource", &index.resources[0]);
        assert_schema_matches("IndexLink", &index.resources[0].links[0]);
        assert_schema_matches(
            "StageSummary",
            &StageSummary { stage: "s".into(), count: 0, error_count: 0, last_seen_ns: 0 },
        );
    }

    /// Fills a path template with a hostile but valid ID and the required query parameters.
    fn concrete_uri(doc: &Value, path: &str, method: &str) -> String {
        let mut uri = path
            .replace("{id}", "a%2Fb%20%3Cscript%3E")
            .replace("{silence_id}", "1")
            .replace("{trace_id}", "4bf92f3577b34da6a3ce929d0e0e4736")
            .replace("{traceID}", "4bf92f3577b34da6a3ce929d0e0e4736");
        let operation = &doc["paths"][path][method];
        let required: Vec<String> = operation["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| resolve(doc, p))
            .filter(|p| p["in"] == "query" && p["required"] == true)
            .map(|p| {
                // A parameter with a syntax of its own (a LogQL query) documents an example.
                let value = p["example"].as_str().unwrap_or("X");
                let encoded: String = value
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                    .collect();
                format!("{}={encoded}", p["name"].as_str().expect("name"))
            })
            .collect();
        if !required.is_empty() {
            uri = format!("{uri}?{}", required.join("&"));
        }
        uri
    }

    #[tokio::test]
    async fn every_documented_operation_reaches_a_handler() {
        let doc = doc();
        let app = super::super::app(FakeStore::empty().state());
        for (method, path) in documented_operations(&doc) {
            let uri = concrete_uri(&doc, &path, &method.to_lowercase());
            let request = Request::builder().method(method.as_str()).uri(&uri).body(Body::empty()).expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            let body = to_bytes(response.into_body(), usize::MAX).await.expect("body");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            // A routing miss is axum's bare 404; a handler's 404 always carries a JSON error.
            if status == StatusCode::NOT_FOUND {
                let error: Value = serde_json::from_slice(&body).expect("handler 404s are JSON");
                assert!(error["error"].as_str().is_some_and(|m| m.contains("not found")), "{method} {uri}");
            }
            // An operation that documents a request body answers the empty one with its own 400.
            let wants_body = doc["paths"][&path][method.to_lowercase()]["requestBody"].is_object();
            if wants_body && status == StatusCode::BAD_REQUEST {
                let error: Value = serde_json::from_slice(&body).expect("handler 400s are JSON");
                assert!(error["error"].is_string(), "{method} {uri}");
                continue;
            }
            assert!(status.is_success() || status == StatusCode::NOT_FOUND, "{method} {uri}: {status}");
        }
    }

    /// The documented `Access-Control-Allow-Origin` header is sent exactly where it is documented.
    #[tokio::test]
    async fn cross_origin_answers_are_where_the_document_says() {
        let doc = doc();
        let app = super::super::app(FakeStore::empty().state());
        for (method, path) in documented_operations(&doc) {
            let method = method.to_lowercase();
            let documented = doc["paths"][&path][&method]["responses"]["200"]["headers"]
                .get("Access-Control-Allow-Origin")
                .is_some();
            let uri = concrete_uri(&doc, &path, &method);
            let request = Request::builder().uri(&uri).body(Body::empty()).expect("request");
            let response = app.clone().oneshot(request).await.expect("infallible");
            let sent = response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).map(|v| v.as_bytes().to_vec());
            let expected = documented.then(|| b"*".to_vec());
            assert_eq!(sent, expected, "{uri}");
        }
    }

    #[tokio::test]
    async fn the_document_is_served_as_json() {
        let app = super::super::app(FakeStore::empty().state());
        let request = Request::builder().uri(PATH).body(Body::empty()).expect("request");
        let response = app.oneshot(request).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = to_bytes(response.into_body(), usize::MAX).await.expect("body");
        assert_eq!(serde_json::from_slice::<Value>(&body).expect("json"), doc());
    }
}
