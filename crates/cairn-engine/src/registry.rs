//! The registry: which workflows and actions a binary offers, by slug.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    action::{Action, ActionInfo, Payload},
    workflow::{ErasedWorkflow, Workflow, WorkflowInfo},
};

/// The workflows (and, for listings and tools, actions) a binary registers. A worker only
/// claims runs of the workflows its registry has.
#[derive(Clone, Default)]
pub struct Registry {
    workflows: BTreeMap<String, Arc<dyn ErasedWorkflow>>,
    actions: BTreeMap<String, ActionInfo>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a workflow.
    ///
    /// # Panics
    /// If a different workflow with the same slug is registered already.
    pub fn workflow<I: Payload, O: Payload>(mut self, workflow: &Workflow<I, O>) -> Self {
        let erased = workflow.erased();
        if let Some(existing) = self.workflows.get(workflow.slug()) {
            assert!(
                Arc::ptr_eq(existing, &erased),
                "two different workflows are registered with the slug {:?}",
                workflow.slug()
            );
        }
        self.workflows.insert(workflow.slug().to_owned(), erased);
        self
    }

    /// Registers an action (for `workflows list` and tool use; workflows call actions directly).
    ///
    /// # Panics
    /// If a different action with the same slug is registered already.
    pub fn action<I: Payload, O: Payload>(mut self, action: &Action<I, O>) -> Self {
        if let Some(existing) = self.actions.get(action.slug()) {
            assert!(
                existing == action.info(),
                "two different actions are registered with the slug {:?}",
                action.slug()
            );
        }
        self.actions
            .insert(action.slug().to_owned(), action.info().clone());
        self
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
            .finish()
    }
}
