//! The JSON Schema of `enclave.yaml`, generated from the spec's types (feature `schema`).
//!
//! Committed as `docs/enclave.schema.json` so that editors complete and check specs; the
//! crate's `tests/schema.rs` keeps the file in sync with the types and checks that the schema
//! accepts and refuses what the parser does. The schema says what the types say; what only
//! [`EnclaveSpec::validate`] checks (duplicate ports, `allow_special` that changes nothing, …)
//! is left to the parser.

use std::borrow::Cow;

use schemars::{generate::SchemaSettings, json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::{Cidr, EgressMode, EgressRule, EgressSpec, EnclaveSpec, HealthDuration, HostPattern};

/// Where the committed schema says it lives, so that editors can fetch it by its `$id`.
pub const SCHEMA_ID: &str =
    "https://raw.githubusercontent.com/enclave-engine/enclave-engine/main/docs/enclave.schema.json";

impl EnclaveSpec {
    /// The JSON Schema (draft-07, which every YAML language server reads) of the spec as it is
    /// written: the schema of what deserializes, so `from` (read but not measured) is in it.
    pub fn json_schema() -> serde_json::Value {
        let generator = SchemaSettings::draft07().for_deserialize().into_generator();
        let mut schema = generator.into_root_schema_for::<EnclaveSpec>();
        schema.insert("$id".into(), SCHEMA_ID.into());
        schema.insert("title".into(), "enclave.yaml".into());
        // An empty file is an empty spec (`from` may come from the command line).
        schema.insert("type".into(), serde_json::json!(["object", "null"]));
        schema.to_value()
    }
}

// `egress:` is a list of rules (named mode) or `{mode, allow}` (network.rs reads both).
impl JsonSchema for EgressSpec {
    fn schema_name() -> Cow<'static, str> {
        "EgressSpec".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let rules = generator.subschema_for::<Vec<EgressRule>>();
        let mode = generator.subschema_for::<EgressMode>();
        json_schema!({
            "description": "Endpoints the enclave may reach: a list of rules (named mode), or \
                            `mode` and `allow`.",
            "oneOf": [
                rules,
                {
                    "type": "object",
                    "properties": { "mode": mode, "allow": rules },
                    "additionalProperties": false
                }
            ]
        })
    }
}

impl JsonSchema for HealthDuration {
    fn schema_name() -> Cow<'static, str> {
        "HealthDuration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a number and a unit, ms, s, m or h.",
            "pattern": "^[0-9]+(ms|s|m|h)$",
            "examples": ["500ms", "30s", "2m"]
        })
    }
}

impl JsonSchema for HostPattern {
    fn schema_name() -> Cow<'static, str> {
        "HostPattern".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // valid_host_name's rule (labels of letters, digits and inner hyphens), an optional
        // `*.` and a trailing dot; the length limits and "not an address" stay with the parser.
        json_schema!({
            "type": "string",
            "description": "A DNS name, or `*.domain` for any name under the domain.",
            "pattern": "^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\\.?$",
            "examples": ["db.internal", "*.example.com"]
        })
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // Whether the address parses and its host bits are zero is the parser's to say.
        json_schema!({
            "type": "string",
            "description": "An IPv4 or IPv6 address range, ADDR/PREFIX (a bare address is a \
                            /32 or /128).",
            "pattern": "^[0-9A-Fa-f:.]+(/[0-9]{1,3})?$",
            "examples": ["10.0.0.0/8", "fd00::/8"]
        })
    }
}
