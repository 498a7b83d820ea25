use super::*;

fn write(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

fn profile_dir(dir: &Path) {
    write(dir, "bzImage", "kernel");
    write(
        dir,
        "bzImage.config",
        "#\n# Automatically generated file; DO NOT EDIT.\n# Linux/x86 6.1.172 Kernel Configuration\n#\n",
    );
    write(dir, "cmdline", "console=ttyS0 pci=off\n");
}

#[test]
fn emulated_profile_reads_modules_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    profile_dir(tmp.path());
    write(tmp.path(), "modules/order", "b\na\n");
    write(tmp.path(), "modules/a.ko", "A");
    write(tmp.path(), "modules/b.ko", "B");
    let k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    assert_eq!(k.version, "6.1.172");
    assert_eq!(k.cmdline, "console=ttyS0 pci=off");
    let names: Vec<_> = k.modules.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["b.ko", "a.ko"]);
    assert_eq!(k.kernel.size, 6);
}

#[test]
fn nitro_profile_needs_nsm_ko() {
    let tmp = tempfile::tempdir().unwrap();
    profile_dir(tmp.path());
    let err = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("nsm.ko"), "{err}");
    write(tmp.path(), "nsm.ko", "nsm");
    let k = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap();
    assert_eq!(k.modules[0].name, "nsm.ko");
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    profile_dir(tmp.path());
    write(tmp.path(), "bzImage.config", "no header\n");
    let err = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("Kernel Configuration"), "{err}");
    profile_dir(tmp.path());
    write(tmp.path(), "modules/order", "../evil\n");
    let err = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap_err();
    assert!(err.to_string().contains("not a plain name"), "{err}");
}

#[test]
fn sha256_matches_known_value() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "f", "abc");
    let (size, digest) = sha256_file(&tmp.path().join("f")).unwrap();
    assert_eq!(size, 3);
    assert_eq!(
        digest,
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// A kernel directory whose config has `options` after its header, with modules `a` (always),
/// `nf` (the nftables list) and `xt` (the xtables list).
fn netfilter_dir(options: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in [
        "bzImage",
        "cmdline",
        "modules/a.ko",
        "modules/nf.ko",
        "modules/xt.ko",
    ] {
        write(tmp.path(), f, "x");
    }
    write(tmp.path(), "modules/order", "a\n");
    write(tmp.path(), "modules/netfilter", "nf\n");
    write(tmp.path(), "modules/xtables", "xt\n");
    let header = "#\n# Linux/x86 6.1.172 Kernel Configuration\n";
    write(tmp.path(), "bzImage.config", &format!("{header}{options}"));
    tmp
}

fn module_names(k: &KernelInputs) -> Vec<&str> {
    k.modules.iter().map(|m| m.name.as_str()).collect()
}

const NFT: &str = "CONFIG_NF_TABLES=m\nCONFIG_NF_NAT=m\nCONFIG_NFT_NAT=m\nCONFIG_NFT_REDIR=m\n";
const XT: &str =
    "CONFIG_NETFILTER_XTABLES=m\nCONFIG_IP_NF_IPTABLES=m\nCONFIG_NF_NAT=m\nCONFIG_IP_NF_NAT=m\n\
                  CONFIG_NETFILTER_XT_TARGET_REDIRECT=m\n";

#[test]
fn nftables_is_chosen_when_the_kernel_has_it() {
    let tmp = netfilter_dir(&format!("{NFT}{XT}"));
    let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    assert_eq!(k.add_netfilter().unwrap(), Netfilter::Nftables);
    assert_eq!(module_names(&k), ["a.ko", "nf.ko"]);
    assert_eq!(k.netfilter, Some(Netfilter::Nftables));
}

#[test]
fn xtables_is_chosen_without_nf_tables_and_loads_only_its_modules() {
    let without = NFT.replace("CONFIG_NF_TABLES=m", "# CONFIG_NF_TABLES is not set");
    let tmp = netfilter_dir(&format!("{without}{XT}"));
    let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    assert_eq!(k.add_netfilter().unwrap(), Netfilter::Xtables);
    assert_eq!(module_names(&k), ["a.ko", "xt.ko"]);
    // The older spelling of the REDIRECT option does as well.
    let old = XT.replace("NETFILTER_XT_TARGET_REDIRECT", "IP_NF_TARGET_REDIRECT");
    let tmp = netfilter_dir(&format!("{without}{old}"));
    let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    assert_eq!(k.add_netfilter().unwrap(), Netfilter::Xtables);
}

#[test]
fn built_in_netfilter_needs_no_module_list() {
    let tmp = netfilter_dir(&XT.replace("=m", "=y"));
    std::fs::remove_file(tmp.path().join("modules/xtables")).unwrap();
    let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    assert_eq!(k.add_netfilter().unwrap(), Netfilter::Xtables);
    assert_eq!(module_names(&k), ["a.ko"]);
}

#[test]
fn a_kernel_with_neither_backend_is_refused_naming_both() {
    let tmp = netfilter_dir(&XT.replace("CONFIG_IP_NF_NAT=m", "# CONFIG_IP_NF_NAT is not set"));
    let mut k = KernelInputs::load(KernelProfile::Emulated, tmp.path()).unwrap();
    let err = k.add_netfilter().unwrap_err().to_string();
    assert!(
        err.contains("CONFIG_NF_TABLES is not set for nf_tables"),
        "{err}"
    );
    assert!(
        err.contains("CONFIG_IP_NF_NAT is not set for iptables"),
        "{err}"
    );
    assert!(err.contains("egress.mode: named"), "{err}");
    assert_eq!(k.netfilter, None);
    assert_eq!(module_names(&k), ["a.ko"]);
}

#[test]
fn nitro_blob_config_selects_built_in_xtables() {
    // nitro-cli 1.5.0's enclave kernel (4.14): iptables NAT and REDIRECT built in, no nf_tables.
    let config = include_str!("../tests/fixtures/nitro-blobs/bzImage.config");
    assert!(config.contains("# CONFIG_NF_TABLES is not set"));
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "bzImage", "kernel");
    write(tmp.path(), "cmdline", "console=ttyS0\n");
    write(tmp.path(), "nsm.ko", "nsm");
    write(tmp.path(), "bzImage.config", config);
    let mut k = KernelInputs::load(KernelProfile::Nitro, tmp.path()).unwrap();
    assert_eq!(k.version, "4.14.256-209.484.amzn2.x86_64");
    assert_eq!(k.add_netfilter().unwrap(), Netfilter::Xtables);
    // Everything is built in: no module list is read, only nsm.ko is loaded.
    assert_eq!(module_names(&k), ["nsm.ko"]);
}
