//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554): the SCRAM users, managed over the
//! Kafka protocol. An upsertion carries the salt and the salted password, never the password; describing
//! shows mechanisms and iterations only. Describing needs DESCRIBE on the cluster, altering ALTER.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::scram::{ScramCredential, ScramMechanism};
use nerve_auth::Operation;
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond};
use crate::broker::Broker;
use crate::error::RequestError;
use crate::sasl::to_stored;
use crate::session::Session;

type Failure = (ResponseError, String);

pub(crate) fn describe(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DescribeUserScramCredentialsRequest = decode(&request)?;
    if !broker.authorize_cluster(session, Operation::Describe) {
        let error = ResponseError::ClusterAuthorizationFailed;
        count_error(broker, &request, error.code());
        let response = DescribeUserScramCredentialsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(error.to_string())));
        return respond(&request, &response);
    }
    let users = broker.meta.scram_users();
    let info = |mechanisms: &BTreeMap<String, nerve_storage::StoredScramCredential>| {
        mechanisms
            .iter()
            .filter_map(|(name, c)| {
                Some(
                    CredentialInfo::default()
                        .with_mechanism(ScramMechanism::from_name(name)?.kafka_code())
                        .with_iterations(i32::try_from(c.iterations).unwrap_or(i32::MAX)),
                )
            })
            .collect::<Vec<_>>()
    };
    let results: Vec<_> = match body.users {
        // Null or empty: every user.
        None => users
            .iter()
            .map(|(user, mechanisms)| result(user, Ok(info(mechanisms))))
            .collect(),
        Some(requested) if requested.is_empty() => users
            .iter()
            .map(|(user, mechanisms)| result(user, Ok(info(mechanisms))))
            .collect(),
        Some(requested) => {
            let mut seen: HashMap<&str, usize> = HashMap::new();
            for user in &requested {
                *seen.entry(user.name.as_str()).or_default() += 1;
            }
            let mut reported = std::collections::HashSet::new();
            requested
                .iter()
                .filter(|u| reported.insert(u.name.as_str()))
                .map(|u| {
                    let name = u.name.as_str();
                    let outcome = if seen[name] > 1 {
                        Err((
                            ResponseError::DuplicateResource,
                            format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}"),
                        ))
                    } else {
                        match users.get(name) {
                            Some(mechanisms) => Ok(info(mechanisms)),
                            None => Err((
                                ResponseError::ResourceNotFound,
                                format!("Attempt to describe a user credential that does not exist: {name}"),
                            )),
                        }
                    };
                    result(name, outcome)
                })
                .collect()
        }
    };
    for r in &results {
        count_error(broker, &request, r.error_code);
    }
    respond(
        &request,
        &DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}

fn result(
    user: &str,
    outcome: Result<Vec<CredentialInfo>, Failure>,
) -> DescribeUserScramCredentialsResult {
    let r = DescribeUserScramCredentialsResult::default()
        .with_user(StrBytes::from_string(user.to_string()));
    match outcome {
        Ok(infos) => r.with_credential_infos(infos),
        Err((error, message)) => r
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}

/// One change a request asks for.
enum Change {
    Delete,
    Upsert(ScramCredential),
}

pub(crate) async fn alter(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: AlterUserScramCredentialsRequest = decode(&request)?;
    let authorized = broker.authorize_cluster(session, Operation::Alter);
    // Users in request order, each with its changes or the first reason it fails; a user's changes are
    // applied only if all of them are acceptable.
    let mut order: Vec<String> = Vec::new();
    let mut per_user: HashMap<String, Result<Vec<(ScramMechanism, Change)>, Failure>> =
        HashMap::new();
    let mut add = |user: &str, mechanism: i8, change: Result<Change, Failure>| {
        if !per_user.contains_key(user) {
            order.push(user.to_string());
        }
        let entry = per_user
            .entry(user.to_string())
            .or_insert_with(|| Ok(Vec::new()));
        let Ok(changes) = entry else { return };
        let outcome = (|| {
            if !authorized {
                let error = ResponseError::ClusterAuthorizationFailed;
                return Err((error, error.to_string()));
            }
            if user.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "Username must not be empty".to_string(),
                ));
            }
            let mechanism = ScramMechanism::from_kafka_code(mechanism).ok_or_else(|| {
                (
                    ResponseError::UnsupportedSaslMechanism,
                    format!("Unknown SCRAM mechanism {mechanism}"),
                )
            })?;
            if changes.iter().any(|(m, _)| *m == mechanism) {
                return Err((
                    ResponseError::DuplicateResource,
                    format!("A user credential cannot be altered twice in the same request: {user} {mechanism}"),
                ));
            }
            Ok((mechanism, change?))
        })();
        match outcome {
            Ok(change) => changes.push(change),
            Err(failure) => *entry = Err(failure),
        }
    };
    for deletion in &body.deletions {
        add(
            deletion.name.as_str(),
            deletion.mechanism,
            Ok(Change::Delete),
        );
    }
    for upsertion in &body.upsertions {
        let change = match (
            ScramMechanism::from_kafka_code(upsertion.mechanism),
            u32::try_from(upsertion.iterations),
        ) {
            (Some(mechanism), Ok(iterations)) => ScramCredential::from_salted_password(
                mechanism,
                &upsertion.salted_password,
                &upsertion.salt,
                iterations,
            )
            .map(Change::Upsert)
            .map_err(|e| (ResponseError::UnacceptableCredential, e.to_string())),
            (_, Err(_)) => Err((
                ResponseError::UnacceptableCredential,
                format!("Iterations {} is out of range", upsertion.iterations),
            )),
            // Reported as the unknown mechanism it is, below.
            (None, _) => Ok(Change::Delete),
        };
        add(upsertion.name.as_str(), upsertion.mechanism, change);
    }
    let mut results = Vec::with_capacity(order.len());
    for user in order {
        let outcome = match per_user.remove(&user) {
            Some(Ok(changes)) => apply(broker, &user, changes).await,
            Some(Err(failure)) => Err(failure),
            None => Ok(()),
        };
        let r = AlterUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(user.clone()));
        results.push(match outcome {
            Ok(()) => {
                tracing::info!(target: "nerve::audit", user = %user, principal = %session.principal(), "SCRAM credentials altered");
                r
            }
            Err((error, message)) => {
                count_error(broker, &request, error.code());
                r.with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            }
        });
    }
    respond(
        &request,
        &AlterUserScramCredentialsResponse::default().with_results(results),
    )
}

/// Applies one user's changes; a deletion of a credential the user does not have fails the user.
async fn apply(
    broker: &Broker,
    user: &str,
    changes: Vec<(ScramMechanism, Change)>,
) -> Result<(), Failure> {
    for (mechanism, change) in &changes {
        if matches!(change, Change::Delete)
            && broker
                .meta
                .scram_credential(user, mechanism.name())
                .is_none()
        {
            return Err((
                ResponseError::ResourceNotFound,
                format!(
                    "Attempt to delete a user credential that does not exist: {user} {mechanism}"
                ),
            ));
        }
    }
    for (mechanism, change) in changes {
        let credential = match change {
            Change::Delete => None,
            Change::Upsert(c) => Some(to_stored(c)),
        };
        broker
            .meta
            .set_scram_credential(user, mechanism.name(), credential)
            .await
            .map_err(|e| (ResponseError::UnknownServerError, e.to_string()))?;
    }
    Ok(())
}
