//! On whose behalf a run executes ([`Owner`]: an organization, a project in it and,
//! optionally, a user), the [`Scope`]s a credential can be set at, and the record of which
//! credential a step used ([`UsedCredential`]: its id and scope, never a value).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The organization and project a run belongs to when its start names none.
pub const DEFAULT_OWNER_NAME: &str = "default";

/// On whose behalf a run executes, set when it starts; child runs inherit it. Credentials
/// are looked up for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// The organization (`default` unless given).
    pub org: String,
    /// The project, in the organization (`default` unless given).
    pub project: String,
    /// The user it runs for, if any: user-scoped credentials are theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Default for Owner {
    fn default() -> Self {
        Owner {
            org: DEFAULT_OWNER_NAME.to_owned(),
            project: DEFAULT_OWNER_NAME.to_owned(),
            user: None,
        }
    }
}

impl Owner {
    /// Whether it is the default owner (organization and project `default`, no user).
    pub fn is_default(&self) -> bool {
        self.org == DEFAULT_OWNER_NAME && self.project == DEFAULT_OWNER_NAME && self.user.is_none()
    }

    /// Who holds credentials of this owner at `scope`: the organization alone, the project in
    /// it, or the user in it (`None` for [`Scope::User`] when the run has no user).
    pub fn holder(&self, scope: Scope) -> Option<Holder> {
        let (project, user) = match scope {
            Scope::Organization => (None, None),
            Scope::Project => (Some(self.project.clone()), None),
            Scope::User => (None, Some(self.user.clone()?)),
        };
        Some(Holder {
            scope,
            org: self.org.clone(),
            project,
            user,
        })
    }
}

/// Who a credential belongs to, and so which runs may use it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A person's own account (connected with OAuth, or set by them): runs started for
    /// that user.
    User,
    /// Shared by a project's runs.
    Project,
    /// Shared by every project of an organization.
    Organization,
}

impl Scope {
    /// Every scope, narrowest first.
    pub const ALL: [Scope; 3] = [Scope::User, Scope::Project, Scope::Organization];

    /// Its name (`user`, `project`, `organization`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::User => "user",
            Scope::Project => "project",
            Scope::Organization => "organization",
        }
    }

    /// The scope named `name` (`user`, `project`, `organization` or `org`).
    pub fn parse(name: &str) -> Option<Scope> {
        match name {
            "user" => Some(Scope::User),
            "project" => Some(Scope::Project),
            "organization" | "org" => Some(Scope::Organization),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The holder of a credential: a scope and who at that scope (an organization; a project or
/// a user in it).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// The scope.
    pub scope: Scope,
    /// The organization.
    pub org: String,
    /// The project, for project-scoped credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The user, for user-scoped credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.scope, &self.project, &self.user) {
            (Scope::Project, Some(project), _) => {
                write!(f, "project {project:?} of organization {:?}", self.org)
            }
            (Scope::User, _, Some(user)) => {
                write!(f, "user {user:?} of organization {:?}", self.org)
            }
            _ => write!(f, "organization {:?}", self.org),
        }
    }
}

/// Which credential an attempt of a step used: recorded on its `StepStarted`, shown by
/// inspection. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedCredential {
    /// The credential type (`slack`).
    pub key: String,
    /// The credential's id.
    pub id: String,
    /// The scope it resolved at.
    pub scope: Scope,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_follow_the_scope() {
        let owner = Owner {
            org: "acme".into(),
            project: "web".into(),
            user: Some("ada".into()),
        };
        let project = owner.holder(Scope::Project).unwrap();
        assert_eq!(
            (project.project.as_deref(), project.user.as_deref()),
            (Some("web"), None)
        );
        assert_eq!(
            owner.holder(Scope::User).unwrap().to_string(),
            "user \"ada\" of organization \"acme\""
        );
        let org = owner.holder(Scope::Organization).unwrap();
        assert_eq!((org.project, org.user), (None, None));
        assert_eq!(
            Owner::default().holder(Scope::User),
            None,
            "no user, no user scope"
        );
        assert!(Owner::default().is_default() && !owner.is_default());
    }

    #[test]
    fn scopes_are_named_narrowest_first() {
        let names: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
        assert_eq!(names, ["user", "project", "organization"]);
        assert_eq!(Scope::parse("org"), Some(Scope::Organization));
        assert_eq!(Scope::parse("team"), None);
        assert_eq!(
            serde_json::to_string(&Scope::Organization).unwrap(),
            "\"organization\""
        );
    }
}
