//! Keeps `static/openapi.json` honest: the document and the route table name the same
//! operations, with the same access level, and every path parameter is declared.

use super::routes::ROUTES;
use serde_json::Value;
use std::collections::BTreeSet;

const DOCUMENT: &str = include_str!("../../static/openapi.json");
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("static/openapi.json is valid JSON")
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("the document has paths");
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(pattern, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys().filter(|k| METHODS.contains(&k.as_str())).map(move |m| (m.clone(), pattern.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> =
        ROUTES.iter().map(|r| (r.method.to_lowercase(), r.pattern.to_string())).collect();
    assert_eq!(routed.len(), ROUTES.len(), "ROUTES lists a (method, pattern) twice");
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from static/openapi.json: {undocumented:?}; documented but not routes: {unrouted:?}"
    );
}

#[test]
fn documented_access_levels_and_path_parameters_match_the_routes() {
    let doc = document();
    for route in ROUTES {
        let item = &doc["paths"][route.pattern];
        let operation = &item[route.method.to_lowercase()];
        let where_ = format!("{} {}", route.method, route.pattern);
        assert_eq!(
            operation["x-jitgate-access"].as_str(),
            Some(format!("{:?}", route.access).as_str()),
            "{where_}: x-jitgate-access differs from the route table"
        );
        let declared: BTreeSet<&str> = [&item["parameters"], &operation["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let in_pattern: BTreeSet<&str> =
            route.pattern.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, in_pattern, "{where_}: path parameters declared differ from the pattern");
    }
}
