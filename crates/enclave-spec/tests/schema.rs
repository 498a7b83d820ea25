//! docs/enclave.schema.json: generated from the spec's types, committed, and in agreement with
//! the parser.
//!
//! `ENCLAVE_ENGINE_UPDATE_SCHEMA=1 cargo test -p enclave-spec --test schema` rewrites the file
//! after a change to the types.

use std::path::{Path, PathBuf};

use enclave_spec::EnclaveSpec;

fn committed_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/enclave.schema.json")
}

fn generated_text() -> String {
    let mut text = serde_json::to_string_pretty(&EnclaveSpec::json_schema()).unwrap();
    text.push('\n');
    text
}

#[test]
fn committed_schema_is_generated_from_the_types() {
    let path = committed_path();
    let generated = generated_text();
    if std::env::var_os("ENCLAVE_ENGINE_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what the spec types generate; run \
         `ENCLAVE_ENGINE_UPDATE_SCHEMA=1 cargo test -p enclave-spec --test schema` and commit it",
        path.display()
    );
}

/// The schema compiled by an independent validator (boon), from the committed file.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new() -> Self {
        let value: serde_json::Value =
            serde_json::from_str(&generated_text()).expect("the schema is JSON");
        let mut compiler = boon::Compiler::new();
        let url = "file:///enclave.schema.json";
        compiler.add_resource(url, value).unwrap();
        let mut schemas = boon::Schemas::new();
        let index = compiler
            .compile(url, &mut schemas)
            .unwrap_or_else(|e| panic!("the schema does not compile: {e:#}"));
        Validator { schemas, index }
    }

    fn accepts(&self, yaml: &str) -> Result<(), String> {
        let instance: serde_json::Value = yaml_serde::from_str(yaml).expect("test YAML parses");
        self.schemas
            .validate(&instance, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

#[test]
fn the_examples_are_valid_specs_by_both() {
    let validator = Validator::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let spec = entry.unwrap().path().join("enclave.yaml");
        let Ok(text) = std::fs::read_to_string(&spec) else {
            continue;
        };
        EnclaveSpec::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", spec.display()));
        if let Err(e) = validator.accepts(&text) {
            panic!("the schema refuses {}: {e}", spec.display());
        }
        seen += 1;
    }
    assert!(seen >= 3, "expected the examples' specs, found {seen}");
}

/// Specs that both the parser and the schema accept: every section, both egress forms.
const GOOD: &[&str] = &[
    "",
    "name: a\nfrom: oci:img:latest\nversion: 1\nentrypoint: [/bin/app]\ncmd: [--x]\n\
     env: {A: b}\nworkdir: /srv\nuser: app\nhostname: h",
    "services:\n  - name: db\n    command: [/bin/db]\n    restart: on-failure\n    max_restarts: 3\n\
     \x20   depends_on: [cache]\n    readiness: {tcp: 5432}\n  - name: cache\n    command: [/c]\n\
     \x20   readiness: {command: [/bin/true]}",
    "ingress:\n  - {port: 8080, host_port: 18080, host_ip: 127.0.0.1}\n  - port: 9000",
    "egress:\n  - {host: db.internal, port: 5432}\n  - {host: '*.example.com', port: 443}",
    "egress:\n  mode: transparent\n  allow:\n    - {cidr: 10.0.0.0/8, port: 443}\n\
     \x20   - {cidr: '0.0.0.0/0', port: 80, allow_special: true}\n    - {cidr: 'fd00::/8', port: 1}",
    "attestation:\n  server: {port: 8443, client_ca: ['-----BEGIN CERTIFICATE-----\\nx']}\n\
     \x20 files:\n    roots: [/app]\n    ignore_file: /app/.attestignore\n    nats:\n\
     \x20     url: nats://n:4222\n      bucket: b\n      tls: {ca_file: /etc/ca.pem, server_name: n}\n\
     \x20     credentials: {kind: nkey, file: /run/enclave/secrets/n.nk}",
    "debug: {exec: true, cp: true, attest: false, authorized_keys: [AAAA]}",
];

/// Specs that both refuse for what the types say: unknown fields, wrong types, bad enum
/// values, one-of rules.
const BAD: &[&str] = &[
    "nmae: typo",
    "services:\n  - {name: a, command: [/a], restat: always}",
    "services:\n  - {name: a, command: /a}",
    "services:\n  - {name: a, command: [/a], restart: sometimes}",
    "services:\n  - {name: a, command: [/a], readiness: {tcp: 1, command: [/b]}}",
    "services:\n  - {name: a, command: [/a], readiness: {}}",
    "ingress:\n  - {port: 70000}",
    "ingress:\n  - {port: 80, public: true}",
    "egress:\n  - {host: a.b, cidr: 10.0.0.0/8, port: 1}",
    "egress:\n  - {port: 443}",
    "egress:\n  - {host: a.b}",
    "egress:\n  mode: sideways\n  allow: []",
    "egress:\n  allow: []\n  extra: 1",
    "egress:\n  - {host: 'bad name!', port: 1}",
    "egress:\n  - {cidr: not-a-range, port: 1}",
    "attestation:\n  server: {port: 8443, tls: true}",
    "attestation:\n  files: {roots: [/a], nats: {url: u, bucket: b, credentials: {kind: jwt, file: f}}}",
    "debug: {exec: yes please}",
    "debug: {shell: true}",
];

#[test]
fn schema_and_parser_agree_on_good_specs() {
    let validator = Validator::new();
    for yaml in GOOD {
        EnclaveSpec::from_yaml(yaml).unwrap_or_else(|e| panic!("parser refuses {yaml:?}: {e}"));
        if let Err(e) = validator.accepts(yaml) {
            panic!("schema refuses {yaml:?}: {e}");
        }
    }
}

#[test]
fn schema_and_parser_agree_on_bad_specs() {
    let validator = Validator::new();
    for yaml in BAD {
        assert!(
            EnclaveSpec::from_yaml(yaml).is_err(),
            "parser accepts {yaml:?}"
        );
        assert!(validator.accepts(yaml).is_err(), "schema accepts {yaml:?}");
    }
}
