//! nitro-cli's JSON outputs and error codes.

use std::collections::BTreeMap;

use serde::Deserialize;

/// An enclave as `run-enclave` and `describe-enclaves` print it. Fields absent from older
/// nitro-cli versions are optional; IDs are opaque strings of any length.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NitroEnclave {
    /// Newer nitro-cli only.
    #[serde(default)]
    pub enclave_name: Option<String>,
    /// `i-…-enc…`.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// The enclave process on the parent.
    #[serde(rename = "ProcessID", default)]
    pub process_id: Option<u32>,
    /// The enclave's CID.
    #[serde(rename = "EnclaveCID")]
    pub enclave_cid: u64,
    /// vCPUs.
    #[serde(rename = "NumberOfCPUs", default)]
    pub number_of_cpus: Option<u32>,
    /// Which CPUs.
    #[serde(rename = "CPUIDs", default)]
    pub cpu_ids: Vec<u32>,
    /// Memory.
    #[serde(rename = "MemoryMiB", default)]
    pub memory_mib: Option<u64>,
    /// RUNNING, TERMINATING, EMPTY (describe-enclaves only).
    #[serde(default)]
    pub state: Option<String>,
    /// DEBUG_MODE or NONE (describe-enclaves only).
    #[serde(default)]
    pub flags: Option<String>,
    /// PCRs (newer describe-enclaves).
    #[serde(default)]
    pub measurements: Option<BTreeMap<String, String>>,
}

/// `terminate-enclave`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Terminated {
    /// Newer nitro-cli only.
    #[serde(default)]
    pub enclave_name: Option<String>,
    /// Which.
    #[serde(rename = "EnclaveID")]
    pub enclave_id: String,
    /// Whether it worked.
    pub terminated: bool,
}

/// The first `[ Exx ]` code in nitro-cli's stderr.
pub fn error_code(stderr: &str) -> Option<String> {
    let start = stderr.find("[ E")?;
    let rest = &stderr[start + 2..];
    let end = rest.find(' ')?;
    let code = &rest[..end];
    (code.len() > 1 && code[1..].bytes().all(|b| b.is_ascii_digit())).then(|| code.to_owned())
}

/// What to do about a nitro-cli error code, in one sentence, with nitro-cli's page for it.
pub fn describe_error_code(code: &str) -> String {
    let docs = format!("https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#{code}");
    match super::nitro_errors::lookup(code) {
        Some(e) => format!("nitro-cli error {code} ({}): {} ({docs})", e.name, e.advice),
        None => format!("nitro-cli error {code}: see {docs}"),
    }
}

/// A nitro-cli failure as one actionable message: the mapped advice and nitro-cli's own first
/// error sentence.
pub fn failure_message(command: &str, stderr: &str) -> String {
    let said = stderr
        .lines()
        .find(|l| l.contains("[ E"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("")
        .trim();
    match error_code(stderr) {
        Some(code) => format!(
            "nitro-cli {command} failed: {}; nitro-cli said: {said}",
            describe_error_code(&code)
        ),
        None => format!("nitro-cli {command} failed: {said}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_and_described() {
        let e35 = "Start allocating memory...\n[ E35 ] EIF file parsing error. Such error…\n";
        assert_eq!(error_code(e35).as_deref(), Some("E35"));
        assert!(describe_error_code("E35").contains("hugepages"));
        assert!(describe_error_code("E99").contains("cli-errors.html#E99"));
        assert_eq!(error_code("no code here"), None);
        assert_eq!(error_code("[ Exx ]"), None);
        let msg = failure_message("run-enclave", e35);
        assert!(
            msg.contains("hugepages") && msg.contains("EIF file parsing error"),
            "{msg}"
        );
    }
}
