//! `uniffi-bindgen`, built from the workspace so it always matches the uniffi version of
//! `haven-ffi` (a bindgen of another version generates bindings whose checksums do not match the
//! library). Run it as `cargo uniffi-bindgen generate ...`; `scripts/bindings` shows the exact
//! invocation.

fn main() {
    uniffi::uniffi_bindgen_main()
}
