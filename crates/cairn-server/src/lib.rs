//! Cairn's HTTP API: start runs, inspect them (live, over Server-Sent Events), retry, rerun
//! and cancel them, resume hooks. The embedded CLI's `serve` command runs it
//! (`cairn::cli::main` with cairn's `server` feature); a program may also build a [`Server`]
//! itself.
//!
//! Handlers are thin: each parses its request, makes one [`Engine`] call (the same the CLI
//! makes) and maps the answer. Every error is an RFC 9457 problem (`error`), its status taken
//! from the engine's [`ErrorClass`](cairn_engine::ErrorClass). All state is in the store, so
//! several servers on one PostgreSQL database answer for any run.
//!
//! Routes (JSON, camelCase, the views `runs get --json` prints):
//!
//! | route | what |
//! |---|---|
//! | `POST /workflows/{slug}` | start a run (`Idempotency-Key`, `?wait=30s`) |
//! | `GET /workflows` | workflows and actions with their schemas |
//! | `GET /runs` | runs, newest first (`workflow`, `status`, `limit`, `cursor`) |
//! | `GET /runs/{id}` | a run with its steps and log |
//! | `GET /runs/{id}/stream` | the run as Server-Sent Events until it ends |
//! | `POST /runs/{id}/retry`, `/rerun`, `/cancel` | manage a run |
//! | `GET /credentials`, `POST /credentials` | list (never values), save a credential |
//! | `GET /credentials/{id}`, `DELETE`, `POST …/default` | one credential; delete; default |
//! | `GET /credentials/connect/{key}?user=…&org=…` | `302` to the OAuth provider (JSON with `Accept`) |
//! | `GET /credentials/callback/{key}?code=…&state=…` | store a user's OAuth tokens (no API key) |
//! | `GET /schedules`, `GET /schedules/{id}` | cron schedules; one with next fires, recent runs, misses |
//! | `PUT /schedules/{id}`, `DELETE` | create one (the id is the dedup key: another spec is 409); delete |
//! | `POST /schedules/{id}/pause`, `/resume`, `/trigger`, `/backfill` | manage a schedule |
//! | `POST /hooks/{token}`, `GET /hooks/{token}?field=…` | resume a hook (no API key) |
//! | `POST /triggers/{endpoint}` | a signed webhook delivery starts a run once (no API key) |
//! | `GET /healthz`, `GET /readyz` | liveness, store reachable (no API key) |
//! | `GET /metrics` | Prometheus text: runs, steps, step latency, runs by unended status |
//! | `GET /openapi.json` | this API as OpenAPI 3.1, with each workflow's input schema |
//! | `GET /ui/…` | the web UI: runs, a run's step timeline, retry, cancel, rerun (`ui`) |

mod auth;
mod body;
mod credentials;
mod error;
mod health;
mod hooks;
mod metrics;
mod oauth;
mod openapi;
mod params;
mod responses;
mod runs;
mod schedules;
mod serve;
mod state;
mod stream;
mod triggers;
mod ui;
mod workflows;

pub use auth::ApiKeys;
pub use serve::{ServeOptions, Server, ServerError, router};

#[cfg(doc)]
use cairn_engine::Engine;
