//! The admin endpoints that mirror the registry CLI (labels, render, diff, metrics recording,
//! canary checks, experiments, export, audit verification) over real HTTP against a temp
//! SQLite registry, and the OpenAPI document that describes them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use common::{Gateway, error_of, start};
use serde_json::{Value, json};

fn content(system: &str) -> Value {
    json!({
        "messages": [
            {"role": "system", "template": system},
            {"role": "user", "template": "Say hi to {{ who }} ({{ times }} times)."}
        ],
        "variables": [
            {"name": "who", "type": "string"},
            {"name": "times", "type": "integer"}
        ],
        "model": "up/echo"
    })
}

/// `greet` 1.0.0 ("Version one.") and 1.1.0 ("Version two.").
async fn two_versions() -> Gateway {
    let gw = start("", true).await;
    for (system, bump) in [("Version one.", "patch"), ("Version two.", "minor")] {
        let response = gw
            .post(
                "/admin/v1/prompts/greet/versions",
                json!({"content": content(system), "bump": bump}),
            )
            .await;
        assert_eq!(response.status(), 201);
    }
    gw
}

async fn send(gw: &Gateway, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
    gw.client
        .request(method, gw.url(path))
        .header("x-promptops-actor", "bob")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// [`send`], expecting the error envelope with `status`; the envelope's `error` member.
async fn refused(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    body: Value,
    status: u16,
) -> Value {
    error_of(send(gw, method, path, body).await, status).await
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    body
}

async fn audit_actions(gw: &Gateway) -> Vec<(String, String)> {
    let audit = ok(gw.get("/admin/v1/audit?prompt=greet").await).await;
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn labels_move_are_audited_and_serve_label_references() {
    let gw = two_versions().await;
    let put = reqwest::Method::PUT;
    let set = ok(send(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/production",
        json!({"version": "1.0.0"}),
    )
    .await)
    .await;
    assert_eq!(set["version"], "1.0.0");
    assert_eq!(set["before"], Value::Null);
    let chat = json!({"model": "prompt:greet:production", "messages": [], "prompt_variables": {"who": "A", "times": 1}});
    let response = gw.post("/v1/chat/completions", chat.clone()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        gw.upstream.last_body()["messages"][0]["content"],
        "Version one."
    );

    let moved = ok(send(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/production",
        json!({"version": "1.1.0"}),
    )
    .await)
    .await;
    assert_eq!(moved["before"], "1.0.0");
    let shown = ok(gw.get("/admin/v1/prompts/greet/versions/production").await).await;
    assert_eq!(shown["version"], "1.1.0");
    let response = gw.post("/v1/chat/completions", chat).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        gw.upstream.last_body()["messages"][0]["content"],
        "Version two."
    );

    // A label can also be set from another label.
    let staged = ok(send(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/staging",
        json!({"version": "production"}),
    )
    .await)
    .await;
    assert_eq!(staged["version"], "1.1.0");

    let labels = audit_actions(&gw)
        .await
        .into_iter()
        .filter(|(action, _)| action == "set_label")
        .collect::<Vec<_>>();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(labels.iter().all(|(_, actor)| actor == "bob"), "{labels:?}");

    let bad = refused(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/no%20spaces",
        json!({"version": "1.0.0"}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "label");
    let bad = refused(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/x",
        json!({"version": "1.0.0.0"}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "version");
    let bad = refused(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/x",
        json!({}),
        400,
    )
    .await;
    assert!(
        bad["message"].as_str().unwrap().contains("version"),
        "{bad}"
    );
    refused(
        &gw,
        put.clone(),
        "/admin/v1/prompts/greet/labels/x",
        json!({"version": "9.9.9"}),
        404,
    )
    .await;
    refused(
        &gw,
        put,
        "/admin/v1/prompts/ghost/labels/x",
        json!({"version": "1.0.0"}),
        404,
    )
    .await;
}

#[tokio::test]
async fn render_diff_export_and_audit_verification() {
    let gw = two_versions().await;
    let post = reqwest::Method::POST;
    let rendered = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.0.0/render",
        json!({"variables": {"who": "Ann", "times": 2}}),
    )
    .await)
    .await;
    assert_eq!(rendered["version"], "1.0.0");
    assert_eq!(rendered["messages"][0]["content"], "Version one.");
    assert_eq!(
        rendered["messages"][1]["content"],
        "Say hi to Ann (2 times)."
    );
    let bad = refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.1.0/render",
        json!({"variables": {"times": 2}}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "variables");
    assert!(bad["message"].as_str().unwrap().contains("who"), "{bad}");
    refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/2.0.0/render",
        json!({}),
        404,
    )
    .await;

    let diff = ok(gw.get("/admin/v1/prompts/greet/diff?a=1.0.0&b=1.1.0").await).await;
    let templates = diff["templates"].as_str().unwrap();
    assert!(templates.contains("-Version one."), "{diff}");
    assert!(templates.contains("+Version two."), "{diff}");
    let same = ok(gw.get("/admin/v1/prompts/greet/diff?a=1.1.0&b=1.1.0").await).await;
    assert_eq!(same["templates"], "");
    assert_eq!(same["fields"], json!([]));
    error_of(gw.get("/admin/v1/prompts/greet/diff?a=1.0.0").await, 400).await;
    error_of(
        gw.get("/admin/v1/prompts/greet/diff?a=1.0.0&b=missing")
            .await,
        404,
    )
    .await;

    // Without a production label the export holds the latest version; with one, that version.
    let exported = ok(gw.get("/admin/v1/export").await).await;
    assert_eq!(exported[0]["version"], "1.1.0");
    send(
        &gw,
        reqwest::Method::PUT,
        "/admin/v1/prompts/greet/labels/production",
        json!({"version": "1.0.0"}),
    )
    .await;
    for format in ["toml", "yaml"] {
        let exported = ok(gw.get(&format!("/admin/v1/export?format={format}")).await).await;
        let files = exported.as_array().unwrap();
        assert_eq!(files.len(), 1, "{exported}");
        assert_eq!(files[0]["version"], "1.0.0");
        let file = files[0]["file"].as_str().unwrap();
        assert_eq!(file, format!("greet.{format}"));
        // The text reads back as the exported version's content.
        let parsed = promptops_registry::files::parse_prompt_file(
            std::path::Path::new(file),
            files[0]["text"].as_str().unwrap(),
        )
        .unwrap();
        let stored = ok(gw.get("/admin/v1/prompts/greet/versions/1.0.0").await).await;
        assert_eq!(parsed.name, "greet");
        assert_eq!(
            serde_json::to_value(&parsed.content).unwrap(),
            stored["content"]
        );
    }
    let bad = error_of(gw.get("/admin/v1/export?format=xml").await, 400).await;
    assert_eq!(bad["param"], "format");

    let verified = ok(gw.get("/admin/v1/audit/verify").await).await;
    assert_eq!(verified["rows"], 3, "two versions and a label: {verified}");
    assert_eq!(verified["broken_at"], Value::Null);
}

#[tokio::test]
async fn recorded_metrics_feed_the_canary_check_which_rolls_back_a_breach() {
    let gw = two_versions().await;
    let post = reqwest::Method::POST;
    for (version, fraction) in [("1.0.0", 1.0), ("1.1.0", 0.5)] {
        ok(send(
            &gw,
            post.clone(),
            "/admin/v1/prompts/greet/deploy",
            json!({"version": version, "fraction": fraction}),
        )
        .await)
        .await;
    }
    let recorded = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.0.0/metrics",
        json!({"count": 5, "latency_ms": 100.0, "cost": 0.01}),
    )
    .await)
    .await;
    assert_eq!(recorded["recorded"], 5);
    assert_eq!(recorded["summary"]["requests"], 5);
    assert_eq!(recorded["summary"]["success_rate"], 1.0);
    let recorded = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.1.0/metrics",
        json!({"count": 5, "parse_error": true, "latency_ms": 100.0, "cost": 0.01}),
    )
    .await)
    .await;
    assert_eq!(recorded["summary"]["success_rate"], 0.0);
    let shown = ok(gw
        .get("/admin/v1/prompts/greet/versions/1.1.0/metrics")
        .await)
    .await;
    assert_eq!(shown["summary"]["parse_error_rate"], 1.0);

    let bad = refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.0.0/metrics",
        json!({"count": 0, "latency_ms": 1.0}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "count");
    let bad = refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.0.0/metrics",
        json!({}),
        400,
    )
    .await;
    assert!(
        bad["message"].as_str().unwrap().contains("latency_ms"),
        "{bad}"
    );
    refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/1.0.0/metrics",
        json!({"latency_ms": -1.0}),
        400,
    )
    .await;
    refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/versions/3.0.0/metrics",
        json!({"latency_ms": 1.0}),
        404,
    )
    .await;

    // Five requests each are too few under the default policy: nothing happens.
    let check = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/canary/check",
        json!({}),
    )
    .await)
    .await;
    assert_eq!(check["verdict"]["verdict"], "insufficient_data", "{check}");
    assert_eq!(check["rolled_back"], Value::Null);
    let all = ok(send(&gw, post.clone(), "/admin/v1/canary/check", json!({})).await).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let shown = ok(gw.get("/admin/v1/prompts/greet").await).await;
    assert_eq!(shown["deployment"]["candidate"], "1.1.0");

    // Judged at five requests, the failing candidate is rolled back and the rollback audited.
    let check = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/canary/check",
        json!({"min_requests": 5}),
    )
    .await)
    .await;
    assert_eq!(check["verdict"]["verdict"], "breach", "{check}");
    assert!(check["rolled_back"].is_object(), "{check}");
    let shown = ok(gw.get("/admin/v1/prompts/greet").await).await;
    assert_eq!(shown["deployment"]["candidate"], Value::Null);
    assert_eq!(shown["deployment"]["stable"], "1.0.0");
    assert!(
        audit_actions(&gw)
            .await
            .contains(&("rollback".to_owned(), "bob".to_owned()))
    );
    let response = gw
        .post("/v1/chat/completions", json!({"model": "prompt:greet", "messages": [], "prompt_variables": {"who": "A", "times": 1}}))
        .await;
    assert_eq!(
        response.headers()["x-promptops-prompt-version"],
        "greet@1.0.0"
    );

    // No canary left: the per-prompt check conflicts, the global one has nothing to judge.
    refused(
        &gw,
        post.clone(),
        "/admin/v1/prompts/greet/canary/check",
        json!({}),
        409,
    )
    .await;
    let all = ok(send(&gw, post.clone(), "/admin/v1/canary/check", json!({})).await).await;
    assert_eq!(all, json!([]));
    let bad = refused(
        &gw,
        post,
        "/admin/v1/canary/check",
        json!({"min_requests": "many"}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "min_requests");
}

#[tokio::test]
async fn experiments_are_created_assigned_recorded_and_analyzed() {
    let gw = two_versions().await;
    let post = reqwest::Method::POST;
    let arms = json!([{"version": "1.0.0"}, {"version": "1.1.0", "weight": 1.0}]);
    let created = send(
        &gw,
        post.clone(),
        "/admin/v1/experiments",
        json!({"name": "tone", "prompt": "greet", "arms": arms}),
    )
    .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["arms"][1]["version"], "1.1.0");
    assert!(
        audit_actions(&gw)
            .await
            .contains(&("create_experiment".to_owned(), "bob".to_owned()))
    );
    refused(
        &gw,
        post.clone(),
        "/admin/v1/experiments",
        json!({"name": "tone", "prompt": "greet", "arms": arms}),
        409,
    )
    .await;
    let bad = refused(&gw, post.clone(), "/admin/v1/experiments", json!({"name": "t2", "prompt": "greet", "arms": [{"version": "1.0.0"}, {"version": "one"}]}), 400).await;
    assert_eq!(bad["param"], "arms[1].version");
    refused(
        &gw,
        post.clone(),
        "/admin/v1/experiments",
        json!({"name": "t3", "prompt": "greet", "arms": [{"version": "1.0.0"}]}),
        400,
    )
    .await;
    refused(
        &gw,
        post.clone(),
        "/admin/v1/experiments",
        json!({"name": "t4", "prompt": "ghost", "arms": arms}),
        404,
    )
    .await;

    let shown = ok(gw.get("/admin/v1/experiments/tone").await).await;
    assert_eq!(shown["prompt"], "greet");
    error_of(gw.get("/admin/v1/experiments/ghost").await, 404).await;

    // Every unit's outcome lands on its assigned arm; 1.1.0 succeeds, 1.0.0 mostly fails.
    let mut per_arm = [0u64; 2];
    for i in 0..60 {
        let unit = format!("user-{i}");
        let assigned = ok(gw
            .get(&format!(
                "/admin/v1/experiments/tone/assignment?unit={unit}"
            ))
            .await)
        .await;
        let arm = assigned["arm"].as_u64().unwrap() as usize;
        assert_eq!(assigned["version"], shown["arms"][arm]["version"]);
        let recorded = ok(send(
            &gw,
            post.clone(),
            "/admin/v1/experiments/tone/outcomes",
            json!({"unit": unit, "success": arm == 1 || i % 5 == 0}),
        )
        .await)
        .await;
        assert_eq!(recorded["arm"], arm);
        per_arm[arm] += 1;
    }
    assert!(per_arm[0] > 0 && per_arm[1] > 0, "{per_arm:?}");
    let pinned = ok(send(
        &gw,
        post.clone(),
        "/admin/v1/experiments/tone/outcomes",
        json!({"unit": "extra", "version": "1.1.0", "score": 0.5}),
    )
    .await)
    .await;
    assert_eq!(pinned["arm"], 1);
    refused(
        &gw,
        post.clone(),
        "/admin/v1/experiments/tone/outcomes",
        json!({"unit": "u"}),
        400,
    )
    .await;
    let bad = refused(
        &gw,
        post.clone(),
        "/admin/v1/experiments/tone/outcomes",
        json!({"unit": "u", "version": "x", "success": true}),
        400,
    )
    .await;
    assert_eq!(bad["param"], "version");
    refused(
        &gw,
        post,
        "/admin/v1/experiments/ghost/outcomes",
        json!({"unit": "u", "success": true}),
        404,
    )
    .await;

    let report = ok(gw
        .get("/admin/v1/experiments/tone/analysis?alpha=0.05")
        .await)
    .await;
    let units: Vec<u64> = report["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arm| arm["units"].as_u64().unwrap())
        .collect();
    assert_eq!(units, vec![per_arm[0], per_arm[1] + 1], "{report}");
    let rate = &report["comparisons"][0];
    assert_eq!(rate["metric"], "success_rate");
    assert!(
        rate["result"]["treatment"].as_f64().unwrap() > rate["result"]["control"].as_f64().unwrap(),
        "{report}"
    );
    error_of(
        gw.get("/admin/v1/experiments/tone/analysis?alpha=lots")
            .await,
        400,
    )
    .await;
    error_of(gw.get("/admin/v1/experiments/ghost/analysis").await, 404).await;
}

#[tokio::test]
async fn openapi_documents_every_admin_route() {
    let gw = start("", true).await;
    let doc: Value = gw.get("/openapi.json").await.json().await.unwrap();
    let expected = [
        ("get", "/admin/v1/prompts"),
        ("get", "/admin/v1/prompts/{name}"),
        ("post", "/admin/v1/prompts/{name}/versions"),
        ("get", "/admin/v1/prompts/{name}/versions/{version}"),
        ("get", "/admin/v1/prompts/{name}/versions/{version}/metrics"),
        (
            "post",
            "/admin/v1/prompts/{name}/versions/{version}/metrics",
        ),
        ("post", "/admin/v1/prompts/{name}/versions/{version}/render"),
        ("put", "/admin/v1/prompts/{name}/labels/{label}"),
        ("get", "/admin/v1/prompts/{name}/diff"),
        ("post", "/admin/v1/prompts/{name}/deploy"),
        ("post", "/admin/v1/prompts/{name}/expand"),
        ("post", "/admin/v1/prompts/{name}/promote"),
        ("post", "/admin/v1/prompts/{name}/rollback"),
        ("get", "/admin/v1/prompts/{name}/route"),
        ("post", "/admin/v1/prompts/{name}/canary/check"),
        ("post", "/admin/v1/canary/check"),
        ("post", "/admin/v1/experiments"),
        ("get", "/admin/v1/experiments/{name}"),
        ("get", "/admin/v1/experiments/{name}/assignment"),
        ("post", "/admin/v1/experiments/{name}/outcomes"),
        ("get", "/admin/v1/experiments/{name}/analysis"),
        ("get", "/admin/v1/export"),
        ("get", "/admin/v1/audit"),
        ("get", "/admin/v1/audit/verify"),
        ("get", "/admin/v1/reviews"),
        ("post", "/admin/v1/reviews/{id}"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push((method, path.as_str()));
            }
        }
    }
    documented.sort();
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(documented, expected);
    for (name, schema) in [
        ("LabelBody", "version"),
        ("RenderBody", "variables"),
        ("RecordMetricsBody", "latency_ms"),
        ("CanaryPolicyBody", "min_requests"),
        ("CreateExperimentBody", "arms"),
        ("OutcomeBody", "unit"),
    ] {
        assert!(
            doc["components"]["schemas"][name]["properties"][schema].is_object(),
            "{name}.{schema}"
        );
    }
    // Each documented route is served (an empty registry answers, never a routing 404/405).
    for (method, path) in expected {
        let concrete = path
            .replace("{name}", "ghost")
            .replace("{version}", "1.0.0")
            .replace("{label}", "production")
            .replace("{id}", "1");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = send(&gw, method.clone(), &concrete, json!({})).await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_ne!(status, 405, "{method} {concrete}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.starts_with("no route"),
            "{method} {concrete}: {body}"
        );
    }
}

#[tokio::test]
async fn new_admin_routes_need_an_admin_key() {
    let keys = format!(
        r#"
[[keys]]
name = "user"
key_sha256 = "{user}"
role = "user"

[[keys]]
name = "boss"
key_sha256 = "{admin}"
role = "admin"
"#,
        user = promptops_access::sha256_hex("po-user-secret"),
        admin = promptops_access::sha256_hex("po-admin-secret"),
    );
    let gw = start(&keys, true).await;
    let added = gw
        .client
        .post(gw.url("/admin/v1/prompts/greet/versions"))
        .bearer_auth("po-admin-secret")
        .json(&json!({"content": content("Version one.")}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let routes = [
        (
            "PUT",
            "/admin/v1/prompts/greet/labels/production",
            json!({"version": "1.0.0"}),
        ),
        (
            "POST",
            "/admin/v1/prompts/greet/versions/1.0.0/render",
            json!({"variables": {"who": "A", "times": 1}}),
        ),
        (
            "GET",
            "/admin/v1/prompts/greet/diff?a=1.0.0&b=1.0.0",
            json!({}),
        ),
        (
            "POST",
            "/admin/v1/prompts/greet/versions/1.0.0/metrics",
            json!({"latency_ms": 1.0}),
        ),
        ("POST", "/admin/v1/canary/check", json!({})),
        (
            "POST",
            "/admin/v1/experiments",
            json!({"name": "e", "prompt": "greet", "arms": []}),
        ),
        ("GET", "/admin/v1/export", json!({})),
        ("GET", "/admin/v1/audit/verify", json!({})),
    ];
    for (method, path, body) in &routes {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = || gw.client.request(method.clone(), gw.url(path)).json(body);
        error_of(request().send().await.unwrap(), 401).await;
        error_of(
            request()
                .bearer_auth("po-user-secret")
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
    }
    // The refused calls changed nothing: no label, no recorded requests.
    let admin_get = |path: &'static str| {
        gw.client
            .get(gw.url(path))
            .bearer_auth("po-admin-secret")
            .send()
    };
    error_of(
        admin_get("/admin/v1/prompts/greet/versions/production")
            .await
            .unwrap(),
        404,
    )
    .await;
    let metrics: Value = admin_get("/admin/v1/prompts/greet/versions/1.0.0/metrics")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["summary"], Value::Null, "{metrics}");
    // With the admin key the same label call goes through.
    let label = gw
        .client
        .put(gw.url("/admin/v1/prompts/greet/labels/production"))
        .bearer_auth("po-admin-secret")
        .json(&json!({"version": "1.0.0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(label.status(), 200);
}
