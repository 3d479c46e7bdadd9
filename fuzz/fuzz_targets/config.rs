//! Fuzzes the config parser and validator: any text is either a config or a `ConfigError`,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tally::config::Config::from_toml("fuzz.toml", text, &|_| None);
    }
});
