//! The served OpenAPI document and the checks of real responses against it, for the tests
//! of every route.

use std::sync::Arc;

use reqwest::{Response, StatusCode, header};
use serde_json::Value;

use super::TestServer;

/// The served document and the checks made against it.
pub struct Spec {
    /// The document.
    pub doc: Arc<Value>,
}

impl Spec {
    /// Fetches the document `server` serves (checked against itself).
    pub async fn of(server: &TestServer) -> Spec {
        let response = server.get("/openapi.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        let doc: Value = response.json().await.expect("the document is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let spec = Spec { doc: Arc::new(doc) };
        spec.check_body(
            "/openapi.json",
            "get",
            200,
            "application/json",
            &spec.doc.clone(),
        );
        spec
    }

    /// Checks `response` to `method template` and returns its body (JSON, or the text).
    pub async fn check(&self, template: &str, method: &str, response: Response) -> Value {
        let status = response.status().as_u16();
        if (300..400).contains(&status) {
            let documented = &self.doc["paths"][template][method]["responses"][status.to_string()];
            assert!(
                documented["headers"]["Location"].is_object(),
                "{method} {template} answered {status}, undocumented or without its Location"
            );
            assert!(
                response.headers().contains_key(header::LOCATION),
                "a redirect has a Location"
            );
            return Value::Null;
        }
        if status == 204 {
            let documented = &self.doc["paths"][template][method]["responses"]["204"];
            assert!(
                documented.is_object(),
                "{method} {template} answered 204, undocumented"
            );
            assert!(
                documented.get("content").is_none(),
                "a documented 204 has no body"
            );
            assert_eq!(
                response.text().await.expect("a body"),
                "",
                "a 204 has no body"
            );
            return Value::Null;
        }
        let media = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| {
                value
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default();
        let text = response.text().await.expect("a body");
        let body = if media.ends_with("json") {
            serde_json::from_str(&text).unwrap_or_else(|err| {
                panic!("{method} {template} → {status}: {media} that is not JSON ({err}): {text}")
            })
        } else {
            Value::String(text)
        };
        self.check_body(template, method, status, &media, &body);
        body
    }

    /// The status must be documented for the operation (explicitly: `default` covers only
    /// server failures), with `media`, and `body` must match its schema.
    pub fn check_body(&self, template: &str, method: &str, status: u16, media: &str, body: &Value) {
        let operation = &self.doc["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        let response = &operation["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not list"
        );
        let schema = &response["content"][media]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} answered {status} as {media:?}, which the document does not list \
             (it lists {:?})",
            response["content"]
                .as_object()
                .map(|content| content.keys().collect::<Vec<_>>())
        );
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .unwrap_or_else(|err| panic!("the schema of {method} {template} {status}: {err}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|err| format!("{} at {}", err, err.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {template} → {status}: the body breaks the document: {errors:#?}\nbody: {body:#}"
        );
    }

    /// The schema `reference` points at.
    pub fn resolve(&self, reference: &Value) -> &Value {
        let pointer = reference["$ref"]
            .as_str()
            .and_then(|target| target.strip_prefix('#'))
            .unwrap_or_else(|| panic!("{reference} is not a local $ref"));
        self.doc.pointer(pointer).expect("the $ref resolves")
    }
}
