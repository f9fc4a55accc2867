//! The registry's errors, each with the HTTP status and Confluent error code a client is answered with.

use crate::compatibility::CompatibilityLevel;

/// Why a registry operation failed. [`RegistryError::status`] and [`RegistryError::code`] give what the
/// Confluent API answers for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    #[error("Version {0} not found.")]
    VersionNotFound(i32),
    #[error("Schema {0} not found")]
    SchemaIdNotFound(i32),
    #[error("Schema not found")]
    SchemaNotFound,
    #[error("Subject '{0}' was soft deleted.Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    #[error("Subject '{subject}' Version {version} was soft deleted.Set permanent=true to delete permanently")]
    VersionSoftDeleted { subject: String, version: i32 },
    #[error("Subject '{subject}' Version {version} was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted { subject: String, version: i32 },
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectCompatibilityNotConfigured(String),
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotConfigured(String),
    /// The message is complete (it begins "Invalid schema" where a schema failed to parse).
    #[error("{0}")]
    InvalidSchema(String),
    #[error("The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\"")]
    InvalidVersion(String),
    #[error("Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive")]
    InvalidCompatibilityLevel,
    #[error("Invalid mode. Valid values are READWRITE, READONLY and IMPORT")]
    InvalidMode,
    #[error("{0}")]
    OperationNotPermitted(String),
    #[error("One or more references exist to the schema {{subject={subject},version={version}}}.")]
    ReferenceExists { subject: String, version: i32 },
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        subject: String,
        level: CompatibilityLevel,
        details: Vec<String>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("Request body of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("Error in the backend data store: {0}")]
    Store(String),
    /// The principal may not do `operation` to the resource (`subject: orders-value`,
    /// `cluster: kafka-cluster`).
    #[error("User is denied operation {operation} on {resource}")]
    Denied { operation: String, resource: String },
}

impl RegistryError {
    /// The HTTP status Confluent's registry answers with.
    pub fn status(&self) -> u16 {
        match self {
            RegistryError::SubjectNotFound(_)
            | RegistryError::VersionNotFound(_)
            | RegistryError::SchemaIdNotFound(_)
            | RegistryError::SchemaNotFound
            | RegistryError::SubjectSoftDeleted(_)
            | RegistryError::SubjectNotSoftDeleted(_)
            | RegistryError::VersionSoftDeleted { .. }
            | RegistryError::VersionNotSoftDeleted { .. }
            | RegistryError::SubjectCompatibilityNotConfigured(_)
            | RegistryError::SubjectModeNotConfigured(_) => 404,
            RegistryError::InvalidSchema(_)
            | RegistryError::InvalidVersion(_)
            | RegistryError::InvalidCompatibilityLevel
            | RegistryError::InvalidMode
            | RegistryError::OperationNotPermitted(_)
            | RegistryError::ReferenceExists { .. } => 422,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::BadRequest(_) => 400,
            RegistryError::TooLarge(_) => 413,
            RegistryError::Store(_) => 500,
            RegistryError::Denied { .. } => 403,
        }
    }

    /// The `error_code` of the JSON body, as Confluent numbers them.
    pub fn code(&self) -> u32 {
        match self {
            RegistryError::SubjectNotFound(_) => 40401,
            RegistryError::VersionNotFound(_) => 40402,
            RegistryError::SchemaIdNotFound(_) | RegistryError::SchemaNotFound => 40403,
            RegistryError::SubjectSoftDeleted(_) => 40404,
            RegistryError::SubjectNotSoftDeleted(_) => 40405,
            RegistryError::VersionSoftDeleted { .. } => 40406,
            RegistryError::VersionNotSoftDeleted { .. } => 40407,
            RegistryError::SubjectCompatibilityNotConfigured(_) => 40408,
            RegistryError::SubjectModeNotConfigured(_) => 40409,
            RegistryError::InvalidSchema(_) => 42201,
            RegistryError::InvalidVersion(_) => 42202,
            RegistryError::InvalidCompatibilityLevel => 42203,
            RegistryError::InvalidMode => 42204,
            RegistryError::OperationNotPermitted(_) => 42205,
            RegistryError::ReferenceExists { .. } => 42206,
            RegistryError::Incompatible { .. } => 409,
            RegistryError::BadRequest(_) => 400,
            RegistryError::TooLarge(_) => 413,
            RegistryError::Store(_) => 50001,
            RegistryError::Denied { .. } => 40301,
        }
    }
}

impl From<nerve_storage::StorageError> for RegistryError {
    fn from(e: nerve_storage::StorageError) -> Self {
        RegistryError::Store(e.to_string())
    }
}
