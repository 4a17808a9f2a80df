//! Resources an application shares with its actions: an HTTP client, a configuration, a
//! directory. Registered once (`Registry::resource`), read by type in an action
//! (`ActionCtx::resource::<T>()`).

use std::{
    any::{Any, TypeId, type_name},
    collections::HashMap,
    sync::Arc,
};

/// Values by type. Cloning shares them.
#[derive(Clone, Default)]
pub(crate) struct Resources {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    names: Vec<&'static str>,
}

impl Resources {
    /// Adds `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Send + Sync + 'static>(&mut self, value: T) {
        if self
            .by_type
            .insert(TypeId::of::<T>(), Arc::new(value))
            .is_none()
        {
            self.names.push(type_name::<T>());
        }
    }

    /// The value of type `T`, if one was added.
    pub(crate) fn get<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let value = self.by_type.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok()
    }

    /// The type names of what was added, for error messages.
    pub(crate) fn names(&self) -> &[&'static str] {
        &self.names
    }
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.names).finish()
    }
}
