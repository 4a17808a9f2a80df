//! Process-level end-to-end tests of Cairn: crash recovery with `kill -9`, several worker
//! processes on one data dir, and the CLI as a user drives it. The `cairn-fixture` binary
//! (in `src/bin/`) is the user binary the tests in `tests/` drive.
