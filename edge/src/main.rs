//! `fresco-edge`: fresco edge: the client-facing image cache. Serves hits from its RAM+SSD cache and fetches misses from a shield (or the origin).

use std::process::ExitCode;

use clap::Parser;
use fresco_tier::node::{NodeArgs, run};
use fresco_tier::proxy::Role;

/// fresco edge: the client-facing image cache. Serves hits from its RAM+SSD cache and fetches misses from a shield (or the origin).
#[derive(Parser)]
#[command(name = "fresco-edge", version)]
struct Cli {
    #[command(flatten)]
    node: NodeArgs,
}

fn main() -> ExitCode {
    run(Role::Edge, Cli::parse().node)
}
