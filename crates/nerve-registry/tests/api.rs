//! The REST API against a registry on a real local log: each test names the promise it checks, and the
//! answers are compared with what Confluent's registry gives (status, error code, body shape).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use nerve_registry::{api, Registry, SCHEMAS_TOPIC};
use nerve_storage::{LocalConfig, LocalLogStore, LogStore, TopicConfig, TopicPartition};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A registry over a `_schemas` partition in its own temp dir; `reopen` starts a new one on the same log.
struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<dyn LogStore>,
    app: Router,
}

fn schemas_tp() -> TopicPartition {
    TopicPartition::new(SCHEMAS_TOPIC, 0)
}

fn compacted() -> Arc<TopicConfig> {
    let overrides = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
    Arc::new(TopicConfig::from_overrides(&overrides).expect("valid config"))
}

async fn open_log(dir: &std::path::Path) -> Arc<dyn LogStore> {
    let topics = HashMap::from([(SCHEMAS_TOPIC.to_string(), compacted())]);
    let log: Arc<dyn LogStore> =
        Arc::new(LocalLogStore::open(dir, LocalConfig::default(), &topics).expect("log opens"));
    if log.offsets(&schemas_tp()).is_err() {
        log.create_partition(&schemas_tp(), compacted())
            .await
            .expect("partition");
    }
    log
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = open_log(dir.path()).await;
        let app = app(log.clone()).await;
        Fixture { dir, log, app }
    }

    /// Closes the log and opens everything again from disk, as a restart does.
    async fn reopen(self) -> Fixture {
        self.log.close().await.expect("close");
        drop(self.app);
        drop(self.log);
        let log = open_log(self.dir.path()).await;
        let app = app(log.clone()).await;
        Fixture {
            dir: self.dir,
            log,
            app,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.raw(method, uri, body).await
    }

    async fn raw(&self, method: &str, uri: &str, body: Body) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(body)
            .expect("request");
        let response = self.app.clone().oneshot(request).await.expect("answered");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call("GET", uri, None).await
    }

    async fn register(&self, subject: &str, schema: &Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/subjects/{subject}/versions"),
            Some(json!({ "schema": schema.to_string() })),
        )
        .await
    }

    async fn register_id(&self, subject: &str, schema: &Value) -> i64 {
        let (status, body) = self.register(subject, schema).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["id"].as_i64().expect("an id")
    }
}

async fn app(log: Arc<dyn LogStore>) -> Router {
    let registry = Registry::open(log, schemas_tp())
        .await
        .expect("registry opens");
    api::router(registry, 64 * 1024)
}

fn user_v1() -> Value {
    json!({"type": "record", "name": "UserViewedProduct", "namespace": "shop", "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "product_id", "type": "string"}
    ]})
}

fn user_v2() -> Value {
    json!({"type": "record", "name": "UserViewedProduct", "namespace": "shop", "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "product_id", "type": "string"},
        {"name": "session_id", "type": ["null", "string"], "default": null}
    ]})
}

/// v1 plus a field without a default: a v3 consumer cannot read v1 data.
fn user_without_default() -> Value {
    json!({"type": "record", "name": "UserViewedProduct", "namespace": "shop", "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "product_id", "type": "string"},
        {"name": "price", "type": "double"}
    ]})
}

fn assert_error(answer: (StatusCode, Value), status: u16, code: i64) {
    let (got_status, body) = answer;
    assert_eq!(got_status.as_u16(), status, "status of {body}");
    assert_eq!(
        body["error_code"].as_i64(),
        Some(code),
        "error code of {body}"
    );
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message in {body}"
    );
}

#[tokio::test]
async fn registering_the_same_schema_again_returns_its_id_without_a_new_version() {
    let f = Fixture::new().await;
    let id = f.register_id("views-value", &user_v1()).await;
    assert_eq!(id, 1);
    assert_eq!(f.register_id("views-value", &user_v1()).await, id);
    // The same schema written with other whitespace is the same schema.
    let (status, body) = f
        .call(
            "POST",
            "/subjects/views-value/versions",
            Some(json!({"schema": serde_json::to_string_pretty(&user_v1()).unwrap()})),
        )
        .await;
    assert_eq!((status, body["id"].as_i64()), (StatusCode::OK, Some(id)));
    assert_eq!(f.get("/subjects/views-value/versions").await.1, json!([1]));
    // Another subject with the same schema shares the id.
    assert_eq!(f.register_id("other-value", &user_v1()).await, id);
    let (_, versions) = f.get(&format!("/schemas/ids/{id}/versions")).await;
    assert_eq!(
        versions,
        json!([{"subject": "other-value", "version": 1}, {"subject": "views-value", "version": 1}])
    );
    let (_, subjects) = f.get(&format!("/schemas/ids/{id}/subjects")).await;
    assert_eq!(subjects, json!(["other-value", "views-value"]));
}

#[tokio::test]
async fn a_compatible_change_gets_a_new_version_and_an_incompatible_one_is_refused() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    let v2 = f.register_id("views-value", &user_v2()).await;
    assert_eq!(v2, 2);
    let (status, body) = f.register("views-value", &user_without_default()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error_code"], 409);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("incompatible"), "{message}");
    assert!(
        message.contains("price"),
        "the message names the field: {message}"
    );
    assert_eq!(
        f.get("/subjects/views-value/versions").await.1,
        json!([1, 2])
    );

    let (status, latest) = f.get("/subjects/views-value/versions/latest").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["id"], 2);
    assert_eq!(latest["subject"], "views-value");
    assert!(
        latest.get("schemaType").is_none(),
        "AVRO is implied: {latest}"
    );
    let stored: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
    assert_eq!(stored["fields"][2]["name"], "session_id");
    let (_, raw) = f.get("/subjects/views-value/versions/1/schema").await;
    assert_eq!(raw["name"], "UserViewedProduct");
    let (_, by_id) = f.get("/schemas/ids/1").await;
    assert_eq!(
        by_id["schema"],
        f.get("/subjects/views-value/versions/1").await.1["schema"]
    );
}

#[tokio::test]
async fn compatibility_endpoint_answers_with_and_without_verbose() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    let check = |schema: Value, query: &'static str| {
        let body = json!({"schema": schema.to_string()});
        let f = &f;
        async move {
            f.call(
                "POST",
                &format!("/compatibility/subjects/views-value/versions/latest{query}"),
                Some(body),
            )
            .await
        }
    };
    assert_eq!(check(user_v2(), "").await.1, json!({"is_compatible": true}));
    let (status, body) = check(user_without_default(), "").await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"is_compatible": false}))
    );
    let (_, verbose) = check(user_without_default(), "?verbose=true").await;
    assert_eq!(verbose["is_compatible"], false);
    let messages = verbose["messages"].as_array().expect("messages");
    assert!(
        messages
            .iter()
            .any(|m| m.as_str().unwrap().contains("price")),
        "{verbose}"
    );
    // Against every version the level looks at, and against a subject that does not exist yet.
    let (_, all) = f
        .call(
            "POST",
            "/compatibility/subjects/views-value/versions",
            Some(json!({"schema": user_v2().to_string()})),
        )
        .await;
    assert_eq!(all, json!({"is_compatible": true}));
    let (_, fresh) = f
        .call(
            "POST",
            "/compatibility/subjects/nobody/versions/latest",
            Some(json!({"schema": user_v2().to_string()})),
        )
        .await;
    assert_eq!(fresh, json!({"is_compatible": true}));
    assert_error(
        f.call(
            "POST",
            "/compatibility/subjects/views-value/versions/7",
            Some(json!({"schema": user_v2().to_string()})),
        )
        .await,
        404,
        40402,
    );
}

#[tokio::test]
async fn lookup_finds_the_version_holding_a_schema() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    f.register_id("views-value", &user_v2()).await;
    let (status, found) = f
        .call(
            "POST",
            "/subjects/views-value",
            Some(json!({"schema": user_v1().to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (found["version"].as_i64(), found["id"].as_i64()),
        (Some(1), Some(1))
    );
    assert_error(
        f.call(
            "POST",
            "/subjects/views-value",
            Some(json!({"schema": user_without_default().to_string()})),
        )
        .await,
        404,
        40403,
    );
    assert_error(
        f.call(
            "POST",
            "/subjects/nobody",
            Some(json!({"schema": user_v1().to_string()})),
        )
        .await,
        404,
        40401,
    );
}

#[tokio::test]
async fn config_levels_per_registry_and_subject() {
    let f = Fixture::new().await;
    assert_eq!(
        f.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let (status, body) = f
        .call(
            "PUT",
            "/config",
            Some(json!({"compatibility": "full_transitive"})),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"compatibility": "FULL_TRANSITIVE"}))
    );
    assert_eq!(
        f.get("/config").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    assert_error(
        f.call("PUT", "/config", Some(json!({"compatibility": "SIDEWAYS"})))
            .await,
        422,
        42203,
    );
    f.register_id("views-value", &user_v1()).await;
    assert_error(f.get("/config/views-value").await, 404, 40408);
    assert_eq!(
        f.get("/config/views-value?defaultToGlobal=true").await.1,
        json!({"compatibilityLevel": "FULL_TRANSITIVE"})
    );
    // A subject at NONE accepts what BACKWARD refuses; deleting its level brings the global one back.
    f.call(
        "PUT",
        "/config/views-value",
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    assert_eq!(
        f.get("/config/views-value").await.1,
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        f.register_id("views-value", &user_without_default()).await,
        2
    );
    let (status, previous) = f.call("DELETE", "/config/views-value", None).await;
    assert_eq!(
        (status, previous),
        (StatusCode::OK, json!({"compatibilityLevel": "NONE"}))
    );
    assert_error(f.get("/config/views-value").await, 404, 40408);
    let (_, reset) = f.call("DELETE", "/config", None).await;
    assert_eq!(reset, json!({"compatibilityLevel": "FULL_TRANSITIVE"}));
    assert_eq!(
        f.get("/config").await.1,
        json!({"compatibilityLevel": "BACKWARD"})
    );
}

#[tokio::test]
async fn modes_refuse_changes_in_readonly_and_take_ids_in_import() {
    let f = Fixture::new().await;
    assert_eq!(f.get("/mode").await.1, json!({"mode": "READWRITE"}));
    assert_error(
        f.call("PUT", "/mode", Some(json!({"mode": "SOMETIMES"})))
            .await,
        422,
        42204,
    );
    f.call(
        "PUT",
        "/mode/views-value",
        Some(json!({"mode": "READONLY"})),
    )
    .await;
    assert_eq!(
        f.get("/mode/views-value").await.1,
        json!({"mode": "READONLY"})
    );
    assert_error(f.register("views-value", &user_v1()).await, 422, 42205);
    assert_eq!(f.register_id("other-value", &user_v1()).await, 1);
    let (_, previous) = f.call("DELETE", "/mode/views-value", None).await;
    assert_eq!(previous, json!({"mode": "READONLY"}));
    assert_error(f.get("/mode/views-value").await, 404, 40409);
    assert_eq!(
        f.get("/mode/views-value?defaultToGlobal=true").await.1,
        json!({"mode": "READWRITE"})
    );

    // IMPORT is refused where schemas exist, unless forced; then ids and versions are the caller's.
    assert_error(
        f.call("PUT", "/mode", Some(json!({"mode": "IMPORT"})))
            .await,
        422,
        42205,
    );
    let (status, _) = f
        .call("PUT", "/mode?force=true", Some(json!({"mode": "IMPORT"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = f
        .call(
            "POST",
            "/subjects/imported-value/versions",
            Some(json!({"schema": user_v2().to_string(), "id": 100, "version": 7})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"id": 100})));
    assert_eq!(
        f.get("/subjects/imported-value/versions").await.1,
        json!([7])
    );
    // An id taken by another schema cannot be overwritten.
    assert_error(
        f.call(
            "POST",
            "/subjects/imported-value/versions",
            Some(json!({"schema": user_without_default().to_string(), "id": 100, "version": 8})),
        )
        .await,
        422,
        42205,
    );
    f.call("PUT", "/mode", Some(json!({"mode": "READWRITE"})))
        .await;
    // Ids given later continue after the imported ones.
    assert_eq!(
        f.register_id("later-value", &user_without_default()).await,
        101
    );
}

#[tokio::test]
async fn soft_and_hard_deletes_follow_confluents_rules() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    f.register_id("views-value", &user_v2()).await;
    assert_error(
        f.call(
            "DELETE",
            "/subjects/views-value/versions/1?permanent=true",
            None,
        )
        .await,
        404,
        40407,
    );
    let (status, deleted) = f
        .call("DELETE", "/subjects/views-value/versions/1", None)
        .await;
    assert_eq!((status, deleted), (StatusCode::OK, json!(1)));
    assert_eq!(f.get("/subjects/views-value/versions").await.1, json!([2]));
    assert_eq!(
        f.get("/subjects/views-value/versions?deleted=true").await.1,
        json!([1, 2])
    );
    assert_error(f.get("/subjects/views-value/versions/1").await, 404, 40402);
    assert_eq!(
        f.get("/subjects/views-value/versions/1?deleted=true")
            .await
            .1["id"],
        1
    );
    assert_error(
        f.call("DELETE", "/subjects/views-value/versions/1", None)
            .await,
        404,
        40406,
    );
    // A soft-deleted schema is still readable by id: consumers may hold data written with it.
    assert_eq!(f.get("/schemas/ids/1").await.0, StatusCode::OK);
    let (_, hard) = f
        .call(
            "DELETE",
            "/subjects/views-value/versions/1?permanent=true",
            None,
        )
        .await;
    assert_eq!(hard, json!(1));
    assert_eq!(
        f.get("/subjects/views-value/versions?deleted=true").await.1,
        json!([2])
    );
    assert_error(f.get("/schemas/ids/1").await, 404, 40403);

    // The whole subject: soft, then hard.
    assert_error(
        f.call("DELETE", "/subjects/views-value?permanent=true", None)
            .await,
        404,
        40405,
    );
    assert_eq!(
        f.call("DELETE", "/subjects/views-value", None).await.1,
        json!([2])
    );
    assert_eq!(f.get("/subjects").await.1, json!([]));
    assert_eq!(
        f.get("/subjects?deleted=true").await.1,
        json!(["views-value"])
    );
    assert_error(f.get("/subjects/views-value/versions").await, 404, 40401);
    assert_error(
        f.call("DELETE", "/subjects/views-value", None).await,
        404,
        40404,
    );
    assert_eq!(
        f.call("DELETE", "/subjects/views-value?permanent=true", None)
            .await
            .1,
        json!([2])
    );
    assert_eq!(f.get("/subjects?deleted=true").await.1, json!([]));
    // Ids are never reused, even after every schema that had them is gone.
    assert_eq!(
        f.register_id("views-value", &user_without_default()).await,
        3
    );
    // The subject starts again from version 1 after a hard delete.
    assert_eq!(f.get("/subjects/views-value/versions").await.1, json!([1]));
}

#[tokio::test]
async fn everything_survives_a_restart_and_ids_are_not_reused() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    f.register_id("views-value", &user_v2()).await;
    f.register_id("gone-value", &user_without_default()).await;
    f.call("DELETE", "/subjects/gone-value", None).await;
    f.call("DELETE", "/subjects/gone-value?permanent=true", None)
        .await;
    f.call(
        "PUT",
        "/config/views-value",
        Some(json!({"compatibility": "FULL"})),
    )
    .await;
    f.call(
        "PUT",
        "/mode/frozen-value",
        Some(json!({"mode": "READONLY"})),
    )
    .await;
    f.call("DELETE", "/subjects/views-value/versions/1", None)
        .await;

    let f = f.reopen().await;
    assert_eq!(f.get("/subjects").await.1, json!(["views-value"]));
    assert_eq!(f.get("/subjects/views-value/versions").await.1, json!([2]));
    assert_eq!(
        f.get("/subjects/views-value/versions?deleted=true").await.1,
        json!([1, 2])
    );
    assert_eq!(
        f.get("/config/views-value").await.1,
        json!({"compatibilityLevel": "FULL"})
    );
    assert_eq!(
        f.get("/mode/frozen-value").await.1,
        json!({"mode": "READONLY"})
    );
    assert_error(f.get("/schemas/ids/3").await, 404, 40403);
    let next = f
        .register_id(
            "new-value",
            &json!({"type": "record", "name": "Fresh", "fields": []}),
        )
        .await;
    assert_eq!(next, 4, "id 3 was given once and is never given again");
}

#[tokio::test]
async fn references_resolve_and_protect_what_they_refer_to() {
    let f = Fixture::new().await;
    let address = json!({"type": "record", "name": "Address", "namespace": "shop", "fields": [
        {"name": "city", "type": "string"}
    ]});
    let address_id = f.register_id("address", &address).await;
    let customer = json!({"type": "record", "name": "Customer", "namespace": "shop", "fields": [
        {"name": "name", "type": "string"},
        {"name": "address", "type": "shop.Address"}
    ]});
    let body = json!({
        "schema": customer.to_string(),
        "references": [{"name": "shop.Address", "subject": "address", "version": 1}]
    });
    let (status, registered) = f
        .call(
            "POST",
            "/subjects/customer-value/versions",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    let customer_id = registered["id"].as_i64().unwrap();
    assert_ne!(customer_id, address_id);
    let (_, by_id) = f.get(&format!("/schemas/ids/{customer_id}")).await;
    assert_eq!(
        by_id["references"],
        json!([{"name": "shop.Address", "subject": "address", "version": 1}])
    );
    assert_eq!(
        f.get("/subjects/address/versions/1/referencedby").await.1,
        json!([customer_id])
    );
    assert_error(
        f.call("DELETE", "/subjects/address/versions/1", None).await,
        422,
        42206,
    );
    // Without the reference the named type is unknown.
    assert_error(
        f.call(
            "POST",
            "/subjects/orphan-value/versions",
            Some(json!({"schema": customer.to_string()})),
        )
        .await,
        422,
        42201,
    );
    // A reference to a version that does not exist.
    assert_error(
        f.call(
            "POST",
            "/subjects/orphan-value/versions",
            Some(json!({
                "schema": customer.to_string(),
                "references": [{"name": "shop.Address", "subject": "address", "version": 9}]
            })),
        )
        .await,
        422,
        42201,
    );
}

#[tokio::test]
async fn bad_requests_get_confluents_status_and_error_code() {
    let f = Fixture::new().await;
    f.register_id("views-value", &user_v1()).await;
    assert_error(f.get("/subjects/nobody/versions").await, 404, 40401);
    assert_error(f.get("/subjects/views-value/versions/9").await, 404, 40402);
    assert_error(f.get("/schemas/ids/42").await, 404, 40403);
    assert_error(
        f.get("/subjects/views-value/versions/abc").await,
        422,
        42202,
    );
    assert_error(f.get("/subjects/views-value/versions/0").await, 422, 42202);
    assert_error(
        f.call(
            "POST",
            "/subjects/views-value/versions",
            Some(json!({"schema": "{\"type\": \"recrod\"}"})),
        )
        .await,
        422,
        42201,
    );
    assert_error(
        f.call("POST", "/subjects/views-value/versions", Some(json!({})))
            .await,
        422,
        42201,
    );
    assert_error(
        f.call(
            "POST",
            "/subjects/views-value/versions",
            Some(json!({"schema": "\"string\"", "schemaType": "XML"})),
        )
        .await,
        422,
        42201,
    );
    assert_error(
        f.raw(
            "POST",
            "/subjects/views-value/versions",
            Body::from("{\"schema\": "),
        )
        .await,
        400,
        400,
    );
    let huge = json!({"schema": "x".repeat(100 * 1024)}).to_string();
    assert_error(
        f.raw("POST", "/subjects/views-value/versions", Body::from(huge))
            .await,
        413,
        413,
    );
    assert_error(f.get("/no/such/path").await, 404, 404);
    assert_error(f.call("PATCH", "/subjects", None).await, 405, 405);
    // After all that, the registry serves as before.
    assert_eq!(f.get("/subjects").await.1, json!(["views-value"]));
    assert_eq!(
        f.get("/schemas/types").await.1,
        json!(["AVRO", "JSON", "PROTOBUF"])
    );
}
