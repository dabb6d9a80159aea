//! Integration tests: the real binary, a temp data dir, real HTTPS. One test binary
//! (each file under tests/ would be a separate link); modules group the stories.

mod harness;

mod authz;
mod bad_input;
mod cli;
mod crash;
mod gateway;
mod hooks;
mod lifecycle;
mod listener;
mod notify;
mod ops;
mod reload;
mod security;
mod startup;
