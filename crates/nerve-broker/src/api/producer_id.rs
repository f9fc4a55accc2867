//! InitProducerId: producer ids for idempotent producers.
//!
//! Every call hands out a fresh id with epoch 0: an idempotent producer that re-initializes (KIP-360) starts
//! a new sequence space, which is what Kafka does without a transactional id. Transactional ids need the
//! transaction coordinator, which Nerve does not have yet, so they are refused after the timeout check
//! Kafka makes first.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: InitProducerIdRequest = decode(&request)?;
    let response = InitProducerIdResponse::default()
        .with_throttle_time_ms(0)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let transactional_id = body.transactional_id.as_ref().map(|id| id.0.as_str());
    let response = if transactional_id == Some("") {
        // Kafka: an empty transactional id is neither idempotent-only nor a valid transactional id.
        response.with_error_code(ResponseError::InvalidRequest.code())
    } else if transactional_id.is_some() {
        let code = if body.transaction_timeout_ms <= 0
            || body.transaction_timeout_ms > broker.config.transaction_max_timeout_ms
        {
            ResponseError::InvalidTransactionTimeout
        } else {
            tracing::info!("refusing a transactional producer: transactions are not supported yet");
            ResponseError::TransactionalIdAuthorizationFailed
        };
        response.with_error_code(code.code())
    } else if !may_write_idempotently(broker, session) {
        response.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
    } else {
        match broker.meta.allocate_producer_ids(1).await {
            Ok(id) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(e) => {
                tracing::error!(error = %e, "cannot allocate a producer id");
                response.with_error_code(storage_error_code(&e).code())
            }
        }
    };
    count_error(broker, &request, response.error_code);
    respond(&request, &response)
}

/// Kafka (KIP-679): an idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
fn may_write_idempotently(broker: &Broker, session: &crate::session::Session) -> bool {
    use nerve_auth::{Operation, ResourceType};
    broker.is_allowed(
        session,
        Operation::IdempotentWrite,
        ResourceType::Cluster,
        nerve_auth::acl::CLUSTER_NAME,
    ) || broker
        .meta
        .topics()
        .iter()
        .any(|t| broker.is_allowed(session, Operation::Write, ResourceType::Topic, &t.name))
        || broker.authorize_cluster(session, Operation::IdempotentWrite)
}
