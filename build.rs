//! Rebuilds when a migration is added: refinery embeds `migrations/` at compile time, and
//! without this line cargo would not notice a new file there.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
