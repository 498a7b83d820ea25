//! nitro-cli's error codes (`[ E00 ]` … `[ E60 ]`, nitro-cli 1.5's `document_errors.rs`), each
//! with its name and one sentence of what to do about it, written for enclave-ctl's users: the
//! flags named are enclave-ctl's, the files those of a Nitro parent.
//!
//! `tests/nitro_errors.rs` checks the table against the list recorded from nitro-cli's source
//! (`testdata/nitro-cli/error-codes.tsv`): every code, in order, with nitro-cli's own name.

/// One of nitro-cli's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NitroErrorCode {
    /// `E00` … `E60`.
    pub code: &'static str,
    /// nitro-cli's name of the error (`NitroCliErrorEnum`).
    pub name: &'static str,
    /// What to do about it.
    pub advice: &'static str,
}

macro_rules! codes {
    ($($code:literal $name:literal => $advice:expr;)*) => {
        /// Every code nitro-cli documents, in order.
        pub const NITRO_ERROR_CODES: &[NitroErrorCode] = &[
            $(NitroErrorCode { code: $code, name: $name, advice: $advice },)*
        ];
    };
}

codes! {
    "E00" "UnspecifiedError" => "nitro-cli failed without saying why: read the error log it names under /var/log/nitro_enclaves/";
    "E01" "MissingArgument" => "nitro-cli was called without an argument it needs: this is a bug in enclave-engine, please report it with the command line from `enclave-ctl -v`";
    "E02" "ConflictingArgument" => "nitro-cli was given arguments that exclude each other: this is a bug in enclave-engine, please report it";
    "E03" "InvalidArgument" => "nitro-cli refused an argument: check --cpus and --memory (whole numbers) and the EIF path";
    "E04" "SocketPairCreationFailure" => "nitro-cli could not make a socket pair: the process may be out of file descriptors (raise `ulimit -n`)";
    "E05" "ProcessSpawnFailure" => "nitro-cli could not start its enclave process: check free memory and the process limit (`ulimit -u`)";
    "E06" "DaemonizeProcessFailure" => "nitro-cli could not detach its enclave process: check free memory and the process limit";
    "E07" "ReadFromDiskFailure" => "nitro-cli could not read a file from disk: check that the EIF exists and is readable";
    "E08" "UnusableConnectionError" => "nitro-cli's connection to its enclave process broke: the enclave may have exited; see `enclave-ctl logs` and `nitro-cli describe-enclaves`";
    "E09" "SocketCloseError" => "nitro-cli could not close a socket: usually harmless; if enclaves misbehave, end them with `nitro-cli terminate-enclave --all`";
    "E10" "SocketConnectTimeoutError" => "nitro-cli timed out reaching its enclave process: the parent may be overloaded; retry, and end stale enclaves with `nitro-cli terminate-enclave --all`";
    "E11" "SocketError" => "a socket nitro-cli uses failed: check that /run/nitro_enclaves exists and is writable by the `ne` group";
    "E12" "EpollError" => "nitro-cli's event loop failed: retry; if it persists, read the error log under /var/log/nitro_enclaves/";
    "E13" "InotifyError" => "nitro-cli could not watch its socket directory: raise fs.inotify.max_user_watches or max_user_instances";
    "E14" "InvalidCommand" => "nitro-cli does not know a command it was given: update nitro-cli (enclave-engine needs 1.2 or newer)";
    "E15" "LockAcquireFailure" => "another nitro-cli command holds the enclave lock: retry in a moment";
    "E16" "ThreadJoinFailure" => "a nitro-cli thread failed: retry; if it persists, read the error log under /var/log/nitro_enclaves/";
    "E17" "SerdeError" => "nitro-cli could not encode or decode its own messages: use one nitro-cli version for all commands (restart running enclaves after an update)";
    "E18" "FilePermissionsError" => "permission denied on /dev/nitro_enclaves or nitro-cli's files: run as root or add your user to the `ne` group (`sudo usermod -aG ne $USER`), then log in again";
    "E19" "FileOperationFailure" => "nitro-cli could not open, read or write a file: check the EIF path, /dev/nitro_enclaves (the nitro_enclaves driver loaded?) and /var/log/nitro_enclaves";
    "E20" "InvalidCpuConfiguration" => "the CPU request is invalid: give --cpus as a whole number of full cores (an even number on hyper-threaded instances)";
    "E21" "NoSuchCpuAvailableInPool" => "a CPU asked for is not in the enclave CPU pool: lower --cpus, or raise cpu_count in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator.service";
    "E22" "InsufficientCpus" => "the enclave CPU pool has fewer free CPUs than --cpus: lower --cpus, stop another enclave, or raise cpu_count in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator.service";
    "E23" "MalformedCpuId" => "a CPU id is malformed: check cpu_pool in /etc/nitro_enclaves/allocator.yaml (a list like 2,3 or 2-5)";
    "E24" "CpuError" => "the enclave CPUs could not be set up: on hyper-threaded instances both threads of a core must go to the enclave, so ask for an even --cpus";
    "E25" "NoSuchHugepageFlag" => "the enclave memory cannot be made of the hugepage sizes this kernel offers: reserve 2 MiB or 1 GiB hugepages (the allocator does: check that nitro-enclaves-allocator.service is running)";
    "E26" "InsufficientMemoryRequested" => "--memory is too small for this EIF: nitro-cli needs about four times the EIF's size; raise --memory";
    "E27" "InsufficientMemoryAvailable" => "not enough enclave memory is reserved: raise memory_mib in /etc/nitro_enclaves/allocator.yaml and restart nitro-enclaves-allocator.service, stop another enclave, or lower --memory";
    "E28" "InvalidEnclaveFd" => "nitro-cli lost its enclave device handle: retry; if it persists, reload the nitro_enclaves driver or reboot the parent";
    "E29" "IoctlFailure" => "the nitro_enclaves driver refused a request: check `dmesg` for nitro_enclaves messages; the instance must have enclaves enabled";
    "E30" "IoctlImageLoadInfoFailure" => "the driver could not prepare the EIF's load: check the EIF with `enclave-ctl inspect` and the kernel log (`dmesg`)";
    "E31" "IoctlSetMemoryRegionFailure" => "the driver could not give the enclave its memory: the hugepages may be fragmented or taken; restart nitro-enclaves-allocator.service or reboot";
    "E32" "IoctlAddVcpuFailure" => "the driver could not give the enclave a CPU: check the CPU pool in /etc/nitro_enclaves/allocator.yaml and `dmesg`";
    "E33" "IoctlEnclaveStartFailure" => "the driver could not start the enclave: check `dmesg`; too little --memory for the EIF also ends here";
    "E34" "MemoryOverflow" => "the EIF does not fit the enclave memory: raise --memory (about four times the EIF's size)";
    "E35" "EifParsingError" => "nitro-cli could not load the EIF into enclave memory: inside a container this means hugepages are not mounted (request hugepages-2Mi and mount an emptyDir with medium HugePages at /dev/hugepages); otherwise check the EIF with `enclave-ctl inspect`";
    "E36" "EnclaveBootFailure" => "the enclave booted but sent no heartbeat: run it with --debug-mode and read `enclave-ctl console` (a Nitro EIF needs the nitro kernel profile)";
    "E37" "EnclaveEventWaitError" => "nitro-cli stopped waiting for the enclave's events: see `enclave-ctl logs`; the enclave may have exited";
    "E38" "EnclaveProcessCommandNotExecuted" => "an enclave process did not run a command: the enclave may be ending; check `nitro-cli describe-enclaves`";
    "E39" "EnclaveProcessConnectionFailure" => "nitro-cli could not reach an enclave process: a stale enclave may be left; list them with `nitro-cli describe-enclaves` and end them with `nitro-cli terminate-enclave --all`";
    "E40" "SocketPathNotFound" => "an enclave's socket is gone from /run/nitro_enclaves: the enclave ended or the directory was cleaned; end what is left with `nitro-cli terminate-enclave --all`";
    "E41" "EnclaveProcessSendReplyFailure" => "an enclave process could not answer nitro-cli: retry; the enclave may be ending";
    "E42" "EnclaveMmapError" => "the enclave memory could not be mapped: check free memory and hugepages (`grep Huge /proc/meminfo`)";
    "E43" "EnclaveMunmapError" => "the enclave memory could not be unmapped: the enclave's resources may be left held; restart nitro-enclaves-allocator.service";
    "E44" "EnclaveConsoleConnectionFailure" => "the enclave console is not available: only enclaves started with --debug-mode have one";
    "E45" "EnclaveConsoleReadError" => "reading the enclave console failed: the enclave may have ended; see `enclave-ctl ps -a`";
    "E46" "EnclaveConsoleWriteOutputError" => "the enclave console could not be written out: check the disk space of the state directory";
    "E47" "IntegerParsingError" => "nitro-cli could not parse a number: check --cpus, --memory and --cid";
    "E48" "EifBuildingError" => "nitro-cli could not build an EIF: enclave-ctl builds its own (`enclave-ctl build`), with no Docker";
    "E49" "DockerImageBuildError" => "nitro-cli's Docker build failed: enclave-ctl builds EIFs from OCI images without Docker (`enclave-ctl build --from oci:DIR`)";
    "E50" "DockerImagePullError" => "nitro-cli could not pull a Docker image: enclave-ctl takes local OCI images (`skopeo copy docker://… oci:DIR`, then `enclave-ctl build --from oci:DIR`)";
    "E51" "ArtifactsPathNotSet" => "NITRO_CLI_ARTIFACTS is not set: set it to a writable directory";
    "E52" "BlobsPathNotSet" => "NITRO_CLI_BLOBS is not set: install aws-nitro-enclaves-cli-devel (its blobs go to /usr/share/nitro_enclaves/blobs)";
    "E53" "ClockSkewError" => "the parent's clock is off: sync it (chrony or systemd-timesyncd) and retry";
    "E54" "SignalMaskingError" => "nitro-cli could not block signals: retry; if it persists, read the error log under /var/log/nitro_enclaves/";
    "E55" "SignalUnmaskingError" => "nitro-cli could not unblock signals: retry; if it persists, read the error log under /var/log/nitro_enclaves/";
    "E56" "LoggerError" => "nitro-cli cannot write its log: make /var/log/nitro_enclaves writable by the `ne` group";
    "E57" "HasherError" => "nitro-cli could not hash the EIF: check that the EIF is complete (`enclave-ctl inspect`)";
    "E58" "EnclaveNamingError" => "the enclave name is taken: choose another --name, or remove the old enclave";
    "E59" "EIFSignatureCheckerError" => "the EIF's signature does not check out: rebuild or re-sign it (`enclave-ctl sign`) and compare PCR8 with `enclave-ctl inspect`";
    "E60" "EIFSigningError" => "nitro-cli could not sign the EIF: sign it with `enclave-ctl sign EIF --signing-certificate CERT --private-key KEY`";
}

/// The entry of `code` (`E35`), if nitro-cli documents it.
pub fn lookup(code: &str) -> Option<&'static NitroErrorCode> {
    NITRO_ERROR_CODES.iter().find(|e| e.code == code)
}
