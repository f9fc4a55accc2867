//! What the PostgreSQL stores share: table names that are safe to write into SQL.

/// A table name that is not a plain identifier.
#[derive(Debug, thiserror::Error)]
#[error("not a valid SQL table name: {0:?} (letters, digits and _, optionally schema-qualified)")]
pub struct InvalidTableName(pub String);

/// `name` or `schema.name`, each part letters, digits and `_`, not starting with a digit, at most 63
/// bytes (PostgreSQL's limit): safe to put into SQL unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableName(String);

impl TableName {
    pub(crate) fn new(name: &str) -> Result<TableName, InvalidTableName> {
        let part_ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() <= 2 && parts.iter().all(|p| part_ok(p)) {
            Ok(TableName(name.to_string()))
        } else {
            Err(InvalidTableName(name.to_string()))
        }
    }

    /// The name as given, schema included: for statements.
    pub(crate) fn qualified(&self) -> &str {
        &self.0
    }

    /// The unqualified part: for naming the table's indexes, which live in its schema.
    pub(crate) fn bare(&self) -> &str {
        self.0.rsplit('.').next().unwrap_or(&self.0)
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_identifiers_or_schema_qualified_identifiers() {
        for good in ["nerve_dedup", "s.nerve_dedup", "_x1", "Orders"] {
            assert!(TableName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a.b.c",
            "1abc",
            "x;drop table y",
            "a b",
            "\"q\"",
            "s.",
            ".t",
        ] {
            assert!(TableName::new(bad).is_err(), "{bad}");
        }
        let name = TableName::new("s.t").expect("valid");
        assert_eq!((name.qualified(), name.bare()), ("s.t", "t"));
    }
}
