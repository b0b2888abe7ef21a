//! What the two servers share: the supervisor (process table, IO, exits,
//! events), process IO, and resource usage. `containerd-shim-isoexec-v1`
//! (ttrpc) and `isoexecd` (gRPC) are thin front ends over it.

pub mod io;
pub mod proc_events;
pub mod supervisor;
pub mod usage;
