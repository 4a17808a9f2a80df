//! `/ui/credentials` over real HTTP, checked in the store: a credential saved through its
//! type's write-only form (the value never in a page), made default, deleted; a form missing
//! a required field or the CSRF token saves nothing.

mod support;

use cairn_store::CredentialFilter;
use reqwest::StatusCode;
use support::{
    TestServer, start,
    ui::{csrf, page, submit},
};

const SECRET: &str = "xoxb-UI-form-secret-9931";

async fn stored(server: &TestServer) -> Vec<cairn_engine::CredentialView> {
    server
        .engine
        .list_credentials(&CredentialFilter::default())
        .await
        .expect("credentials")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_is_set_made_default_and_deleted_through_forms() {
    let server = start().await;
    let path = "/ui/credentials";
    let (status, shown) = page(&server, path, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        shown.contains(r#"name="field.token" type="password""#),
        "the chat type's secret field is a password input: {shown}"
    );
    let (cookie, token) = csrf(&server, path).await;
    let base = [
        ("csrf", token.as_str()),
        ("key", "chat"),
        ("scope", "project"),
        ("project", "web"),
    ];
    let (status, _) = submit(&server, path, &cookie, &base).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "no field given");
    let unsigned = [("key", "chat"), ("field.token", SECRET)];
    let (status, _) = submit(&server, path, &cookie, &unsigned).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    assert!(stored(&server).await.is_empty(), "nothing was saved");

    let full = [&base[..], &[("field.token", SECRET)]].concat();
    let (status, location) = submit(&server, path, &cookie, &full).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let saved = stored(&server).await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].holder.project.as_deref(), Some("web"));
    assert!(saved[0].is_default, "a holder's first is its default");
    let (_, listed) = page(&server, &location.expect("back to the list"), &cookie).await;
    assert!(
        listed.contains(&saved[0].id) && listed.contains("Saved"),
        "{listed}"
    );
    assert!(!listed.contains(SECRET), "never a value in a page");

    let (status, _) = submit(&server, path, &cookie, &full).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a second one of the holder");
    let second = stored(&server)
        .await
        .into_iter()
        .find(|credential| !credential.is_default)
        .expect("the second is not the default");
    let (status, _) = submit(
        &server,
        &format!("{path}/{}/default", second.id),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let now_default = stored(&server).await;
    assert!(
        now_default
            .iter()
            .any(|c| c.id == second.id && c.is_default),
        "{now_default:?}"
    );
    let (status, _) = submit(
        &server,
        &format!("{path}/{}/delete", second.id),
        &cookie,
        &[("csrf", &token), ("confirm", "yes")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(stored(&server).await.len(), 1, "deleted");
    let (status, _) = submit(
        &server,
        &format!("{path}/{}/delete", second.id),
        &cookie,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted already");
}
