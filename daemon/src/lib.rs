//! isoexecd: isoexec's gRPC API (`proto/isoexec/v1`) over the supervisor
//! the containerd shim uses too, and what its client and tests share.

pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("isoexec.v1");

    /// The API's descriptors, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/isoexec_descriptor.bin"));
}

pub mod authority;
pub mod client;
pub mod sandbox;
pub mod server;
pub mod spec;
