//! The primitives the writer and sync threads hand batches over with: `std`'s in the store,
//! shuttle's in the model checks (`pipeline_checks.rs`), so that the checks run the store's
//! own hand-off code ([`pipeline`](crate::pipeline), [`batch`](crate::batch)) under
//! schedules they choose. Everything generic over [`Threads`] is monomorphised: the store
//! pays nothing for the seam.

use std::sync::{
    Arc, OnceLock,
    mpsc::{RecvError, SendError, TryRecvError},
};

/// A family of queues and a shared first failure, for the writer and sync threads.
pub(crate) trait Threads: 'static {
    /// The sending half of a queue, as `mpsc::Sender`.
    type Sender<T: Send + 'static>: Sender<T>;
    /// The receiving half of a queue, as `mpsc::Receiver`.
    type Receiver<T: Send + 'static>: Receiver<T>;
    /// The first failed sync of the WAL, shared by both syncers.
    type Failure: Failure;

    /// A new unbounded queue.
    fn channel<T: Send + 'static>() -> (Self::Sender<T>, Self::Receiver<T>);
}

/// What the hand-off does with a queue's sending half (`mpsc::Sender`'s methods).
pub(crate) trait Sender<T>: Clone + Send {
    /// Queues `message`, or gives it back if the receiving half is gone.
    fn send(&self, message: T) -> Result<(), SendError<T>>;
}

/// What the hand-off does with a queue's receiving half (`mpsc::Receiver`'s methods).
pub(crate) trait Receiver<T>: Send {
    /// Waits for the next message; fails once every sending half is gone.
    fn recv(&self) -> Result<T, RecvError>;
    /// The next message if one is queued.
    fn try_recv(&self) -> Result<T, TryRecvError>;

    /// Every message queued now, without blocking.
    fn try_iter(&self) -> impl Iterator<Item = T> {
        std::iter::from_fn(|| self.try_recv().ok())
    }
}

/// A slot that keeps the first reason it is given, shared by its clones (`Arc<OnceLock>`).
pub(crate) trait Failure: Clone + Default + Send {
    /// The reason kept, if any.
    fn get(&self) -> Option<&str>;
    /// Keeps `why` unless a reason is kept already.
    fn set(&self, why: String);
}

/// Implements the queue traits for a module with `mpsc`'s API.
macro_rules! queues {
    ($($mpsc:ident)::+) => {
        use $($mpsc)::+ as mpsc;

        impl<T: Send> crate::sync::Sender<T> for mpsc::Sender<T> {
            fn send(&self, message: T) -> Result<(), SendError<T>> {
                mpsc::Sender::send(self, message)
            }
        }

        impl<T: Send> crate::sync::Receiver<T> for mpsc::Receiver<T> {
            fn recv(&self) -> Result<T, RecvError> {
                mpsc::Receiver::recv(self)
            }

            fn try_recv(&self) -> Result<T, TryRecvError> {
                mpsc::Receiver::try_recv(self)
            }
        }
    };
}

/// The store's: `std::sync`.
pub(crate) struct Std;

mod std_queues {
    use super::{RecvError, SendError, TryRecvError};
    queues!(std::sync::mpsc);
}

impl Threads for Std {
    type Sender<T: Send + 'static> = std::sync::mpsc::Sender<T>;
    type Receiver<T: Send + 'static> = std::sync::mpsc::Receiver<T>;
    type Failure = Arc<OnceLock<String>>;

    fn channel<T: Send + 'static>() -> (Self::Sender<T>, Self::Receiver<T>) {
        std::sync::mpsc::channel()
    }
}

impl Failure for Arc<OnceLock<String>> {
    fn get(&self) -> Option<&str> {
        OnceLock::get(self).map(String::as_str)
    }

    fn set(&self, why: String) {
        // The first failure is the one kept.
        let _ = OnceLock::set(self, why);
    }
}

/// The model checks': `shuttle::sync`, whose every operation is a point where shuttle's
/// scheduler may switch threads.
#[cfg(test)]
pub(crate) struct Shuttle;

#[cfg(test)]
mod shuttle_queues {
    use super::{RecvError, SendError, TryRecvError};
    queues!(shuttle::sync::mpsc);
}

#[cfg(test)]
impl Threads for Shuttle {
    type Sender<T: Send + 'static> = shuttle::sync::mpsc::Sender<T>;
    type Receiver<T: Send + 'static> = shuttle::sync::mpsc::Receiver<T>;
    type Failure = ShuttleFailure;

    fn channel<T: Send + 'static>() -> (Self::Sender<T>, Self::Receiver<T>) {
        shuttle::sync::mpsc::channel()
    }
}

/// Shuttle has no `OnceLock`: a `OnceLock` whose readers and writer first pass a shuttle
/// atomic, where the scheduler may switch threads (as it could between a real `OnceLock`'s
/// check and its store).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct ShuttleFailure(Arc<(shuttle::sync::atomic::AtomicBool, OnceLock<String>)>);

#[cfg(test)]
impl Failure for ShuttleFailure {
    fn get(&self) -> Option<&str> {
        let (set, why) = &*self.0;
        if set.load(std::sync::atomic::Ordering::SeqCst) {
            why.get().map(String::as_str)
        } else {
            None
        }
    }

    fn set(&self, why: String) {
        let (set, first) = &*self.0;
        let _ = first.set(why);
        set.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
