//! A real fresco cluster on one machine: a demo origin, shields and edges as separate
//! processes on loopback ports. It is the README's first command (`make run`) and the
//! harness of the end-to-end tests.
//!
//! Contract (DESIGN.md): `devcluster [--edges N] [--shields M] [--origin URL] [--state-dir DIR]`
//! starts everything, writes `DIR/cluster.json` once all nodes answer `/readyz`, and prints
//! `READY DIR/cluster.json`. SIGINT or SIGTERM stops every child. The same state dir reuses
//! node ids, ports and cache directories, so a restart comes back warm.
//! `devcluster join --state-dir DIR --role edge|shield` adds a node to the running cluster and
//! `devcluster leave --state-dir DIR NODE_ID` stops one gracefully ([`control`]).

pub mod cluster;
pub mod control;
pub mod demo_images;
pub mod demo_origin;
pub mod etcd;
pub mod state;
pub mod tls;
