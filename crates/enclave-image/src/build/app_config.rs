//! The application configuration: the image config with the spec's overrides applied, using
//! Docker's rules, so an image behaves in an enclave as it does under `docker run`.

use enclave_proto::app::{AppConfig, APP_CONFIG_VERSION};
use enclave_spec::EnclaveSpec;

use crate::source::ImageConfig;

/// Merges the image config and the spec; `None` when nothing would be run.
///
/// - `entrypoint` in the spec replaces the image's and, as `docker run --entrypoint` does,
///   drops the image's `Cmd` unless the spec gives a `cmd` too.
/// - `env` entries replace image entries with the same name in place; new ones are appended.
/// - `workdir` defaults to `/`; `user` to root.
pub fn merge(image: &ImageConfig, spec: &EnclaveSpec) -> Option<AppConfig> {
    let entrypoint = spec
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&spec.entrypoint, &spec.cmd) {
        (_, Some(cmd)) => cmd.clone(),
        (Some(_), None) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    if entrypoint.is_empty() && cmd.is_empty() {
        return None;
    }
    let mut env = image.env.clone();
    for (key, value) in &spec.env {
        let entry = format!("{key}={value}");
        let prefix = format!("{key}=");
        match env.iter_mut().find(|e| e.starts_with(&prefix) || *e == key) {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
    Some(AppConfig {
        version: APP_CONFIG_VERSION,
        entrypoint,
        cmd,
        env,
        working_dir: spec
            .workdir
            .clone()
            .or_else(|| image.working_dir.clone())
            .unwrap_or_else(|| "/".into()),
        user: spec
            .user
            .clone()
            .or_else(|| image.user.clone())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(vec!["/bin/app".into()]),
            cmd: Some(vec!["--serve".into()]),
            env: vec!["PATH=/bin".into(), "MODE=prod".into()],
            working_dir: Some("/srv".into()),
            user: Some("app".into()),
        }
    }

    #[test]
    fn image_config_is_used_as_is_without_overrides() {
        let app = merge(&image(), &EnclaveSpec::default()).unwrap();
        assert_eq!(app.argv(), ["/bin/app", "--serve"]);
        assert_eq!(app.working_dir, "/srv");
        assert_eq!(app.user, "app");
        assert_eq!(app.env, ["PATH=/bin", "MODE=prod"]);
    }

    #[test]
    fn spec_overrides_follow_docker_rules() {
        let mut spec = EnclaveSpec {
            entrypoint: Some(vec!["/bin/sh".into()]),
            workdir: Some("/app".into()),
            ..Default::default()
        };
        spec.env.insert("MODE".into(), "debug".into());
        spec.env.insert("NEW".into(), "1".into());
        let app = merge(&image(), &spec).unwrap();
        // A new entrypoint drops the image's Cmd.
        assert_eq!(app.argv(), ["/bin/sh"]);
        assert_eq!(app.env, ["PATH=/bin", "MODE=debug", "NEW=1"]);
        assert_eq!(app.working_dir, "/app");

        spec.cmd = Some(vec!["-c".into(), "echo hi".into()]);
        assert_eq!(
            merge(&image(), &spec).unwrap().argv(),
            ["/bin/sh", "-c", "echo hi"]
        );
    }

    #[test]
    fn nothing_to_run_is_none() {
        assert!(merge(&ImageConfig::default(), &EnclaveSpec::default()).is_none());
        let app = merge(
            &ImageConfig::default(),
            &EnclaveSpec {
                cmd: Some(vec!["/bin/true".into()]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(app.working_dir, "/");
        assert_eq!(app.user, "");
    }
}
