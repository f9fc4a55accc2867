//! ApiVersions: which APIs and versions this broker answers.
//!
//! Its response always goes out with response header v0, and a request at a version we do not know still
//! gets a v0 response with `UNSUPPORTED_VERSION` and our ranges (KIP-511), so any client can negotiate down.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use nerve_wire::frame::{encode_response, RequestFrame};

use super::{decode, respond, SUPPORTED_APIS};
use crate::broker::Broker;
use crate::error::RequestError;

pub(crate) fn handle(_broker: &Broker, request: RequestFrame) -> Result<Bytes, RequestError> {
    // The body only names the client software (v3+); nothing in it changes the answer, but a body that
    // does not decode is still a malformed request.
    let _: ApiVersionsRequest = decode(&request)?;
    respond(&request, &supported(0))
}

/// The v0-format answer to an ApiVersions request at a version we do not implement.
pub(crate) fn unsupported_version(request: &RequestFrame) -> Result<Bytes, RequestError> {
    let response = supported(ResponseError::UnsupportedVersion.code());
    Ok(encode_response(
        ApiKey::ApiVersions,
        0,
        request.correlation_id(),
        &response,
    )?)
}

fn supported(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
        .with_throttle_time_ms(0)
}
