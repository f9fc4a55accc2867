//! `/v1/`: the broker's observe view as JSON. Errors are JSON too: `{"error_code": N, "message": "..."}`.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use crate::HttpState;

pub(crate) fn routes() -> Router<HttpState> {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/topics", get(topics))
        .route("/v1/topics/{topic}", get(topic))
        .route("/v1/topics/{topic}/partitions", get(partitions))
        .route("/v1/topics/{topic}/partitions/{partition}", get(partition))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{group}", get(group))
}

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"error_code": status.as_u16(), "message": message.into()});
    (status, Json(body)).into_response()
}

/// The 503 answered while the broker is being built.
fn starting() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the broker is starting: its logs are being recovered",
    )
}

fn answer<T: Serialize>(found: Option<T>, not_found: impl FnOnce() -> String) -> Response {
    match found {
        Some(value) => Json(value).into_response(),
        None => error(StatusCode::NOT_FOUND, not_found()),
    }
}

async fn cluster(State(state): State<HttpState>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    Json(broker.cluster_info()).into_response()
}

async fn topics(State(state): State<HttpState>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    Json(broker.topic_infos()).into_response()
}

async fn topic(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    answer(broker.topic_info(&name), || {
        format!("topic {name} does not exist")
    })
}

async fn partitions(State(state): State<HttpState>, Path(name): Path<String>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    answer(broker.topic_info(&name).map(|t| t.partitions), || {
        format!("topic {name} does not exist")
    })
}

async fn partition(
    State(state): State<HttpState>,
    Path((name, partition)): Path<(String, String)>,
) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    let Some(topic) = broker.topic_info(&name) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("topic {name} does not exist"),
        );
    };
    let found = partition
        .parse::<i32>()
        .ok()
        .and_then(|p| topic.partitions.into_iter().find(|i| i.partition == p));
    answer(found, || {
        format!("topic {name} has no partition {partition}")
    })
}

async fn groups(State(state): State<HttpState>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    Json(broker.group_infos()).into_response()
}

async fn group(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return starting();
    };
    answer(broker.group_info(&id), || {
        format!("consumer group {id} does not exist")
    })
}

pub(crate) async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {}", uri.path()),
    )
}

pub(crate) async fn method_not_allowed(uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed on {}", uri.path()),
    )
}
