//! Integration tests: one binary (it links once) that starts the real `tally` for each test.

mod admin;
mod auth;
mod backend;
mod batch;
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
mod ofrep;
mod outbox;
mod overview;
mod ratelimit;
mod receiver;
mod reliability;
mod support;
mod telemetry;
mod transport;
mod usage;
mod users;
mod webdriver;
