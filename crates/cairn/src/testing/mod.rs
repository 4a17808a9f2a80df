//! Test workflows fast, without a server: an in-memory store, a virtual clock, mocked
//! actions, seeded steps, time skipping and hook resumes; with the `llm` feature, a scripted
//! model (`TestEnv::mock_llm`).
//!
//! ```
//! use std::sync::LazyLock;
//! use cairn::{Action, ActionCtx, Workflow, WorkflowCtx, testing::{Outcome, TestEnv}};
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)] struct Signup { name: String }
//! # #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema, Debug, PartialEq)] struct Brief { brief: String }
//! static RESEARCH: LazyLock<Action<Signup, Brief>> = LazyLock::new(|| {
//!     Action::new("research").run(|_input: Signup, _ctx: ActionCtx| async move {
//!         unreachable!("mocked in tests: this would call a paid API")
//!     })
//! });
//! static PIPELINE: LazyLock<Workflow<Signup, Brief>> = LazyLock::new(|| {
//!     Workflow::new("pipeline").run(|input: Signup, ctx: WorkflowCtx| async move {
//!         let brief = RESEARCH.run(input).await?;
//!         ctx.sleep("1d").await?;
//!         Ok(brief)
//!     })
//! });
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let env = TestEnv::new().mock(&RESEARCH, |s: Signup| Ok(Brief { brief: format!("about {}", s.name) }));
//! let outcome = env.execute_workflow(&PIPELINE, Signup { name: "Ada".into() }).await;
//! assert!(matches!(outcome, Outcome::Suspended { .. }), "parked on the sleep");
//! env.skip_time(std::time::Duration::from_secs(86_400)).await;
//! let run = env.last_run().unwrap();
//! assert_eq!(env.outcome::<Brief>(run).await.completed(), Some(Brief { brief: "about Ada".into() }));
//! # }
//! ```

mod clock;
mod env;
#[cfg(feature = "llm")]
mod llm;
mod replay;

pub use clock::TestClock;
pub use env::{Outcome, TestEnv, Wait};
#[cfg(feature = "llm")]
pub use llm::ModelTurn;
pub use replay::{ReplayError, replay};
