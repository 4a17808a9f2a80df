//! Model checks of the hand-off between the writer thread and the sync thread, with shuttle:
//! the store's own [`Pipeline`], [`Syncer`] and batches run on a fake database and WAL that
//! record what is committed and what is on disk, and on shuttle's queues, under schedules
//! shuttle chooses at random (`check_random`) and by priorities (`check_pct`). Faults (a
//! transaction that cannot begin, breaks or does not commit; a WAL that cannot be opened or
//! whose sync fails) are drawn from shuttle's generator, so a schedule replays them too.
//!
//! Checked at every answer: no caller hears `Ok` before a sync that followed its commit, nor
//! after a failed sync (whose successors make nothing durable, as after a real one); none is
//! answered twice; the waiters of committed batches are answered in commit order; no batch
//! begun after a waiter heard of a failed sync is committed (decision 0045). At the end:
//! every write the writer took was answered, and only writes that never reached it were
//! dropped by a stop. A failure prints shuttle's schedule; `CAIRN_SHUTTLE_SCHEDULE='…' cargo
//! test -p cairn-store-sqlite <test>` replays it. `CAIRN_SHUTTLE_ITERATIONS` sets how many
//! schedules each scheduler tries.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cairn_store::{StoreResult, watch::ChangeHub};
use shuttle::{rand::Rng, thread};

use super::{Message, Pipeline, PipelineLimits, Syncer, Unsynced, Wal};
use crate::{
    batch::{Answer, Committed, Database},
    ops::Changed,
    sync::{Shuttle, Threads},
};

/// Schedules each scheduler tries per check, unless `CAIRN_SHUTTLE_ITERATIONS` says.
const ITERATIONS: usize = 3_000;

/// Which faults a check's worlds draw, each time its chance comes.
#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    /// A transaction cannot begin (`BEGIN IMMEDIATE` busy), fails part-way (the batch is
    /// rolled back) or its `COMMIT` fails.
    transactions: bool,
    /// The WAL cannot be opened to sync it (not final: nothing was written back).
    unopened: bool,
    /// A sync of the WAL fails.
    syncs: bool,
}

/// When the store stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Once every caller has its answer, as when a store is dropped after its last call.
    AfterAnswers,
    /// At once, while the callers' writes are queued, open or being synced.
    InFlight,
}

/// A caller's write: the fake's command.
struct Write {
    caller: usize,
    reply: <Shuttle as Threads>::Sender<Option<String>>,
}

/// What a caller heard.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed(String),
    /// Its write never reached the writer, or its answer was dropped.
    Stopped,
}

/// The open transaction of the fake database.
#[derive(Debug)]
struct Open {
    writes: Vec<usize>,
    /// Whether a waiter had heard of a failed sync when it began.
    after_failure_told: bool,
}

/// What the fake database and WAL saw, and what the callers were answered.
#[derive(Debug)]
struct Ledger {
    /// Which schedule of its check this is, for the failure message.
    iteration: Iteration,
    faults: Faults,
    open: Option<Open>,
    /// Each commit's writes, in commit order.
    commits: Vec<Vec<usize>>,
    /// Where each caller's write was committed: (commit, place in it).
    committed_at: Vec<Option<(usize, usize)>>,
    /// How many commits are on disk: a sync covers every commit before it, until one fails.
    durable: usize,
    /// Whether a sync failed: later syncs succeed but write nothing (fsyncgate).
    sync_failed: bool,
    /// Whether a waiter of a committed batch was told it failed.
    failure_told: bool,
    /// Which callers' writes the writer took.
    executed: Vec<bool>,
    /// How many answers each caller had.
    answers: Vec<usize>,
    /// The commit and place of the last committed write answered.
    last_answered: Option<(usize, usize)>,
}

/// The ledger, shared by the fakes and the answers. A `std` mutex: it is never held across
/// one of shuttle's switch points, so it neither blocks nor adds schedules.
#[derive(Clone)]
struct Shared(Arc<Mutex<Ledger>>);

impl Shared {
    fn new(iteration: Iteration, faults: Faults, callers: usize) -> Shared {
        Shared(Arc::new(Mutex::new(Ledger {
            iteration,
            faults,
            open: None,
            commits: Vec::new(),
            committed_at: vec![None; callers],
            durable: 0,
            sync_failed: false,
            failure_told: false,
            executed: vec![false; callers],
            answers: vec![0; callers],
            last_answered: None,
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Ledger {
    /// Fails the check: `what` went wrong.
    fn violation(&self, what: &str) -> ! {
        panic!("{what} ({}): {self:#?}", self.iteration)
    }

    /// Records and checks the answer `why` (`None`: Ok) to `caller`.
    fn answered(&mut self, caller: usize, why: Option<&str>) {
        self.answers[caller] += 1;
        if self.answers[caller] > 1 {
            self.violation(&format!("caller {caller} was answered twice"));
        }
        let committed = self.committed_at[caller];
        if why.is_none() {
            match committed {
                None => self.violation(&format!("caller {caller} heard Ok, never committed")),
                Some(_) if self.sync_failed => {
                    self.violation(&format!("caller {caller} heard Ok after a failed sync"));
                }
                Some((commit, _)) if commit >= self.durable => self.violation(&format!(
                    "caller {caller} heard Ok before a sync that followed its commit"
                )),
                Some(_) => {}
            }
        }
        if let Some(at) = committed {
            if self.last_answered.is_some_and(|last| last > at) {
                self.violation(&format!("caller {caller} was answered out of commit order"));
            }
            self.last_answered = Some(at);
            // Told after the store kept the failure (it keeps it before it answers).
            self.failure_told |= why.is_some() && self.sync_failed;
        }
    }

    /// Checks the end of a world: every write the writer took was answered, a write was
    /// dropped only if it never reached the writer, and without faults every answer is Ok.
    fn check_end(&self, outcomes: &[Outcome], stop: Stop) {
        for (caller, outcome) in outcomes.iter().enumerate() {
            if self.executed[caller] && self.answers[caller] != 1 {
                self.violation(&format!(
                    "caller {caller}'s write was taken, never answered"
                ));
            }
            if *outcome == Outcome::Stopped && (self.executed[caller] || stop != Stop::InFlight) {
                self.violation(&format!("caller {caller}'s write was dropped"));
            }
            let faultless =
                !(self.faults.transactions || self.faults.unopened || self.faults.syncs);
            if faultless && stop == Stop::AfterAnswers && *outcome != Outcome::Ok {
                self.violation(&format!(
                    "caller {caller} heard {outcome:?} without a fault"
                ));
            }
        }
    }
}

/// A chance of one in four, drawn from shuttle's generator (replayed with the schedule).
fn one_in_four() -> bool {
    shuttle::rand::thread_rng().gen_ratio(1, 4)
}

/// The fake write connection: a transaction is a list of writes, a commit appends it to the
/// ledger's commits.
struct FakeDatabase(Shared);

impl Database for FakeDatabase {
    type Command = Write;
    type Wal = FakeWal;

    fn begin(&mut self) -> Result<(), String> {
        let busy = self.0.with(|ledger| ledger.faults.transactions) && one_in_four();
        if busy {
            return Err("could not start a write transaction: database is locked".into());
        }
        self.0.with(|ledger| {
            if ledger.open.is_some() {
                ledger.violation("a transaction began inside another");
            }
            ledger.open = Some(Open {
                writes: Vec::new(),
                after_failure_told: ledger.failure_told,
            });
        });
        Ok(())
    }

    fn execute(
        &mut self,
        write: Write,
        broken: &mut Option<String>,
        _changed: &mut Changed,
    ) -> Answer {
        let Write { caller, reply } = write;
        let fails = self.0.with(|ledger| ledger.faults.transactions) && one_in_four();
        self.0.with(|ledger| {
            ledger.executed[caller] = true;
            if broken.is_none() {
                if fails {
                    *broken = Some("the batch was rolled back: disk I/O error".into());
                } else if let Some(open) = &mut ledger.open {
                    open.writes.push(caller);
                }
            }
        });
        let ledger = self.0.clone();
        Box::new(move |why| {
            ledger.with(|ledger| ledger.answered(caller, why));
            // The caller may have given up: nothing to do then.
            let _ = reply.send(why.map(str::to_owned));
        })
    }

    fn end(&mut self, began: bool, broken: &mut Option<String>) {
        if !began {
            return;
        }
        // A commit takes time: the sync thread may fail meanwhile.
        thread::yield_now();
        let fails = self.0.with(|ledger| ledger.faults.transactions) && one_in_four();
        if broken.is_none() && fails {
            *broken = Some("the write batch did not commit: disk full".into());
        }
        self.0.with(|ledger| {
            let Some(open) = ledger.open.take() else {
                ledger.violation("a batch ended with no transaction open");
            };
            if broken.is_some() {
                return;
            }
            if open.after_failure_told {
                ledger.violation("a batch begun after a failed sync was reported was committed");
            }
            let commit = ledger.commits.len();
            for (place, &caller) in open.writes.iter().enumerate() {
                ledger.committed_at[caller] = Some((commit, place));
            }
            ledger.commits.push(open.writes);
        });
    }

    fn data_version(&mut self) -> StoreResult<i64> {
        Ok(0)
    }
}

/// The fake WAL: a sync makes every commit so far durable, until one fails.
struct FakeWal(Shared);

impl Wal for FakeWal {
    fn twin(&self) -> FakeWal {
        FakeWal(self.0.clone())
    }

    fn sync(&mut self) -> Result<(), Unsynced> {
        // A sync takes time: the writer runs meanwhile.
        thread::yield_now();
        let faults = self.0.with(|ledger| ledger.faults);
        let unopened = faults.unopened && one_in_four();
        let fails = faults.syncs && one_in_four();
        self.0.with(|ledger| {
            if ledger.sync_failed {
                // The kernel dropped the pages it could not write: this sync "succeeds".
                return Ok(());
            }
            if unopened {
                return Err(Unsynced::Unopened("cannot open the WAL to sync it".into()));
            }
            if fails {
                ledger.sync_failed = true;
                return Err(Unsynced::Failed("syncing the WAL failed: EIO".into()));
            }
            ledger.durable = ledger.commits.len();
            Ok(())
        })
    }
}

/// A caller: queues its write and waits for the answer, as `Writer::call` does.
fn call(queue: &<Shuttle as Threads>::Sender<Message<Write>>, caller: usize) -> Outcome {
    let (reply, answer) = Shuttle::channel();
    if queue
        .send(Message::Command(Write { caller, reply }))
        .is_err()
    {
        return Outcome::Stopped;
    }
    match answer.recv() {
        Ok(None) => Outcome::Ok,
        Ok(Some(why)) => Outcome::Failed(why),
        Err(_) => Outcome::Stopped,
    }
}

/// One world: 1–4 callers, batches of at most 1–3 commands, the writer and sync threads
/// wired as `Writer::spawn` wires them, stopped as `Writer`'s drop stops them.
fn world(iteration: Iteration, faults: Faults, stop: Stop) {
    let mut rng = shuttle::rand::thread_rng();
    let callers = rng.gen_range(1..=4);
    let limits = PipelineLimits {
        max_batch: rng.gen_range(1..=3),
        idle_spin: Duration::ZERO,
    };
    let ledger = Shared::new(iteration, faults, callers);
    let (queue, messages) = Shuttle::channel::<Message<Write>>();
    let (to_syncer, committed) = Shuttle::channel::<Committed>();
    let syncer = Syncer::<_, Shuttle>::new(FakeWal(ledger.clone()), ChangeHub::new());
    let in_place = syncer.twin();
    let synced = queue.clone();
    let sync_thread = thread::spawn(move || syncer.run(&committed, &synced));
    let db = FakeDatabase(ledger.clone());
    let writer_thread = thread::spawn(move || {
        Pipeline::new(db, limits, in_place, to_syncer).run(&messages);
        // A `std` receiver drops what is still queued when it goes (its callers then hear
        // that the writer stopped); shuttle's keeps it while a sender lives.
        while messages.try_recv().is_ok() {}
    });
    let calls: Vec<_> = (0..callers)
        .map(|caller| {
            let queue = queue.clone();
            thread::spawn(move || call(&queue, caller))
        })
        .collect();
    if stop == Stop::InFlight {
        let _ = queue.send(Message::Stop);
    }
    let outcomes: Vec<Outcome> = calls
        .into_iter()
        .map(|caller| caller.join().expect("a caller"))
        .collect();
    if stop == Stop::AfterAnswers {
        let _ = queue.send(Message::Stop);
    }
    drop(queue);
    writer_thread.join().expect("the writer thread");
    sync_thread.join().expect("the sync thread");
    ledger.with(|ledger| ledger.check_end(&outcomes, stop));
}

/// Which scheduler ran a world, and its how manyth world it was.
#[derive(Clone, Copy, Debug)]
struct Iteration {
    scheduler: &'static str,
    number: usize,
}

impl std::fmt::Display for Iteration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} schedule {}", self.scheduler, self.number)
    }
}

/// Runs worlds with `faults`, stopped as `stop` says, under random schedules and then PCT
/// ones (depth 3); or replays the schedule in `CAIRN_SHUTTLE_SCHEDULE`.
fn explore(faults: Faults, stop: Stop) {
    let worlds = |scheduler| {
        let count = AtomicUsize::new(0);
        move || {
            let number = count.fetch_add(1, Ordering::Relaxed) + 1;
            world(Iteration { scheduler, number }, faults, stop);
        }
    };
    if let Ok(schedule) = std::env::var("CAIRN_SHUTTLE_SCHEDULE") {
        shuttle::replay(worlds("replay"), &schedule);
        return;
    }
    let iterations = std::env::var("CAIRN_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ITERATIONS);
    shuttle::check_random(worlds("random"), iterations);
    shuttle::check_pct(worlds("pct"), iterations, 3);
}

#[test]
fn no_caller_hears_ok_before_the_sync_that_follows_its_commit() {
    explore(Faults::default(), Stop::AfterAnswers);
}

#[test]
fn every_caller_is_answered_once_in_commit_order_when_batches_break() {
    let faults = Faults {
        transactions: true,
        unopened: true,
        syncs: false,
    };
    explore(faults, Stop::AfterAnswers);
}

#[test]
fn after_a_failed_sync_every_waiter_fails_and_nothing_more_is_committed() {
    let faults = Faults {
        syncs: true,
        ..Faults::default()
    };
    explore(faults, Stop::AfterAnswers);
}

#[test]
fn stopping_with_writes_in_flight_answers_every_waiter() {
    let faults = Faults {
        transactions: true,
        unopened: true,
        syncs: true,
    };
    explore(faults, Stop::InFlight);
}
