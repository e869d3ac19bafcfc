// `sqlx::migrate!` embeds migrations/ at compile time, but Cargo does not know the macro reads
// that directory: without this, a new migration file is missing from the binary until something
// else changes, and the tests (which apply migrations/ themselves) then meet a schema the app
// says it never made.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
