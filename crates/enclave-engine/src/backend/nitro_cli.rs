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

/// What to do about a nitro-cli error code, in one sentence.
pub fn describe_error_code(code: &str) -> String {
    let advice = match code {
        "E14" => "another nitro-cli command holds the enclave lock: retry in a moment",
        "E17" => "permission denied: run as root or add your user to the `ne` group, then log in again",
        "E18" => "nitro-cli could not read or write a file: check that the EIF path exists and is readable",
        "E19" | "E20" | "E21" | "E22" | "E23" => {
            "the CPUs asked for are not in the enclave CPU pool: lower --cpus (full cores, an even number on hyper-threaded instances) or raise cpu_count in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator.service"
        }
        "E24" | "E26" | "E27" => {
            "not enough enclave memory is reserved: raise memory_mib in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator.service, or lower --memory"
        }
        "E25" => "the memory asked for is too small for this EIF: raise --memory",
        "E35" => {
            "nitro-cli could not load the EIF into enclave memory: inside a container this means hugepages are not mounted (request hugepages-2Mi and mount an emptyDir with medium HugePages at /dev/hugepages); otherwise check the EIF with `enclave-ctl inspect`"
        }
        "E36" => {
            "the enclave booted but sent no heartbeat: run it with --debug-mode and read `enclave-ctl console` (a Nitro EIF needs the nitro kernel profile)"
        }
        "E39" => {
            "nitro-cli could not reach an enclave process: a stale enclave may be left; list them with `nitro-cli describe-enclaves` and end them with `nitro-cli terminate-enclave --all`"
        }
        "E44" | "E45" => "the enclave CID is invalid or taken: let the engine choose it",
        _ => "",
    };
    let docs = format!("https://docs.aws.amazon.com/enclaves/latest/user/cli-errors.html#{code}");
    if advice.is_empty() {
        format!("nitro-cli error {code}: see {docs}")
    } else {
        format!("nitro-cli error {code}: {advice} ({docs})")
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
