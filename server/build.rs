//! Rebuilds when a schema migration changes: `sqlx::migrate!` embeds server/migrations/ at
//! compile time, and cargo does not otherwise know the macro reads that directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
