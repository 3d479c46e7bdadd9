//! Integration tests: one binary (it links once) that starts the real `tally` for each test.

mod accounts;
mod admin;
mod auth;
mod backend;
mod browser;
mod cli;
mod copy;
mod crash;
mod dashboard;
mod features;
mod input;
mod lifecycle;
mod maintenance;
mod nodes;
mod outbox;
mod overview;
mod readme;
mod receiver;
mod reliability;
mod support;
mod telemetry;
mod terms;
mod transport;
mod usage;
mod users;
mod webdriver;
