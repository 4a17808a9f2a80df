//! Layer 5, the registry: which workflows and actions a binary offers, by slug, and the
//! resources its actions share. Uses layers 1 to 4.

use std::{collections::BTreeMap, sync::Arc};

use cairn_triggers::Schedule;
use serde_json::Value;

use crate::{
    base::{
        credential::Credential,
        error::EngineError,
        info::{ActionInfo, WorkflowInfo},
        resources::Resources,
        schema::Payload,
    },
    run::body::ErasedWorkflow,
    steps::{action::Action, poll::Poll, webhook::Webhook, workflow::Workflow},
};

/// The workflows (and, for listings and tools, actions) a binary registers, and the
/// resources its actions use. A worker only claims runs of the workflows its registry has.
///
/// A definition that cannot be used (a bad slug, two different definitions under one slug)
/// is reported by [`check`](Registry::check), which building an engine calls: the mistake
/// shows when the binary starts, not at the first run.
#[derive(Clone, Default)]
pub struct Registry {
    workflows: BTreeMap<String, Arc<dyn ErasedWorkflow>>,
    actions: BTreeMap<String, ActionInfo>,
    /// The credential types the registered actions need (or registered alone), by key.
    credentials: BTreeMap<String, Credential>,
    pub(crate) resources: Resources,
    /// The schedules declared in code, by id: saved when a worker starts.
    schedules: BTreeMap<String, DeclaredSchedule>,
    /// The webhook sources, by endpoint.
    webhooks: BTreeMap<String, Webhook>,
    /// The poll sources, by name.
    polls: BTreeMap<String, Poll>,
    problems: Vec<String>,
}

/// A schedule declared with [`Registry::schedule`]: when, and which workflow with which input.
#[derive(Clone, Debug)]
pub(crate) struct DeclaredSchedule {
    pub(crate) schedule: Schedule,
    pub(crate) workflow: String,
    pub(crate) input: Value,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a workflow.
    pub fn workflow<I: Payload, O: Payload>(self, workflow: &Workflow<I, O>) -> Self {
        self.add_workflow(workflow.slug(), workflow.invalid(), workflow.erased())
    }

    fn add_workflow(
        mut self,
        slug: &str,
        invalid: Option<&str>,
        erased: Arc<dyn ErasedWorkflow>,
    ) -> Self {
        if let Some(invalid) = invalid {
            self.problems.push(invalid.to_owned());
            return self;
        }
        if let Some(existing) = self.workflows.get(slug)
            && !Arc::ptr_eq(existing, &erased)
        {
            self.problems.push(format!(
                "two different workflows are registered with the slug {slug:?}; give each its own slug"
            ));
            return self;
        }
        self.workflows.insert(slug.to_owned(), erased);
        self
    }

    /// Registers an action (for `workflows list` and tool use; workflows call actions directly).
    pub fn action<I: Payload, O: Payload>(mut self, action: &Action<I, O>) -> Self {
        if let Some(invalid) = &action.inner.invalid {
            self.problems.push(invalid.clone());
            return self;
        }
        if let Some(existing) = self.actions.get(action.slug())
            && existing != action.info()
        {
            self.problems.push(format!(
                "two different actions are registered with the slug {:?}; give each its own slug",
                action.slug()
            ));
            return self;
        }
        self.actions
            .insert(action.slug().to_owned(), action.info().clone());
        for need in action.inner.needs.iter() {
            self = self.credential(&need.credential);
        }
        self
    }

    /// Registers a credential type, so `credentials set` knows its fields. The types that
    /// registered actions need are registered with them.
    pub fn credential(mut self, credential: &Credential) -> Self {
        if let Some(existing) = self.credentials.get(credential.key())
            && existing != credential
        {
            self.problems.push(format!(
                "two different credential types are declared with the key {:?}; give each its own key",
                credential.key()
            ));
            return self;
        }
        if let Some(problem) = credential
            .oauth_settings()
            .and_then(|oauth| oauth.problem(credential))
        {
            self.problems.push(problem);
            return self;
        }
        self.credentials
            .insert(credential.key().to_owned(), credential.clone());
        self
    }

    /// Declares a cron schedule that starts `workflow` (registered with it) with `input` at
    /// each fire time. Workers save it by id when they start (an edited declaration updates
    /// the stored schedule without firing at once) and any worker fires it when due, once
    /// per fire time, applying its overlap policy (`Overlap`) while a run it started has not
    /// ended.
    pub fn schedule<I: Payload, O: Payload>(
        mut self,
        schedule: Schedule,
        workflow: &Workflow<I, O>,
        input: I,
    ) -> Self {
        self = self.workflow(workflow);
        let id = schedule.id().to_owned();
        let input = match serde_json::to_value(&input) {
            Ok(input) => input,
            Err(error) => {
                self.problems.push(format!(
                    "the input of schedule {id:?} does not serialize: {error}"
                ));
                return self;
            }
        };
        if let Err(violations) = workflow.erased().input_schema().validate(&input) {
            self.problems.push(format!(
                "the input of schedule {id:?} does not match workflow {:?}: {violations}",
                workflow.slug()
            ));
            return self;
        }
        if self.schedules.contains_key(&id) {
            self.problems.push(format!(
                "two schedules are declared with the id {id:?}; give each its own id"
            ));
            return self;
        }
        let declared = DeclaredSchedule {
            schedule,
            workflow: workflow.slug().to_owned(),
            input,
        };
        self.schedules.insert(id, declared);
        self
    }

    /// Registers a webhook source (`POST /triggers/{endpoint}`) with its workflow and the
    /// credential type of its signing secrets.
    pub fn webhook(mut self, webhook: Webhook) -> Self {
        self = self.add_workflow(
            &webhook.slug,
            webhook.invalid.as_deref(),
            webhook.workflow.clone(),
        );
        if let Some(verifier) = &webhook.verifier {
            self = self.credential(&verifier.credential);
        }
        if let Some(problem) = &webhook.problem {
            self.problems.push(problem.clone());
        } else if self.webhooks.contains_key(&webhook.endpoint) {
            self.problems.push(format!(
                "two webhook sources are declared with the endpoint {:?}; give each its own",
                webhook.endpoint
            ));
        } else {
            self.webhooks.insert(webhook.endpoint.clone(), webhook);
        }
        self
    }

    /// Registers a poll source with its workflow and the credential types its poll function
    /// reads. Workers save it by name when they start and any worker polls it when due.
    pub fn poll(mut self, poll: Poll) -> Self {
        self = self.add_workflow(&poll.slug, poll.invalid.as_deref(), poll.workflow.clone());
        for credential in &poll.credentials {
            self = self.credential(credential);
        }
        if let Some(problem) = &poll.problem {
            self.problems.push(problem.clone());
        } else if self.polls.contains_key(&poll.name) {
            self.problems.push(format!(
                "two poll sources are declared with the name {:?}; give each its own",
                poll.name
            ));
        } else {
            self.polls.insert(poll.name.clone(), poll);
        }
        self
    }

    /// The poll source named `name`.
    pub(crate) fn poll_source(&self, name: &str) -> Option<&Poll> {
        self.polls.get(name)
    }

    /// The poll sources registered.
    pub(crate) fn poll_sources(&self) -> impl Iterator<Item = &Poll> {
        self.polls.values()
    }

    /// The webhook source of `endpoint`.
    pub(crate) fn webhook_at(&self, endpoint: &str) -> Option<&Webhook> {
        self.webhooks.get(endpoint)
    }

    /// The webhook endpoints registered.
    pub fn webhook_endpoints(&self) -> impl Iterator<Item = &str> {
        self.webhooks.keys().map(String::as_str)
    }

    /// Each webhook endpoint with the slug of the workflow its deliveries start.
    pub fn webhook_workflows(&self) -> impl Iterator<Item = (&str, &str)> {
        self.webhooks
            .iter()
            .map(|(endpoint, webhook)| (endpoint.as_str(), webhook.slug.as_str()))
    }

    pub(crate) fn declared_schedules(&self) -> impl Iterator<Item = &DeclaredSchedule> {
        self.schedules.values()
    }

    /// The credential types registered, by key.
    pub fn credentials(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.values()
    }

    /// Shares `value` with every action: an action reads it with
    /// [`ActionCtx::resource`](crate::ActionCtx::resource). One value per type; a second
    /// value of the same type replaces the first.
    pub fn resource<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.resources.insert(value);
        self
    }

    /// `Ok` if every registered definition can be used; else what is wrong with them.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.problems.is_empty() {
            return Ok(());
        }
        Err(EngineError::Registry(self.problems.join("; ")))
    }

    /// The registered workflows, by slug.
    pub fn workflows(&self) -> impl Iterator<Item = &WorkflowInfo> {
        self.workflows.values().map(|workflow| workflow.info())
    }

    /// The registered actions, by slug.
    pub fn actions(&self) -> impl Iterator<Item = &ActionInfo> {
        self.actions.values()
    }

    pub(crate) fn get(&self, slug: &str) -> Option<&Arc<dyn ErasedWorkflow>> {
        self.workflows.get(slug)
    }

    pub(crate) fn slugs(&self) -> Vec<String> {
        self.workflows.keys().cloned().collect()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("workflows", &self.workflows.keys().collect::<Vec<_>>())
            .field("actions", &self.actions.keys().collect::<Vec<_>>())
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("resources", &self.resources)
            .field("schedules", &self.schedules.keys().collect::<Vec<_>>())
            .field("webhooks", &self.webhooks.keys().collect::<Vec<_>>())
            .field("polls", &self.polls.keys().collect::<Vec<_>>())
            .finish()
    }
}
