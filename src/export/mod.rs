//! Downloadable archives: a streamed zip writer ([`archive`]) and the submission package
//! ([`package`], [`submission`]), streamed through [`crate::streaming`].

pub mod archive;
pub mod package;

pub use package::{
    last_path_part, package_length, package_stream, safe_member_name, safe_member_name_in,
    write_package, EntrySource, PackageEntry, MESSAGES_DIR,
};

pub use crate::streaming::{stream_blocking, BlockingBody, ChannelWriter, CHUNK};
