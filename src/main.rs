//! The docker-credential-gcp program; everything is in the library (`src/lib.rs`).

use std::process::ExitCode;

fn main() -> ExitCode {
    docker_credential_gcp::run()
}
