//! What tools written against the older herald see over real HTTP from a real herald: the
//! compatible endpoints answer any origin, an unknown entity's operations are `200 []`, and
//! `/api/v1/` is an index of the API rather than a 404.

mod support;

use helix_model::builders::{pipeline_resource, traces, SpanBuilder};
use serde_json::Value;
use support::*;

/// Status, `Access-Control-Allow-Origin` (if any) and body of a GET sent the way a browser on
/// another origin sends it.
async fn get_from_elsewhere(herald: &Herald, path: &str) -> (u16, Option<String>, Value) {
    let response = reqwest::Client::new()
        .get(herald.api_url(path))
        .header("Origin", "http://dashboard.example")
        .send()
        .await
        .expect("API request");
    let status = response.status().as_u16();
    let allow_origin =
        response.headers().get("access-control-allow-origin").map(|v| v.to_str().expect("ascii header").to_owned());
    let text = response.text().await.expect("body");
    (status, allow_origin, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compatible_endpoints_answer_any_origin_and_unknown_operations_are_empty() {
    let herald = Herald::start();
    let mut client = raw_client(&herald).await;
    let spans = vec![
        SpanBuilder::creation("ingest", "blk-1", 1).attr("snr", helix_model::builders::double(7.5)).build(),
        SpanBuilder::operation("archive", "blk-1", 2).build(),
    ];
    client.export(traces(pipeline_resource("svc", "CHIME"), spans)).await.expect("export acknowledged");
    eventually(std::time::Duration::from_secs(10), async || {
        let (status, _) = herald.get("/api/v1/entity/blk-1").await;
        (status == 200).then_some(())
    })
    .await;

    // The older herald's endpoints carry `*`, on success and on errors alike.
    for path in [
        "/api/v1/entity/blk-1/graph",
        "/api/v1/entity/blk-1/operations",
        "/api/v1/entity/nope/graph",
        "/api/v1/monitor/fields?instrument=CHIME",
        "/api/v1/monitor/bins?instrument=CHIME&y_field=snr",
        "/api/v1/monitor/bins?instrument=CHIME&y_field=NOT-A-FIELD",
    ] {
        let (_, allow_origin, _) = get_from_elsewhere(&herald, path).await;
        assert_eq!(allow_origin.as_deref(), Some("*"), "{path}");
    }
    let (status, _, operations) = get_from_elsewhere(&herald, "/api/v1/entity/blk-1/operations").await;
    assert_eq!(status, 200);
    let names: Vec<&str> =
        operations.as_array().expect("bare array").iter().filter_map(|o| o["operation"].as_str()).collect();
    assert_eq!(names, ["creation", "archive"]);

    // An entity the herald never heard of has no operations, as the older herald answers.
    let (status, allow_origin, body) = get_from_elsewhere(&herald, "/api/v1/entity/never-seen/operations").await;
    assert_eq!((status, allow_origin.as_deref(), body), (200, Some("*"), serde_json::json!([])));

    // Our own entity-page endpoints keep their 404 and are not opened to other origins.
    for path in ["/api/v1/entity/never-seen", "/api/v1/entity/never-seen/events", "/api/v1/entity/never-seen/lineage"] {
        let (status, allow_origin, body) = get_from_elsewhere(&herald, path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "entity `never-seen` not found", "{path}");
        assert_eq!(allow_origin, None, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_root_is_an_index_of_every_endpoint() {
    let herald = Herald::start();
    let index = herald.get_ok("/api/v1/").await;
    assert_eq!(index["service"], "herald");
    assert_eq!(index["openapi"], "/api/openapi.json");
    let links: Vec<(String, String)> = index["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|resource| resource["links"].as_array().expect("links").iter())
        .map(|link| (link["method"].as_str().unwrap().to_owned(), link["href"].as_str().unwrap().to_owned()))
        .collect();
    // Every linked path without a template answers (with its required parameter filled in).
    let openapi = herald.get_ok("/api/openapi.json").await;
    for (method, href) in &links {
        let documented = &openapi["paths"][href.as_str()][method.to_lowercase()];
        assert!(documented.is_object(), "{method} {href} is linked but not in the OpenAPI document");
        if method != "GET" {
            // The sign-in (POST /auth/token) is exercised in tests/auth.rs.
            continue;
        }
        if href.contains('{') {
            continue;
        }
        let needs_instrument = ["/api/v1/stages", "/api/v1/stages/timeline", "/api/v1/errors", "/api/v1/monitor"]
            .iter()
            .any(|p| href.starts_with(p));
        // Required parameters with a syntax of their own (a LogQL query) document an example.
        let examples: Vec<String> = openapi["paths"][href.as_str()]["get"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["required"] == true && p["in"] == "query")
            .filter_map(|p| Some(format!("{}={}", p["name"].as_str()?, enc(p["example"].as_str()?))))
            .collect();
        let path = if needs_instrument {
            format!("{href}?instrument=CHIME")
        } else if !examples.is_empty() {
            format!("{href}?{}", examples.join("&"))
        } else {
            href.clone()
        };
        let (status, _) = herald.get_text(&path).await;
        assert_eq!(status, 200, "GET {path}");
    }
    assert!(links.iter().any(|(_, href)| href == "/api/v1/entity/{id}/operations"));
    let (status, body) = herald.get("/api/v2/").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().is_some_and(|m| m.contains("/api/v1/")), "{body}");
}
