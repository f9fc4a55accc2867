//! The registry's state and operations: subjects and their versions, schema ids, compatibility levels and
//! modes. Every change is written to `_schemas` and durable before it is applied in memory and answered;
//! on open the state is rebuilt from that topic.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use nerve_storage::{LogStore, TopicPartition};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::compatibility::{self, CompatibilityLevel, Earlier};
use crate::error::RegistryError;
use crate::schema::{self, Dependency, ParsedSchema, SchemaReference, SchemaType};
use crate::store::{Change, ConfigValue, IdValue, Key, Mode, ModeValue, SchemaLog, SchemaValue};

/// How deep references may nest.
const MAX_REFERENCE_DEPTH: usize = 32;

/// A schema as a client submits it to register, look up or check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRequest {
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Option<Vec<SchemaReference>>,
    /// Only in IMPORT mode: the version to register as.
    #[serde(default)]
    pub version: Option<i32>,
    /// Only in IMPORT mode: the id to register with.
    #[serde(default)]
    pub id: Option<i32>,
}

/// A schema by id, as `GET /schemas/ids/{id}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaById {
    #[serde(rename = "schemaType", skip_serializing_if = "crate::store::is_avro")]
    pub schema_type: SchemaType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    pub schema: String,
}

/// One version of a subject, as `GET /subjects/{s}/versions/{v}` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    #[serde(rename = "schemaType", skip_serializing_if = "crate::store::is_avro")]
    pub schema_type: SchemaType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    pub schema: String,
}

/// A version as a path names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    Number(i32),
}

impl VersionSpec {
    /// `latest`, `-1`, or a version from 1 to 2^31-1.
    pub fn parse(text: &str) -> Result<VersionSpec, RegistryError> {
        if text.eq_ignore_ascii_case("latest") {
            return Ok(VersionSpec::Latest);
        }
        match text.parse::<i32>() {
            Ok(-1) => Ok(VersionSpec::Latest),
            Ok(n) if n >= 1 => Ok(VersionSpec::Number(n)),
            _ => Err(RegistryError::InvalidVersion(text.to_string())),
        }
    }
}

/// A stored schema: its text as registered (canonical or normalized), what it refers to, and its parsed
/// form (absent only for a record from `_schemas` that no longer parses, which is then never compared).
#[derive(Debug)]
struct StoredSchema {
    schema_type: SchemaType,
    text: String,
    references: Vec<SchemaReference>,
    parsed: Option<Arc<dyn ParsedSchema>>,
}

/// What makes two registrations the same schema, and so the same id.
type SchemaKey = (SchemaType, String, Vec<SchemaReference>);

#[derive(Debug, Clone, Copy)]
struct VersionEntry {
    id: i32,
    deleted: bool,
}

#[derive(Debug, Default)]
struct State {
    schemas: BTreeMap<i32, Arc<StoredSchema>>,
    ids: HashMap<SchemaKey, i32>,
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    config: Option<CompatibilityLevel>,
    subject_config: BTreeMap<String, CompatibilityLevel>,
    mode: Option<Mode>,
    subject_mode: BTreeMap<String, Mode>,
    max_id: i32,
}

/// The schema registry over its `_schemas` partition.
pub struct Registry {
    store: SchemaLog,
    state: RwLock<State>,
    /// Serializes changes: each reads the state, writes to the log, then applies.
    writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("topic", &self.store.tp)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Opens the registry on `tp` (which must exist, compacted), rebuilding its state from the records.
    pub async fn open(
        log: Arc<dyn LogStore>,
        tp: TopicPartition,
    ) -> Result<Arc<Registry>, RegistryError> {
        let store = SchemaLog { log, tp };
        let mut state = State::default();
        let records = store.read_all().await?;
        let count = records.len();
        for (key, value) in records {
            state.apply(key, value);
        }
        tracing::info!(
            records = count,
            schemas = state.schemas.len(),
            subjects = state.subjects.len(),
            "schema registry loaded"
        );
        Ok(Arc::new(Registry {
            store,
            state: RwLock::new(state),
            writes: tokio::sync::Mutex::new(()),
        }))
    }

    async fn commit(&self, changes: Vec<Change>) -> Result<(), RegistryError> {
        self.store.write(&changes).await?;
        let mut state = self.state.write();
        for (key, value) in changes {
            state.apply(key, value);
        }
        Ok(())
    }

    /// Registers `request` under `subject`, or finds it there already; returns its id.
    pub async fn register(
        &self,
        subject: &str,
        request: &SchemaRequest,
        normalize: bool,
    ) -> Result<i32, RegistryError> {
        check_subject_name(subject)?;
        let _writing = self.writes.lock().await;
        let (changes, id) = {
            let state = self.state.read();
            let mode = state.mode_of(subject);
            if mode == Mode::Readonly {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is in read-only mode"
                )));
            }
            if mode != Mode::Import && (request.id.is_some_and(|id| id >= 0)) {
                return Err(RegistryError::OperationNotPermitted(format!(
                    "Subject {subject} is not in import mode: an id cannot be given"
                )));
            }
            let candidate = state.candidate(request, normalize)?;
            let versions = state.subjects.get(subject);
            // The same schema already under the subject: its id, without a check or a new version.
            if mode != Mode::Import {
                if let Some(found) = versions.and_then(|v| {
                    v.iter()
                        .filter(|(_, e)| !e.deleted)
                        .find(|(_, e)| state.same_schema(e.id, &candidate, normalize))
                }) {
                    return Ok(found.1.id);
                }
                let level = state.compatibility_of(subject);
                let earlier = state.earlier(subject);
                let problems = compatibility::check(level, candidate.parsed.as_ref(), &earlier);
                if !problems.is_empty() {
                    return Err(RegistryError::Incompatible {
                        subject: subject.to_string(),
                        level,
                        details: problems,
                    });
                }
            }
            let next_version = versions
                .and_then(|v| v.keys().next_back().copied())
                .unwrap_or(0)
                .saturating_add(1);
            let version = match (mode, request.version) {
                (Mode::Import, Some(v)) if v >= 1 => v,
                (_, Some(v)) if v >= 1 && v != next_version => {
                    return Err(RegistryError::InvalidSchema(format!(
                        "Invalid schema: version {v} is not the next version {next_version} of subject {subject}"
                    )))
                }
                _ => next_version,
            };
            let key = candidate.key();
            let mut changes = Vec::new();
            let id = match request.id.filter(|_| mode == Mode::Import) {
                Some(id) => {
                    if let Some(existing) = state.schemas.get(&id) {
                        if existing.schema_type != key.0
                            || existing.text != key.1
                            || existing.references != key.2
                        {
                            return Err(RegistryError::OperationNotPermitted(format!(
                                "Overwrite new schema with id {id} is not permitted."
                            )));
                        }
                    }
                    if id > state.max_id {
                        changes.push((Key::Id { magic: 0 }, Some(json(IdValue { id })?)));
                    }
                    id
                }
                None => match state.ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id = state.max_id.checked_add(1).ok_or_else(|| {
                            RegistryError::Store("schema ids are exhausted".into())
                        })?;
                        changes.push((Key::Id { magic: 0 }, Some(json(IdValue { id })?)));
                        id
                    }
                },
            };
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema_type: key.0,
                references: key.2,
                schema: key.1,
                deleted: false,
            };
            changes.push((
                Key::Schema {
                    subject: subject.to_string(),
                    version,
                    magic: 1,
                },
                Some(json(value)?),
            ));
            (changes, id)
        };
        self.commit(changes).await?;
        tracing::info!(subject, id, "registered schema");
        Ok(id)
    }

    /// The version of `subject` that holds `request`'s schema.
    pub fn lookup(
        &self,
        subject: &str,
        request: &SchemaRequest,
        normalize: bool,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.state.read();
        let versions = state.live_subject(subject, deleted)?;
        let candidate = state.candidate(request, normalize)?;
        let (&version, entry) = versions
            .iter()
            .filter(|(_, e)| deleted || !e.deleted)
            .find(|(_, e)| state.same_schema(e.id, &candidate, normalize))
            .ok_or(RegistryError::SchemaNotFound)?;
        state.subject_version(subject, version, entry.id)
    }

    /// Subject names, sorted; with `deleted`, also subjects whose every version is soft deleted.
    pub fn subjects(&self, prefix: &str, deleted: bool) -> Vec<String> {
        let state = self.state.read();
        state
            .subjects
            .iter()
            .filter(|(name, versions)| {
                name.starts_with(prefix) && versions.values().any(|e| deleted || !e.deleted)
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A subject's versions, ascending.
    pub fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<i32>, RegistryError> {
        let state = self.state.read();
        let versions = state.live_subject(subject, deleted)?;
        Ok(versions
            .iter()
            .filter(|(_, e)| deleted || !e.deleted)
            .map(|(v, _)| *v)
            .collect())
    }

    /// One version of a subject.
    pub fn version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<SubjectVersion, RegistryError> {
        let state = self.state.read();
        let (version, entry) = state.find_version(subject, spec, deleted)?;
        state.subject_version(subject, version, entry.id)
    }

    /// Ids of the schemas that refer to this subject version.
    pub fn referenced_by(
        &self,
        subject: &str,
        spec: VersionSpec,
    ) -> Result<Vec<i32>, RegistryError> {
        let state = self.state.read();
        let (version, _) = state.find_version(subject, spec, false)?;
        Ok(state.referrers(subject, version))
    }

    /// A schema by id.
    pub fn schema_by_id(&self, id: i32, format: Option<&str>) -> Result<SchemaById, RegistryError> {
        let state = self.state.read();
        let stored = state
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaIdNotFound(id))?;
        let schema = match (format.filter(|f| !f.is_empty()), &stored.parsed) {
            (Some(format), Some(parsed)) => parsed
                .formatted(format)
                .unwrap_or_else(|| stored.text.clone()),
            _ => stored.text.clone(),
        };
        Ok(SchemaById {
            schema_type: stored.schema_type,
            references: stored.references.clone(),
            schema,
        })
    }

    /// The parsed schema with this id, for validating payloads.
    pub fn parsed_by_id(&self, id: i32) -> Option<Arc<dyn ParsedSchema>> {
        self.state.read().schemas.get(&id)?.parsed.clone()
    }

    /// Checks a produced key or value for broker-side validation: it must be in the wire format (magic
    /// byte 0, then the schema id as 4 big-endian bytes, then the payload), its id must be one of
    /// `subject`'s live versions, and the payload must decode with that schema. The error says which
    /// of these failed.
    pub fn validate_record(&self, subject: &str, bytes: &[u8]) -> Result<(), String> {
        let (magic, id, payload) = match bytes {
            [magic, a, b, c, d, payload @ ..] => {
                (*magic, i32::from_be_bytes([*a, *b, *c, *d]), payload)
            }
            _ => {
                return Err(format!(
                    "is {} bytes long: too short for the schema registry wire format (magic byte 0 and a 4-byte schema id)",
                    bytes.len()
                ))
            }
        };
        if magic != 0 {
            return Err(format!(
                "starts with byte {magic}, not the schema registry wire format's magic byte 0"
            ));
        }
        let parsed = {
            let state = self.state.read();
            let Some(stored) = state.schemas.get(&id) else {
                return Err(format!("names schema id {id}, which is not registered"));
            };
            let registered = state
                .subjects
                .get(subject)
                .is_some_and(|v| v.values().any(|e| e.id == id && !e.deleted));
            if !registered {
                return Err(format!(
                    "names schema id {id}, which is not registered under subject {subject}"
                ));
            }
            stored
                .parsed
                .clone()
                .ok_or_else(|| format!("names schema id {id}, which cannot be parsed"))?
        };
        parsed
            .validate_payload(payload)
            .map_err(|e| format!("does not match schema id {id}: {e}"))
    }

    /// The subject versions that hold the schema with this id.
    pub fn id_versions(&self, id: i32, deleted: bool) -> Result<Vec<(String, i32)>, RegistryError> {
        let state = self.state.read();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::SchemaIdNotFound(id));
        }
        Ok(state
            .subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, e)| e.id == id && (deleted || !e.deleted))
                    .map(move |(v, _)| (subject.clone(), *v))
            })
            .collect())
    }

    pub fn schema_types(&self) -> Vec<&'static str> {
        SchemaType::ALL.iter().map(|t| t.name()).collect()
    }

    /// Deletes one version: soft (hidden, kept) or `permanent` (after a soft delete). Returns the version.
    pub async fn delete_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let _writing = self.writes.lock().await;
        let (change, version) = {
            let state = self.state.read();
            state.check_writable(subject)?;
            // A numbered version is found soft deleted too, to say so; `latest` means the latest live one
            // for a soft delete.
            let include_deleted = permanent || matches!(spec, VersionSpec::Number(_));
            let (version, entry) = state.find_version(subject, spec, include_deleted)?;
            if !permanent && entry.deleted {
                return Err(RegistryError::VersionSoftDeleted {
                    subject: subject.to_string(),
                    version,
                });
            }
            if permanent && !entry.deleted {
                return Err(RegistryError::VersionNotSoftDeleted {
                    subject: subject.to_string(),
                    version,
                });
            }
            if !state.referrers(subject, version).is_empty() {
                return Err(RegistryError::ReferenceExists {
                    subject: subject.to_string(),
                    version,
                });
            }
            (
                state.delete_change(subject, version, entry.id, permanent)?,
                version,
            )
        };
        self.commit(vec![change]).await?;
        tracing::info!(subject, version, permanent, "deleted schema version");
        Ok(version)
    }

    /// Deletes every version of a subject: soft, or `permanent` (after a soft delete, and then its
    /// config and mode go too). Returns the versions deleted.
    pub async fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let _writing = self.writes.lock().await;
        let (changes, versions) = {
            let state = self.state.read();
            state.check_writable(subject)?;
            let all = state
                .subjects
                .get(subject)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))?;
            let live: Vec<i32> = all
                .iter()
                .filter(|(_, e)| !e.deleted)
                .map(|(v, _)| *v)
                .collect();
            if permanent && !live.is_empty() {
                return Err(RegistryError::SubjectNotSoftDeleted(subject.to_string()));
            }
            if !permanent && live.is_empty() {
                return Err(RegistryError::SubjectSoftDeleted(subject.to_string()));
            }
            let targets: Vec<i32> = if permanent {
                all.keys().copied().collect()
            } else {
                live
            };
            let mut changes = Vec::new();
            for &version in &targets {
                if !state.referrers(subject, version).is_empty() {
                    return Err(RegistryError::ReferenceExists {
                        subject: subject.to_string(),
                        version,
                    });
                }
                let id = all.get(&version).map_or(0, |e| e.id);
                changes.push(state.delete_change(subject, version, id, permanent)?);
            }
            if permanent {
                if state.subject_config.contains_key(subject) {
                    changes.push((config_key(Some(subject)), None));
                }
                if state.subject_mode.contains_key(subject) {
                    changes.push((mode_key(Some(subject)), None));
                }
            }
            (changes, targets)
        };
        self.commit(changes).await?;
        tracing::info!(subject, permanent, "deleted subject");
        Ok(versions)
    }

    /// Checks `request` against a subject's versions under its compatibility level: against `spec` only
    /// when given (in the level's direction), else against what the level looks at. Returns the
    /// problems; empty when compatible. An unknown subject has nothing to be incompatible with.
    pub fn check_compatibility(
        &self,
        subject: &str,
        spec: Option<VersionSpec>,
        request: &SchemaRequest,
        normalize: bool,
    ) -> Result<Vec<String>, RegistryError> {
        let state = self.state.read();
        let candidate = state.candidate(request, normalize)?;
        let level = state.compatibility_of(subject);
        let earlier = match spec {
            None => state.earlier(subject),
            Some(spec) => {
                let exists = state
                    .subjects
                    .get(subject)
                    .is_some_and(|v| v.values().any(|e| !e.deleted));
                if !exists && spec == VersionSpec::Latest {
                    return Ok(Vec::new());
                }
                let (version, entry) = state.find_version(subject, spec, false)?;
                state
                    .schemas
                    .get(&entry.id)
                    .and_then(|s| s.parsed.clone())
                    .map(|schema| vec![Earlier { version, schema }])
                    .unwrap_or_default()
            }
        };
        Ok(compatibility::check(
            level,
            candidate.parsed.as_ref(),
            &earlier,
        ))
    }

    /// The registry-wide compatibility level.
    pub fn config(&self) -> CompatibilityLevel {
        self.state.read().config.unwrap_or_default()
    }

    /// A subject's own level; with `default_to_global`, the registry-wide one when it has none.
    pub fn subject_config(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let state = self.state.read();
        match state.subject_config.get(subject) {
            Some(level) => Ok(*level),
            None if default_to_global => Ok(state.config.unwrap_or_default()),
            None => Err(RegistryError::SubjectCompatibilityNotConfigured(
                subject.to_string(),
            )),
        }
    }

    /// Sets the level of `subject`, or the registry-wide one when `None`.
    pub async fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        if let Some(subject) = subject {
            check_subject_name(subject)?;
        }
        let _writing = self.writes.lock().await;
        self.state.read().check_writable(subject.unwrap_or(""))?;
        let value = json(ConfigValue {
            compatibility_level: level,
        })?;
        self.commit(vec![(config_key(subject), Some(value))]).await
    }

    /// Removes the level of `subject` (or resets the registry-wide one); returns what it was.
    pub async fn delete_config(
        &self,
        subject: Option<&str>,
    ) -> Result<CompatibilityLevel, RegistryError> {
        let _writing = self.writes.lock().await;
        let previous = {
            let state = self.state.read();
            state.check_writable(subject.unwrap_or(""))?;
            match subject {
                Some(s) => {
                    if !state.subjects.contains_key(s) && !state.subject_config.contains_key(s) {
                        return Err(RegistryError::SubjectNotFound(s.to_string()));
                    }
                    state
                        .subject_config
                        .get(s)
                        .copied()
                        .ok_or_else(|| RegistryError::SubjectCompatibilityNotConfigured(s.into()))?
                }
                None => state.config.unwrap_or_default(),
            }
        };
        self.commit(vec![(config_key(subject), None)]).await?;
        Ok(previous)
    }

    /// The registry-wide mode.
    pub fn mode(&self) -> Mode {
        self.state.read().mode.unwrap_or_default()
    }

    /// A subject's own mode; with `default_to_global`, the registry-wide one when it has none.
    pub fn subject_mode(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<Mode, RegistryError> {
        let state = self.state.read();
        match state.subject_mode.get(subject) {
            Some(mode) => Ok(*mode),
            None if default_to_global => Ok(state.mode.unwrap_or_default()),
            None => Err(RegistryError::SubjectModeNotConfigured(subject.to_string())),
        }
    }

    /// Sets the mode of `subject`, or the registry-wide one. IMPORT is refused where schemas exist
    /// unless `force`, as in Confluent's registry (imported ids could collide with them).
    pub async fn set_mode(
        &self,
        subject: Option<&str>,
        mode: Mode,
        force: bool,
    ) -> Result<(), RegistryError> {
        if let Some(subject) = subject {
            check_subject_name(subject)?;
        }
        let _writing = self.writes.lock().await;
        {
            let state = self.state.read();
            let has_schemas = match subject {
                Some(s) => state
                    .subjects
                    .get(s)
                    .is_some_and(|v| v.values().any(|e| !e.deleted)),
                None => state
                    .subjects
                    .values()
                    .any(|v| v.values().any(|e| !e.deleted)),
            };
            if mode == Mode::Import && has_schemas && !force {
                return Err(RegistryError::OperationNotPermitted(
                    "Cannot import since found existing subjects".into(),
                ));
            }
        }
        let value = json(ModeValue { mode })?;
        self.commit(vec![(mode_key(subject), Some(value))]).await
    }

    /// Removes the mode of `subject`; returns what it was.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode, RegistryError> {
        let _writing = self.writes.lock().await;
        let previous = {
            let state = self.state.read();
            state
                .subject_mode
                .get(subject)
                .copied()
                .ok_or_else(|| RegistryError::SubjectModeNotConfigured(subject.into()))?
        };
        self.commit(vec![(mode_key(Some(subject)), None)]).await?;
        Ok(previous)
    }
}

/// A schema a request proposes, parsed with its references resolved.
struct Candidate {
    schema_type: SchemaType,
    references: Vec<SchemaReference>,
    parsed: Arc<dyn ParsedSchema>,
    text: String,
}

impl Candidate {
    fn key(&self) -> SchemaKey {
        (self.schema_type, self.text.clone(), self.references.clone())
    }
}

impl State {
    /// Applies one record of `_schemas` (written now, or read back on open).
    fn apply(&mut self, key: Key, value: Option<serde_json::Value>) {
        match key {
            Key::Schema {
                subject, version, ..
            } => match value.map(serde_json::from_value::<SchemaValue>) {
                None => {
                    let removed = self
                        .subjects
                        .get_mut(&subject)
                        .and_then(|v| v.remove(&version));
                    if self.subjects.get(&subject).is_some_and(BTreeMap::is_empty) {
                        self.subjects.remove(&subject);
                    }
                    if let Some(entry) = removed {
                        self.forget_unused(entry.id);
                    }
                }
                Some(Ok(value)) => self.apply_schema(value),
                Some(Err(e)) => {
                    tracing::warn!(subject, version, error = %e, "skipping an unreadable schema record")
                }
            },
            Key::Config { subject, .. } => {
                let level = value
                    .and_then(|v| serde_json::from_value::<ConfigValue>(v).ok())
                    .map(|c| c.compatibility_level);
                match (subject, level) {
                    (None, level) => self.config = level,
                    (Some(s), Some(level)) => {
                        self.subject_config.insert(s, level);
                    }
                    (Some(s), None) => {
                        self.subject_config.remove(&s);
                    }
                }
            }
            Key::Mode { subject, .. } => {
                let mode = value
                    .and_then(|v| serde_json::from_value::<ModeValue>(v).ok())
                    .map(|m| m.mode);
                match (subject, mode) {
                    (None, mode) => self.mode = mode,
                    (Some(s), Some(mode)) => {
                        self.subject_mode.insert(s, mode);
                    }
                    (Some(s), None) => {
                        self.subject_mode.remove(&s);
                    }
                }
            }
            Key::Id { .. } => {
                if let Some(Ok(IdValue { id })) = value.map(serde_json::from_value::<IdValue>) {
                    self.max_id = self.max_id.max(id);
                }
            }
        }
    }

    fn apply_schema(&mut self, value: SchemaValue) {
        self.max_id = self.max_id.max(value.id);
        if !self.schemas.contains_key(&value.id) {
            let parsed = self
                .dependencies(&value.references, 0)
                .and_then(|deps| {
                    schema::parse(value.schema_type, &value.schema, &deps)
                        .map_err(|e| RegistryError::InvalidSchema(e.0))
                })
                .map_err(|e| {
                    tracing::warn!(id = value.id, error = %e, "a stored schema does not parse; it is served but never compared");
                })
                .ok();
            let stored = StoredSchema {
                schema_type: value.schema_type,
                text: value.schema.clone(),
                references: value.references.clone(),
                parsed,
            };
            self.ids.insert(
                (value.schema_type, value.schema, value.references),
                value.id,
            );
            self.schemas.insert(value.id, Arc::new(stored));
        }
        let previous = self.subjects.entry(value.subject).or_default().insert(
            value.version,
            VersionEntry {
                id: value.id,
                deleted: value.deleted,
            },
        );
        if let Some(previous) = previous.filter(|p| p.id != value.id) {
            self.forget_unused(previous.id);
        }
    }

    /// Drops a schema no version refers to any more (after hard deletes), so its id answers 40403.
    fn forget_unused(&mut self, id: i32) {
        let used = self
            .subjects
            .values()
            .any(|v| v.values().any(|e| e.id == id));
        if !used {
            if let Some(stored) = self.schemas.remove(&id) {
                self.ids.remove(&(
                    stored.schema_type,
                    stored.text.clone(),
                    stored.references.clone(),
                ));
            }
        }
    }

    fn mode_of(&self, subject: &str) -> Mode {
        self.subject_mode
            .get(subject)
            .copied()
            .or(self.mode)
            .unwrap_or_default()
    }

    fn compatibility_of(&self, subject: &str) -> CompatibilityLevel {
        self.subject_config
            .get(subject)
            .copied()
            .or(self.config)
            .unwrap_or_default()
    }

    fn check_writable(&self, subject: &str) -> Result<(), RegistryError> {
        if self.mode_of(subject) == Mode::Readonly {
            return Err(RegistryError::OperationNotPermitted(format!(
                "Subject {subject} is in read-only mode"
            )));
        }
        Ok(())
    }

    /// The request's schema, parsed with its references, in the form it would be stored.
    fn candidate(
        &self,
        request: &SchemaRequest,
        normalize: bool,
    ) -> Result<Candidate, RegistryError> {
        let text = request
            .schema
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| RegistryError::InvalidSchema("Invalid schema: empty schema".into()))?;
        let schema_type = match request.schema_type.as_deref() {
            None => SchemaType::Avro,
            Some(name) => SchemaType::from_name(name).ok_or_else(|| {
                RegistryError::InvalidSchema(format!("Invalid schema: unknown schema type {name}"))
            })?,
        };
        let references = request.references.clone().unwrap_or_default();
        let dependencies = self.dependencies(&references, 0)?;
        let parsed = schema::parse(schema_type, text, &dependencies).map_err(|e| {
            // Confluent's wording, so that tools matching on it keep working.
            RegistryError::InvalidSchema(format!(
                "Invalid schema {text} of type {}, details: {}",
                schema_type.name(),
                e.0
            ))
        })?;
        let text = if normalize {
            parsed.normalized()
        } else {
            parsed.canonical()
        };
        Ok(Candidate {
            schema_type,
            references,
            parsed,
            text,
        })
    }

    /// Whether the stored schema `id` is the candidate (compared in normalized form with `normalize`).
    fn same_schema(&self, id: i32, candidate: &Candidate, normalize: bool) -> bool {
        let Some(stored) = self.schemas.get(&id) else {
            return false;
        };
        if stored.schema_type != candidate.schema_type || stored.references != candidate.references
        {
            return false;
        }
        if stored.text == candidate.text {
            return true;
        }
        match &stored.parsed {
            Some(parsed) if normalize => parsed.normalized() == candidate.text,
            Some(parsed) => parsed.canonical() == candidate.text,
            None => false,
        }
    }

    /// Every schema `references` reaches, each after the ones it depends on.
    fn dependencies(
        &self,
        references: &[SchemaReference],
        depth: usize,
    ) -> Result<Vec<Dependency>, RegistryError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(RegistryError::InvalidSchema(
                "Invalid schema: references nest too deep".into(),
            ));
        }
        let mut out: Vec<Dependency> = Vec::new();
        let mut seen = HashSet::new();
        for reference in references {
            let spec = if reference.version == -1 {
                VersionSpec::Latest
            } else {
                VersionSpec::Number(reference.version)
            };
            let (_, entry) = self
                .find_version(&reference.subject, spec, true)
                .map_err(|_| {
                    RegistryError::InvalidSchema(format!(
                        "Invalid schema: reference {} to subject {} version {} does not exist",
                        reference.name, reference.subject, reference.version
                    ))
                })?;
            let stored = self.schemas.get(&entry.id).ok_or_else(|| {
                RegistryError::InvalidSchema(format!(
                    "Invalid schema: reference {} is gone",
                    reference.name
                ))
            })?;
            for dependency in self.dependencies(&stored.references, depth + 1)? {
                if seen.insert(dependency.name.clone()) {
                    out.push(dependency);
                }
            }
            if seen.insert(reference.name.clone()) {
                out.push(Dependency {
                    name: reference.name.clone(),
                    schema_type: stored.schema_type,
                    schema: stored.text.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The versions of `subject` that are not deleted, or all with `deleted`; 40401 when there are none.
    fn live_subject(
        &self,
        subject: &str,
        deleted: bool,
    ) -> Result<&BTreeMap<i32, VersionEntry>, RegistryError> {
        self.subjects
            .get(subject)
            .filter(|v| v.values().any(|e| deleted || !e.deleted))
            .ok_or_else(|| RegistryError::SubjectNotFound(subject.to_string()))
    }

    fn find_version(
        &self,
        subject: &str,
        spec: VersionSpec,
        deleted: bool,
    ) -> Result<(i32, VersionEntry), RegistryError> {
        let versions = self.live_subject(subject, deleted)?;
        let found = match spec {
            VersionSpec::Latest => versions
                .iter()
                .rev()
                .find(|(_, e)| deleted || !e.deleted)
                .map(|(v, e)| (*v, *e)),
            VersionSpec::Number(n) => versions
                .get(&n)
                .filter(|e| deleted || !e.deleted)
                .map(|e| (n, *e)),
        };
        found.ok_or(match spec {
            VersionSpec::Number(n) => RegistryError::VersionNotFound(n),
            VersionSpec::Latest => RegistryError::SubjectNotFound(subject.to_string()),
        })
    }

    fn subject_version(
        &self,
        subject: &str,
        version: i32,
        id: i32,
    ) -> Result<SubjectVersion, RegistryError> {
        let stored = self
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaIdNotFound(id))?;
        Ok(SubjectVersion {
            subject: subject.to_string(),
            version,
            id,
            schema_type: stored.schema_type,
            references: stored.references.clone(),
            schema: stored.text.clone(),
        })
    }

    /// The subject's live versions with parsed schemas, oldest first.
    fn earlier(&self, subject: &str) -> Vec<Earlier> {
        self.subjects
            .get(subject)
            .into_iter()
            .flatten()
            .filter(|(_, e)| !e.deleted)
            .filter_map(|(v, e)| {
                let schema = self.schemas.get(&e.id)?.parsed.clone()?;
                Some(Earlier {
                    version: *v,
                    schema,
                })
            })
            .collect()
    }

    /// Ids of live schemas whose references name this subject version.
    fn referrers(&self, subject: &str, version: i32) -> Vec<i32> {
        let latest = self
            .subjects
            .get(subject)
            .and_then(|v| v.keys().next_back().copied());
        let mut ids: Vec<i32> = self
            .schemas
            .iter()
            .filter(|(id, _)| {
                self.subjects
                    .values()
                    .any(|v| v.values().any(|e| e.id == **id && !e.deleted))
            })
            .filter(|(_, s)| {
                s.references.iter().any(|r| {
                    r.subject == subject
                        && (r.version == version || (r.version == -1 && latest == Some(version)))
                })
            })
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    fn delete_change(
        &self,
        subject: &str,
        version: i32,
        id: i32,
        permanent: bool,
    ) -> Result<Change, RegistryError> {
        let key = Key::Schema {
            subject: subject.to_string(),
            version,
            magic: 1,
        };
        if permanent {
            return Ok((key, None));
        }
        let stored = self
            .schemas
            .get(&id)
            .ok_or(RegistryError::SchemaIdNotFound(id))?;
        let value = SchemaValue {
            subject: subject.to_string(),
            version,
            id,
            schema_type: stored.schema_type,
            references: stored.references.clone(),
            schema: stored.text.clone(),
            deleted: true,
        };
        Ok((key, Some(json(value)?)))
    }
}

fn config_key(subject: Option<&str>) -> Key {
    Key::Config {
        subject: subject.map(str::to_string),
        magic: 0,
    }
}

fn mode_key(subject: Option<&str>) -> Key {
    Key::Mode {
        subject: subject.map(str::to_string),
        magic: 0,
    }
}

fn json(value: impl Serialize) -> Result<serde_json::Value, RegistryError> {
    serde_json::to_value(value).map_err(|e| RegistryError::Store(e.to_string()))
}

/// Subjects are non-empty, at most 255 bytes and free of control characters (Confluent's rule is the
/// same in spirit: they become Kafka record keys and URL path segments).
fn check_subject_name(subject: &str) -> Result<(), RegistryError> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(RegistryError::BadRequest(format!(
            "invalid subject name {subject:?}"
        )));
    }
    Ok(())
}
