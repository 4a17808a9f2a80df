//! `cairn::testing` with credentials: a step whose action needs one fails with
//! `MissingCredentials` until the test sets one; the owner's user scope works; a mocked
//! action needs none.

use std::sync::LazyLock;

use cairn::{
    Action, ActionCtx, Credential, ErrorKind, Field, Owner, Scope, Workflow, WorkflowCtx,
    testing::{Outcome, TestEnv},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
struct Text {
    text: String,
}

static CHAT: LazyLock<Credential> =
    LazyLock::new(|| Credential::new("chat").field("token", Field::secret()));

/// Says how long its token is and at which scope it resolved.
static POST: LazyLock<Action<Text, Text>> = LazyLock::new(|| {
    Action::new("post")
        .credential(&CHAT)
        .run(|input: Text, ctx: ActionCtx| async move {
            let chat = ctx.credential(&CHAT)?;
            let length = chat.field("token")?.expose().len();
            Ok(Text {
                text: format!("{} ({length} at {})", input.text, chat.scope()),
            })
        })
});

static AS_USER: LazyLock<Workflow<Text, Text>> = LazyLock::new(|| {
    Workflow::new("as-user").run(|input: Text, _ctx: WorkflowCtx| async move {
        Ok(POST.run(input).scope(Scope::User).await?)
    })
});

fn ada() -> Owner {
    Owner {
        user: Some("ada".into()),
        ..Owner::default()
    }
}

fn hello() -> Text {
    Text {
        text: "hello".into(),
    }
}

#[tokio::test]
async fn a_step_gets_the_credential_the_test_sets() {
    let env = TestEnv::new().owner(ada());
    let Outcome::Failed { error } = env.execute_workflow(&AS_USER, hello()).await else {
        panic!("no credential: the step fails");
    };
    assert_eq!(
        error.kind,
        ErrorKind::MissingCredentials,
        "{}",
        error.message
    );

    env.credential(&CHAT, Scope::Organization, &[("token", "org")])
        .await;
    let Outcome::Failed { error } = env.execute_workflow(&AS_USER, hello()).await else {
        panic!("pinned to the user: the organization's does not count");
    };
    assert_eq!(error.kind, ErrorKind::MissingCredentials);

    env.credential(&CHAT, Scope::User, &[("token", "users-token")])
        .await;
    let done = env.execute_workflow(&AS_USER, hello()).await.completed();
    assert_eq!(done.expect("completed").text, "hello (11 at user)");
}

#[tokio::test]
async fn a_mocked_action_needs_no_credential() {
    let env = TestEnv::new().mock(&POST, |input: Text| Ok(input));
    let done = env.execute_workflow(&AS_USER, hello()).await.completed();
    assert_eq!(done, Some(hello()));
}
