//! The Confluent Schema Registry REST API over a [`Registry`], as an axum router.
//!
//! Answers are JSON with Confluent's content type; errors are Confluent's
//! `{"error_code": N, "message": "..."}` with its HTTP statuses, including for unknown paths, wrong methods,
//! bodies that are not JSON and bodies over the size limit.
//!
//! With an [`Access`] (the broker's authorizer), every request is decided by the broker's ACLs on Nerve's
//! SUBJECT resource type, for the [`Principal`] an authentication layer put in the request's extensions
//! (`User:ANONYMOUS` without one): reading a subject (its versions, schemas, config, mode, lookups and
//! compatibility checks) needs READ, registering and setting its config or mode WRITE, deleting it or a
//! version DELETE; `GET /subjects` lists the subjects the principal may DESCRIBE (READ includes it); a
//! schema by id needs READ on some subject with that id; the global config and mode need DESCRIBE_CONFIGS
//! (read) or ALTER_CONFIGS (change) on the CLUSTER.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use nerve_auth::{Operation, Principal, ResourceType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::compatibility::CompatibilityLevel;
use crate::error::RegistryError;
use crate::registry::{Registry, SchemaRequest, VersionSpec};
use crate::store::Mode;

/// The content type Confluent's registry answers with (clients accept plain JSON too).
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The largest request body accepted by default: schemas are small, but a Protobuf file with many
/// messages or a large JSON Schema can reach hundreds of KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;

/// Decides whether a principal may do an operation to a resource: the broker's ACLs.
pub trait Access: Send + Sync {
    /// `host` is the client's IP address as the broker prints it.
    fn allows(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool;
}

#[derive(Clone)]
struct Api {
    registry: Arc<Registry>,
    max_body: usize,
    /// `None`: everything is allowed.
    access: Option<Arc<dyn Access>>,
}

/// Who sent a request: the principal the authentication layer found (`User:ANONYMOUS` without one) and
/// the client's address when the layer knew it.
struct Caller {
    principal: Principal,
    host: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            principal: parts
                .extensions
                .get::<Principal>()
                .cloned()
                .unwrap_or_else(Principal::anonymous),
            host: parts
                .extensions
                .get::<SocketAddr>()
                .map_or_else(|| "unknown".to_string(), |a| a.ip().to_string()),
        })
    }
}

impl Api {
    fn allows(
        &self,
        caller: &Caller,
        operation: Operation,
        kind: ResourceType,
        name: &str,
    ) -> bool {
        self.access.as_ref().is_none_or(|access| {
            access.allows(&caller.principal, &caller.host, operation, kind, name)
        })
    }

    /// `Ok` if `caller` may do `operation` to `name` of `kind`; otherwise an audit line and Confluent's
    /// 40301.
    fn require(
        &self,
        caller: &Caller,
        operation: Operation,
        kind: ResourceType,
        name: &str,
    ) -> Result<(), RegistryError> {
        if self.allows(caller, operation, kind, name) {
            return Ok(());
        }
        tracing::info!(
            target: "nerve::audit",
            principal = %caller.principal,
            peer = %caller.host,
            operation = %operation,
            resource_type = %kind,
            resource = name,
            "schema registry authorization denied"
        );
        let kind = match kind {
            ResourceType::Cluster => "cluster",
            _ => "subject",
        };
        Err(RegistryError::Denied {
            operation: operation.to_string(),
            resource: format!("{kind}: {name}"),
        })
    }

    fn subject(
        &self,
        caller: &Caller,
        operation: Operation,
        subject: &str,
    ) -> Result<(), RegistryError> {
        self.require(caller, operation, ResourceType::Subject, subject)
    }

    fn cluster(&self, caller: &Caller, operation: Operation) -> Result<(), RegistryError> {
        self.require(
            caller,
            operation,
            ResourceType::Cluster,
            nerve_auth::acl::CLUSTER_NAME,
        )
    }

    /// A schema by id: READ on some subject that has it (deleted versions included).
    fn schema_id(&self, caller: &Caller, id: i32) -> Result<(), RegistryError> {
        if self.access.is_none() {
            return Ok(());
        }
        let subjects = self.registry.id_versions(id, true)?;
        if subjects.iter().any(|(subject, _)| {
            self.allows(caller, Operation::Read, ResourceType::Subject, subject)
        }) {
            return Ok(());
        }
        let first = subjects.first().map_or("", |(s, _)| s.as_str()).to_string();
        self.subject(caller, Operation::Read, &first)
    }
}

type Answer = Result<Response, RegistryError>;
type Params = Query<HashMap<String, String>>;

/// The registry's routes, accepting bodies up to `max_body` bytes; everything is allowed.
pub fn router(registry: Arc<Registry>, max_body: usize) -> Router {
    router_with_access(registry, max_body, None)
}

/// [`router`] with every request decided by `access` when given (see the module's doc).
pub fn router_with_access(
    registry: Arc<Registry>,
    max_body: usize,
    access: Option<Arc<dyn Access>>,
) -> Router {
    let api = Api {
        registry,
        max_body,
        access,
    };
    Router::new()
        .route("/", get(root))
        .route("/schemas/types", get(schema_types))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(schema_text_by_id))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route(
            "/subjects/{subject}/versions/{version}",
            get(version).delete(delete_version),
        )
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route(
            "/subjects/{subject}/versions/{version}/referencedby",
            get(referenced_by),
        )
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(compatibility_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility_version),
        )
        .route(
            "/config",
            get(get_config).put(put_config).delete(delete_config),
        )
        .route(
            "/config/{subject}",
            get(get_subject_config)
                .put(put_subject_config)
                .delete(delete_subject_config),
        )
        .route("/mode", get(get_mode).put(put_mode))
        .route(
            "/mode/{subject}",
            get(get_subject_mode)
                .put(put_subject_mode)
                .delete(delete_subject_mode),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(api)
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, "schema registry request failed");
        }
        let body = json!({"error_code": self.code(), "message": self.to_string()});
        (status, answer_json(&body)).into_response()
    }
}

fn answer_json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(e) => RegistryError::Store(e.to_string()).into_response(),
    }
}

fn ok(value: &impl Serialize) -> Answer {
    Ok(answer_json(value))
}

/// A raw schema text (the `/schema` endpoints), as Confluent sends it: the stored text as JSON-typed
/// content for Avro and JSON Schema; Protobuf's is `.proto` text.
fn text(schema: String) -> Answer {
    let mut response = Response::new(Body::from(schema));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}

fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params
        .get(name)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Reads a JSON body of at most `max` bytes.
async fn body_json<T: DeserializeOwned>(body: Body, max: usize) -> Result<T, RegistryError> {
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| RegistryError::TooLarge(max))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RegistryError::BadRequest(format!("Invalid JSON body: {e}")))
}

fn parse_id(text: &str) -> Result<i32, RegistryError> {
    text.parse::<i32>()
        .map_err(|_| RegistryError::BadRequest(format!("invalid schema id {text:?}")))
}

async fn root() -> Answer {
    ok(&json!({}))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        answer_json(&json!({"error_code": 404, "message": "HTTP 404 Not Found"})),
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        answer_json(&json!({"error_code": 405, "message": "HTTP 405 Method Not Allowed"})),
    )
        .into_response()
}

async fn schema_types(State(api): State<Api>) -> Answer {
    ok(&api.registry.schema_types())
}

async fn schema_by_id(
    caller: Caller,
    State(api): State<Api>,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    api.schema_id(&caller, parse_id(&id)?)?;
    let id = parse_id(&id)?;
    ok(&api
        .registry
        .schema_by_id(id, params.get("format").map(String::as_str))?)
}

async fn schema_text_by_id(
    caller: Caller,
    State(api): State<Api>,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    api.schema_id(&caller, parse_id(&id)?)?;
    let id = parse_id(&id)?;
    text(
        api.registry
            .schema_by_id(id, params.get("format").map(String::as_str))?
            .schema,
    )
}

#[derive(Serialize)]
struct SubjectAndVersion {
    subject: String,
    version: i32,
}

async fn id_versions(
    caller: Caller,
    State(api): State<Api>,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    api.schema_id(&caller, parse_id(&id)?)?;
    let id = parse_id(&id)?;
    let versions: Vec<SubjectAndVersion> = api
        .registry
        .id_versions(id, flag(&params, "deleted"))?
        .into_iter()
        .map(|(subject, version)| SubjectAndVersion { subject, version })
        .collect();
    ok(&versions)
}

async fn id_subjects(
    caller: Caller,
    State(api): State<Api>,
    Path(id): Path<String>,
    params: Params,
) -> Answer {
    api.schema_id(&caller, parse_id(&id)?)?;
    let id = parse_id(&id)?;
    let mut subjects: Vec<String> = api
        .registry
        .id_versions(id, flag(&params, "deleted"))?
        .into_iter()
        .map(|(subject, _)| subject)
        .collect();
    subjects.dedup();
    ok(&subjects)
}

async fn subjects(caller: Caller, State(api): State<Api>, params: Params) -> Answer {
    let prefix = params.get("subjectPrefix").map_or("", String::as_str);
    let mut subjects = api.registry.subjects(prefix, flag(&params, "deleted"));
    // A hidden subject is the expected outcome of a listing, not a refused request: no audit line.
    subjects.retain(|s| api.allows(&caller, Operation::Describe, ResourceType::Subject, s));
    ok(&subjects)
}

async fn lookup(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    let request: SchemaRequest = body_json(body, api.max_body).await?;
    ok(&api.registry.lookup(
        &subject,
        &request,
        flag(&params, "normalize"),
        flag(&params, "deleted"),
    )?)
}

async fn delete_subject(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Delete, &subject)?;
    ok(&api
        .registry
        .delete_subject(&subject, flag(&params, "permanent"))
        .await?)
}

async fn versions(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    ok(&api.registry.versions(&subject, flag(&params, "deleted"))?)
}

async fn register(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Write, &subject)?;
    let request: SchemaRequest = body_json(body, api.max_body).await?;
    let id = api
        .registry
        .register(&subject, &request, flag(&params, "normalize"))
        .await?;
    ok(&json!({ "id": id }))
}

async fn version(
    caller: Caller,
    State(api): State<Api>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    let spec = VersionSpec::parse(&version)?;
    ok(&api
        .registry
        .version(&subject, spec, flag(&params, "deleted"))?)
}

async fn version_schema(
    caller: Caller,
    State(api): State<Api>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    let spec = VersionSpec::parse(&version)?;
    text(
        api.registry
            .version(&subject, spec, flag(&params, "deleted"))?
            .schema,
    )
}

async fn referenced_by(
    caller: Caller,
    State(api): State<Api>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    let spec = VersionSpec::parse(&version)?;
    ok(&api.registry.referenced_by(&subject, spec)?)
}

async fn delete_version(
    caller: Caller,
    State(api): State<Api>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Delete, &subject)?;
    let spec = VersionSpec::parse(&version)?;
    ok(&api
        .registry
        .delete_version(&subject, spec, flag(&params, "permanent"))
        .await?)
}

async fn compatibility_all(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    compatibility(api, subject, None, params, body).await
}

async fn compatibility_version(
    caller: Caller,
    State(api): State<Api>,
    Path((subject, version)): Path<(String, String)>,
    params: Params,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    let spec = VersionSpec::parse(&version)?;
    compatibility(api, subject, Some(spec), params, body).await
}

async fn compatibility(
    api: Api,
    subject: String,
    spec: Option<VersionSpec>,
    params: Params,
    body: Body,
) -> Answer {
    let request: SchemaRequest = body_json(body, api.max_body).await?;
    let problems =
        api.registry
            .check_compatibility(&subject, spec, &request, flag(&params, "normalize"))?;
    let compatible = problems.is_empty();
    if flag(&params, "verbose") {
        ok(&json!({"is_compatible": compatible, "messages": problems}))
    } else {
        ok(&json!({ "is_compatible": compatible }))
    }
}

#[derive(Deserialize)]
struct ConfigRequest {
    compatibility: Option<String>,
    #[serde(rename = "compatibilityLevel")]
    compatibility_level: Option<String>,
}

fn level_of(request: &ConfigRequest) -> Result<CompatibilityLevel, RegistryError> {
    request
        .compatibility
        .as_deref()
        .or(request.compatibility_level.as_deref())
        .and_then(CompatibilityLevel::from_name)
        .ok_or(RegistryError::InvalidCompatibilityLevel)
}

fn level_answer(level: CompatibilityLevel) -> Answer {
    ok(&json!({ "compatibilityLevel": level.name() }))
}

async fn get_config(caller: Caller, State(api): State<Api>) -> Answer {
    api.cluster(&caller, Operation::DescribeConfigs)?;
    level_answer(api.registry.config())
}

async fn put_config(caller: Caller, State(api): State<Api>, body: Body) -> Answer {
    api.cluster(&caller, Operation::AlterConfigs)?;
    set_level(&api, None, body).await
}

/// `PUT /config` and `PUT /config/{subject}`.
async fn set_level(api: &Api, subject: Option<&str>, body: Body) -> Answer {
    let request: ConfigRequest = body_json(body, api.max_body).await?;
    let level = level_of(&request)?;
    api.registry.set_config(subject, level).await?;
    ok(&json!({ "compatibility": level.name() }))
}

async fn delete_config(caller: Caller, State(api): State<Api>) -> Answer {
    api.cluster(&caller, Operation::AlterConfigs)?;
    level_answer(api.registry.delete_config(None).await?)
}

async fn get_subject_config(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    level_answer(
        api.registry
            .subject_config(&subject, flag(&params, "defaultToGlobal"))?,
    )
}

async fn put_subject_config(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Write, &subject)?;
    set_level(&api, Some(&subject), body).await
}

async fn delete_subject_config(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
) -> Answer {
    api.subject(&caller, Operation::Write, &subject)?;
    level_answer(api.registry.delete_config(Some(&subject)).await?)
}

#[derive(Deserialize)]
struct ModeRequest {
    mode: Option<String>,
}

fn mode_of(request: &ModeRequest) -> Result<Mode, RegistryError> {
    request
        .mode
        .as_deref()
        .and_then(Mode::from_name)
        .ok_or(RegistryError::InvalidMode)
}

fn mode_answer(mode: Mode) -> Answer {
    ok(&json!({ "mode": mode.name() }))
}

async fn get_mode(caller: Caller, State(api): State<Api>) -> Answer {
    api.cluster(&caller, Operation::DescribeConfigs)?;
    mode_answer(api.registry.mode())
}

async fn put_mode(caller: Caller, State(api): State<Api>, params: Params, body: Body) -> Answer {
    api.cluster(&caller, Operation::AlterConfigs)?;
    set_mode(&api, None, &params, body).await
}

/// `PUT /mode` and `PUT /mode/{subject}` (`?force=true` allows IMPORT where schemas exist).
async fn set_mode(api: &Api, subject: Option<&str>, params: &Params, body: Body) -> Answer {
    let request: ModeRequest = body_json(body, api.max_body).await?;
    let mode = mode_of(&request)?;
    api.registry
        .set_mode(subject, mode, flag(params, "force"))
        .await?;
    mode_answer(mode)
}

async fn get_subject_mode(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
) -> Answer {
    api.subject(&caller, Operation::Read, &subject)?;
    mode_answer(
        api.registry
            .subject_mode(&subject, flag(&params, "defaultToGlobal"))?,
    )
}

async fn put_subject_mode(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
    params: Params,
    body: Body,
) -> Answer {
    api.subject(&caller, Operation::Write, &subject)?;
    set_mode(&api, Some(&subject), &params, body).await
}

async fn delete_subject_mode(
    caller: Caller,
    State(api): State<Api>,
    Path(subject): Path<String>,
) -> Answer {
    api.subject(&caller, Operation::Write, &subject)?;
    mode_answer(api.registry.delete_mode(&subject).await?)
}
