//! The `switchyard-sandbox` command line (filled in below).
