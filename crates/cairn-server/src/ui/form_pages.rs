//! The pages with generated forms, as askama templates: the workflows to start, a
//! workflow's start form, the pending hooks, and a hook's resume form.

use askama::Template;

use super::form_view::Row;

/// `/ui/workflows`.
#[derive(Template)]
#[template(path = "workflows.html")]
pub(crate) struct WorkflowsPage {
    /// Each workflow: slug, name, description.
    pub(crate) workflows: Vec<(String, String, String)>,
}

/// `/ui/workflows/{slug}/start`.
#[derive(Template)]
#[template(path = "start.html")]
pub(crate) struct StartPage {
    pub(crate) slug: String,
    pub(crate) name: String,
    pub(crate) description: String,
    /// The run it is filled from ("Start like this").
    pub(crate) like: Option<String>,
    pub(crate) rows: Vec<Row>,
    /// Errors no field owns: `(path, message)`.
    pub(crate) general: Vec<(String, String)>,
    pub(crate) csrf: String,
}

/// `/ui/hooks`.
#[derive(Template)]
#[template(path = "hooks.html")]
pub(crate) struct HooksPage {
    pub(crate) hooks: Vec<HookRow>,
}

/// One pending hook.
pub(crate) struct HookRow {
    pub(crate) run_id: String,
    pub(crate) step: String,
    /// The step, encoded for a query string.
    pub(crate) step_link: String,
    pub(crate) created_at: String,
    pub(crate) expires_at: String,
}

/// `/ui/runs/{id}/resume?step=`.
#[derive(Template)]
#[template(path = "resume.html")]
pub(crate) struct ResumePage {
    pub(crate) run_id: String,
    pub(crate) step: String,
    pub(crate) step_link: String,
    pub(crate) rows: Vec<Row>,
    pub(crate) general: Vec<(String, String)>,
    pub(crate) csrf: String,
}

/// `/ui/credentials`.
#[derive(Template)]
#[template(path = "credentials.html")]
pub(crate) struct CredentialsPage {
    pub(crate) credentials: Vec<CredentialRow>,
    /// The registered credential types, each with a form.
    pub(crate) types: Vec<CredentialType>,
    pub(crate) csrf: String,
    pub(crate) notice: Option<String>,
}

/// One stored credential (never a value).
pub(crate) struct CredentialRow {
    pub(crate) id: String,
    /// The id, encoded for a URL path.
    pub(crate) link: String,
    pub(crate) key: String,
    pub(crate) holder: String,
    pub(crate) is_default: bool,
    /// Its field names, comma-separated.
    pub(crate) fields: String,
    pub(crate) updated_at: String,
}

/// A registered credential type: its key and fields (name, secret, required).
pub(crate) struct CredentialType {
    pub(crate) key: String,
    pub(crate) fields: Vec<(String, bool, bool)>,
}
