//! Bad input to the engine API, while the enclave `d` runs: unknown fields, routes, methods,
//! enclaves, images and query values each get a 4xx with a code, never a 5xx.

use serde_json::json;

use super::Client;

pub fn answers_4xx_with_a_code(c: &Client) {
    for (method, path, route, body, want, code_word) in [
        (
            "POST",
            "/v1/enclaves",
            "/v1/enclaves",
            Some(json!({"eif": "/x", "evil": 1})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/enclaves",
            "/v1/enclaves",
            Some(json!({"eif": "/no/such.eif"})),
            404,
            "no_such_eif",
        ),
        (
            "GET",
            "/v1/enclaves?status=zombie",
            "/v1/enclaves",
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/enclaves/nope",
            "/v1/enclaves/{enclave}",
            None,
            404,
            "no_such_enclave",
        ),
        (
            "DELETE",
            "/v1/enclaves/d",
            "/v1/enclaves/{enclave}",
            None,
            409,
            "running",
        ),
        (
            "POST",
            "/v1/enclaves/d/stop?timeout=soon",
            "/v1/enclaves/{enclave}/stop",
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/images",
            "/v1/images",
            Some(json!({"spec": "enclave.yaml"})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/images/measure",
            "/v1/images/measure",
            Some(json!({"eif": "/no/such.eif"})),
            404,
            "no_such_eif",
        ),
        (
            "GET",
            "/v1/images/ffff",
            "/v1/images/{image}",
            None,
            404,
            "no_such_image",
        ),
        (
            "POST",
            "/v1/enclaves/nope/kill",
            "/v1/enclaves/{enclave}/kill",
            None,
            404,
            "no_such_enclave",
        ),
        (
            "POST",
            "/v1/enclaves/nope/start",
            "/v1/enclaves/{enclave}/start",
            None,
            404,
            "no_such_enclave",
        ),
        (
            "POST",
            "/v1/enclaves/d/restart?timeout=soon",
            "/v1/enclaves/{enclave}/restart",
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/enclaves/d/control",
            "/v1/enclaves/{enclave}/control",
            None,
            426,
            "upgrade_required",
        ),
        (
            "GET",
            "/v1/events?type=pause",
            "/v1/events",
            None,
            400,
            "bad_request",
        ),
    ] {
        let (code, err) = c.json(method, path, route, body.as_ref());
        assert_eq!(
            (code, err["code"].as_str()),
            (want, Some(code_word)),
            "{method} {path}: {err}"
        );
    }
    let (code, err) = c.json("PUT", "/v1/enclaves", "-", None);
    assert_eq!(
        (code, err["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    let (code, err) = c.json("GET", "/v2/enclaves", "-", None);
    assert_eq!((code, err["code"].as_str()), (404, Some("not_found")));
}
