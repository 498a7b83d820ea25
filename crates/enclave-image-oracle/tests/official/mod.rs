//! Builds with the official `aws-nitro-enclaves-image-format` crate (the oracle), from the same
//! inputs and metadata as enclave-image's own test helpers (`eif_common`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use aws_nitro_enclaves_image_format::defs::{EifBuildInfo, EifIdentityInfo};
use aws_nitro_enclaves_image_format::utils::{EifBuilder, SignKeyData};
use sha2::{Digest, Sha384};

use crate::eif_common::{metadata, Inputs, CMDLINE};

/// `eif_common::metadata()` as the official type.
pub fn identity_info() -> EifIdentityInfo {
    let m = metadata();
    EifIdentityInfo {
        img_name: m.image_name,
        img_version: m.image_version,
        build_info: EifBuildInfo {
            build_time: m.build.build_time,
            build_tool: m.build.build_tool,
            build_tool_version: m.build.build_tool_version,
            img_os: m.build.operating_system,
            img_kernel: m.build.kernel_version,
        },
        docker_info: m.docker_info,
        custom_info: m.custom,
    }
}

/// Builds with the official `EifBuilder` into `dir/name`; `sign` is `(key, cert)`.
pub fn build_official(
    dir: &Path,
    name: &str,
    inputs: &Inputs,
    sign: Option<(&Path, &Path)>,
) -> (PathBuf, BTreeMap<String, String>) {
    let input_dir = dir.join(format!("{name}.inputs"));
    std::fs::create_dir_all(&input_dir).expect("input dir");
    let kernel = input_dir.join("kernel");
    std::fs::write(&kernel, &inputs.kernel).expect("kernel");
    let sign_info = sign.map(|(key, cert)| {
        SignKeyData::new(key.to_str().expect("utf-8 path"), cert).expect("sign key data")
    });
    let mut builder = EifBuilder::new(
        &kernel,
        CMDLINE.to_string(),
        sign_info,
        Sha384::new(),
        0,
        identity_info(),
    );
    for (i, rd) in inputs.ramdisks.iter().enumerate() {
        let p = input_dir.join(format!("ramdisk{i}"));
        std::fs::write(&p, rd).expect("ramdisk");
        builder.add_ramdisk(&p);
    }
    let path = dir.join(name);
    let mut out = File::create(&path).expect("create output");
    let measurements = builder.write_to(&mut out);
    (path, measurements)
}
