//! Integration tests: the real binary, a temp data dir, real HTTPS. One test binary
//! (each file under tests/ would be a separate link); modules group the stories.

mod harness;

mod authz;
mod bad_input;
mod crash;
mod lifecycle;
mod listener;
mod security;
mod startup;
