//! FFI shell over haven-core (see issue 4).
