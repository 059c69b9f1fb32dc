//! `fresco-shield`: fresco shield: the origin-facing image cache. Collapses concurrent misses into one origin fetch and revalidates with ETags.

use std::process::ExitCode;

use clap::Parser;
use fresco_tier::node::{NodeArgs, run};
use fresco_tier::proxy::Role;

/// fresco shield: the origin-facing image cache. Collapses concurrent misses into one origin fetch and revalidates with ETags.
#[derive(Parser)]
#[command(name = "fresco-shield", version)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    run(Role::Shield, Cli::parse().node)
}
