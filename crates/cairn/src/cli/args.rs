//! The command line, as clap parses it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Arguments of the embedded Cairn CLI.
#[derive(Debug, Parser)]
#[command(about = "Run and inspect durable workflows", version)]
pub struct Cli {
    /// Where the embedded store keeps its SQLite file.
    #[arg(long, global = true, env = "CAIRN_DATA_DIR", default_value = ".cairn")]
    pub data_dir: PathBuf,
    /// Use PostgreSQL at this URL instead of the embedded SQLite file (several workers on
    /// several machines share one database; needs cairn's `postgres` feature).
    #[arg(long, global = true, env = "CAIRN_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema to keep Cairn's tables in (created if missing; default: the
    /// connection's search path, usually `public`).
    #[arg(long, global = true, env = "CAIRN_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// How long a run's lease lasts without a heartbeat (e.g. `15s`): a crashed process's
    /// runs are taken over this long after it died.
    #[arg(long, global = true, env = "CAIRN_LEASE_TTL")]
    pub lease_ttl: Option<humantime::Duration>,
    /// How often an idle worker looks for ready runs (e.g. `250ms`).
    #[arg(long, global = true, env = "CAIRN_POLL_INTERVAL")]
    pub poll_interval: Option<humantime::Duration>,
    /// Base URL of the HTTP server, used in hooks' resume URLs.
    #[arg(long, global = true, env = "CAIRN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Largest JSON payload accepted, in bytes (default 1 MiB).
    #[arg(long, global = true, env = "CAIRN_MAX_PAYLOAD_BYTES")]
    pub max_payload_bytes: Option<usize>,
    /// How many times a step's attempt may be cut off by its worker stopping (a crash, a
    /// kill) before the run fails with a `Recoveries` error (default 5).
    #[arg(long, global = true, env = "CAIRN_MAX_STEP_RECOVERIES")]
    pub max_step_recoveries: Option<u32>,
    /// Act on a running Cairn server (`serve`) at this URL instead of opening a store: `run`,
    /// `runs …`, `hooks resume`, `workflows list` and `credentials …` go over its HTTP API,
    /// with the same output and exit codes (`worker`, `hooks list`, the patch filters and
    /// `credentials rotate-key` stay local).
    /// The API key, if the server needs one, is read from CAIRN_API_KEY (never a flag, so it
    /// stays out of the process list). Needs cairn's `client` feature.
    #[arg(long, global = true, env = "CAIRN_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a run and execute it here, showing each step live (with --server: the server
    /// executes it, its steps are shown as they happen there).
    Run(RunArgs),
    /// Inspect and manage runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Execute queued runs until stopped (Ctrl-C or SIGTERM).
    Worker(WorkerArgs),
    /// Registered workflows and actions.
    #[command(subcommand)]
    Workflows(WorkflowsCommand),
    /// List and resume hooks (runs waiting for a person or a system).
    #[command(subcommand)]
    Hooks(HooksCommand),
    /// Serve the HTTP API (and, unless --no-worker, execute runs) until SIGTERM or Ctrl-C.
    #[cfg(feature = "server")]
    Serve(ServeArgs),
    /// Credentials actions use (Slack tokens, SMTP passwords…), sealed with the master key.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// Cron schedules (declared in code, saved by workers): list, inspect, pause, resume,
    /// trigger, backfill, delete.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Poll sources (declared in code, saved by workers): list, poll now, pause, resume.
    #[command(subcommand)]
    Sources(SourcesCommand),
    /// Webhook endpoints (`POST /triggers/{endpoint}`): what became of their deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// `webhooks …`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// The endpoint's logged deliveries, newest first: status, outcome, reason, delivery id
    /// and run (never a body).
    Deliveries {
        /// The endpoint (as in `/triggers/{endpoint}`).
        endpoint: String,
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

/// `sources …`.
#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// List the stored poll sources: state, next poll, error streak.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Make a source due now: the next worker poll takes it.
    PollNow {
        /// Its name.
        name: String,
        /// Print the source as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a source: it is not polled until resumed.
    Pause {
        /// Its name.
        name: String,
        /// Print the source as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused (or failing) source: polled now, its error streak forgotten.
    Resume {
        /// Its name.
        name: String,
        /// Print the source as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `schedules …`.
#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Save a schedule by id (the same spec again changes nothing; another spec under the id
    /// is refused: delete it first). It first fires at its next fire time after now.
    Create(CreateScheduleArgs),
    /// List the stored schedules.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule: its spec, next 5 fire times, recent runs and missed fire times.
    Get {
        /// Its id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a schedule: it fires no more until resumed.
    Pause {
        /// Its id.
        id: String,
        /// Print the schedule as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resume a paused schedule from its next fire time after now (no catch-up).
    Resume {
        /// Its id.
        id: String,
        /// Print the schedule as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a run of a schedule now; its next fire time does not move.
    Trigger {
        /// Its id.
        id: String,
        /// Print the run's id as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a run for every fire time in a past range (at most 1,000), under the keys live
    /// fires use: a fire time that has its run starts nothing and shows that run.
    Backfill {
        /// Its id.
        id: String,
        /// The range's start, RFC 3339 (e.g. 2026-03-29T00:00:00Z), included.
        #[arg(long)]
        from: String,
        /// The range's end, RFC 3339, included; not after now.
        #[arg(long)]
        to: String,
        /// Print the fire times and their runs as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a schedule and its missed fire times (its runs stay). A schedule declared in
    /// code comes back when a worker of that code starts.
    Delete {
        /// Its id.
        id: String,
    },
}

/// `schedules create`'s arguments.
#[derive(Debug, Args)]
pub struct CreateScheduleArgs {
    /// Its id.
    pub id: String,
    /// The workflow it starts.
    #[arg(long)]
    pub workflow: String,
    /// The cron expression (5 fields, or 6 with seconds first), e.g. "0 9 * * MON-FRI".
    #[arg(long)]
    pub cron: String,
    /// The IANA time zone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Each run's input: the JSON itself, @file, or - for stdin.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Fire times missed while no worker ran: the newest of the last 24 h, all within
    /// --catch-up-window, or none.
    #[arg(long, value_enum, default_value = "latest")]
    pub catch_up: CatchUpArg,
    /// How far back `--catch-up all` reaches.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub catch_up_window: std::time::Duration,
    /// A fire time that comes while the previous run is going: start it anyway, skip
    /// it, or keep one waiting.
    #[arg(long, value_enum, default_value = "allow-all")]
    pub overlap: OverlapArg,
    /// Print the schedule as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `schedules create --catch-up`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CatchUpArg {
    /// One run, for the newest missed fire time of the last 24 hours.
    Latest,
    /// A run for every missed fire time within `--catch-up-window`.
    All,
    /// No catch-up.
    None,
}

/// `schedules create --overlap`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OverlapArg {
    /// Start every fire time.
    AllowAll,
    /// Skip a fire time while the previous run is going.
    Skip,
    /// Keep one fire time waiting until the previous run ends.
    BufferOne,
}

/// On whose behalf a run executes (its steps' credentials are looked up for it).
#[derive(Debug, Clone, Args)]
pub struct OwnerArgs {
    /// The organization (default `default`).
    #[arg(long, env = "CAIRN_ORG", default_value = cairn_core::DEFAULT_OWNER_NAME)]
    pub org: String,
    /// The project in it (default `default`).
    #[arg(long, env = "CAIRN_PROJECT", default_value = cairn_core::DEFAULT_OWNER_NAME)]
    pub project: String,
    /// The user it runs for, if any (user-scoped credentials are theirs).
    #[arg(long, env = "CAIRN_USER")]
    pub user: Option<String>,
}

impl OwnerArgs {
    /// The owner these name.
    pub(crate) fn owner(&self) -> cairn_core::Owner {
        cairn_core::Owner {
            org: self.org.clone(),
            project: self.project.clone(),
            user: self.user.clone(),
        }
    }
}

/// `credentials …`. Values are never given on the command line: `--field NAME=@env:VAR`,
/// `NAME=@file:PATH` or `NAME=@-` (stdin).
#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Save a credential (sealed with the master key): a new one, or --replace an existing one.
    Set {
        /// Its type (e.g. `slack`; `workflows list` shows which actions need which).
        key: String,
        /// A field: NAME=@env:VAR, NAME=@file:PATH or NAME=@- (stdin); repeat for each field.
        #[arg(long = "field", value_name = "NAME=SOURCE")]
        fields: Vec<String>,
        /// Who it belongs to: org, project or user.
        #[arg(long, default_value = "org")]
        scope: String,
        /// Whose it is: --org, and --project or --user for those scopes.
        #[command(flatten)]
        owner: OwnerArgs,
        /// Make it its holder's default for the type (a holder's first one is anyway).
        #[arg(long)]
        default: bool,
        /// Replace this credential (same type and holder) instead of adding one.
        #[arg(long, value_name = "ID")]
        replace: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List credentials (never their values).
    List {
        /// Only this type.
        #[arg(long)]
        key: Option<String>,
        /// Only this organization's.
        #[arg(long)]
        org: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Delete a credential.
    Delete {
        /// Its id.
        id: String,
    },
    /// Make a credential its holder's default for its type.
    SetDefault {
        /// Its id.
        id: String,
    },
    /// Re-encrypt every credential with a new master key, in one transaction. With
    /// CAIRN_MASTER_KEY set, the new key is read from CAIRN_NEW_MASTER_KEY; else a new key
    /// file replaces the old one.
    RotateKey,
}

/// `serve`. API keys come from `CAIRN_API_KEYS` (comma-separated) and `--api-key-file`.
#[cfg(feature = "server")]
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the chosen address is printed).
    #[arg(long, env = "CAIRN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Serve only: runs are executed by `worker` processes.
    #[arg(long)]
    pub no_worker: bool,
    /// Most runs the worker executes at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// A file of API keys, one per line (`#` starts a comment), beside CAIRN_API_KEYS.
    #[arg(long, env = "CAIRN_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Listen on a non-loopback address without an API key (a proxy in front authenticates).
    #[arg(long)]
    pub insecure: bool,
    /// Allow this origin to call the API from a browser (CORS); repeat for several.
    #[arg(long)]
    pub cors_origin: Vec<String>,
    /// The longest `?wait=` a start request may wait for its run; longer waits are cut to it.
    #[arg(long, env = "CAIRN_MAX_WAIT", default_value = "60s")]
    pub max_wait: humantime::Duration,
}

impl Command {
    /// The `--concurrency` of `worker` or `serve`.
    pub(crate) fn concurrency(&self) -> Option<usize> {
        match self {
            Command::Worker(args) => args.concurrency,
            #[cfg(feature = "server")]
            Command::Serve(args) => args.concurrency,
            _ => None,
        }
    }
}

/// `hooks …`.
#[derive(Debug, Subcommand)]
pub enum HooksCommand {
    /// Hooks waiting to be resumed (with --all: every state), newest first.
    List {
        /// Only this run's hooks.
        #[arg(long)]
        run: Option<String>,
        /// Include resumed, timed-out and closed hooks.
        #[arg(long)]
        all: bool,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Resume a waiting hook with a JSON payload (checked against the hook's schema).
    Resume {
        /// The hook's token.
        token: String,
        /// The payload: JSON, `@path` to read a file, or `-` to read stdin.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow's slug.
    pub workflow: String,
    /// The run's input: JSON, `@path` to read a file, or `-` to read stdin.
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Starting again with the same key returns (and resumes) the same run.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Only start the run and print its id; a `worker` executes it.
    #[arg(long)]
    pub detach: bool,
    /// On whose behalf it runs.
    #[command(flatten)]
    pub owner: OwnerArgs,
    /// Print one JSON object: {runId, status, output, error}.
    #[arg(long)]
    pub json: bool,
}

/// `runs …`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only runs with this status.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Only runs whose history has the marker of `ctx.patched(ID)`; unended runs only,
        /// unless --status says otherwise.
        #[arg(long, value_name = "ID", conflicts_with = "without_patch")]
        with_patch: Option<String>,
        /// Only runs of --workflow whose history lacks the marker of `ctx.patched(ID)`: the
        /// runs that still replay the old code path. Unended runs only, unless --status says
        /// otherwise.
        #[arg(long, value_name = "ID")]
        without_patch: Option<String>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a run and every step.
    Get {
        /// The run's id.
        run_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replay a failed or canceled run here (with --server: there): completed steps are
    /// skipped, the rest run again.
    Retry {
        /// The run's id.
        run_id: String,
        /// Print one JSON object: {runId, status, output, error}.
        #[arg(long)]
        json: bool,
    },
    /// Fork a new run that keeps the original's steps before a step and executes from it.
    Rerun {
        /// The original run's id.
        run_id: String,
        /// The step key to execute from (see `runs get`).
        #[arg(long)]
        from: String,
        /// Print one JSON object: {runId, status, output, error}.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run that has not ended.
    Cancel {
        /// The run's id.
        run_id: String,
        /// Why (recorded on the run).
        #[arg(long, default_value = "canceled from the CLI")]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Most runs executed at once.
    #[arg(long)]
    pub concurrency: Option<usize>,
}

/// `workflows …`.
#[derive(Debug, Subcommand)]
pub enum WorkflowsCommand {
    /// List registered workflows and actions.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
