//! Build script: only tells the test suite whether the PostgreSQL tests can run. With
//! `LOGBELT_TEST_POSTGRES_URL` set (or `LOGBELT_REQUIRE_POSTGRES=1`, which makes them fail without
//! a server) they are compiled as ordinary tests; otherwise they are marked ignored, so that
//! `cargo test` reports them as ignored instead of counting a skip as a pass.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=LOGBELT_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-env-changed=LOGBELT_REQUIRE_POSTGRES");
    println!("cargo::rustc-check-cfg=cfg(logbelt_postgres_tests)");
    let url = std::env::var_os("LOGBELT_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty());
    let required = std::env::var("LOGBELT_REQUIRE_POSTGRES").as_deref() == Ok("1");
    if url || required {
        println!("cargo::rustc-cfg=logbelt_postgres_tests");
    }
}
