//! The `nowstream` command's library: the embedded demo.

pub mod demo;
