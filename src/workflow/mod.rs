//! Workflow rules: the PCII lifecycle, who may move a submission where, and what each step records.

pub mod blobs;
