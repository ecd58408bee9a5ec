//! Records the target triple this crate is compiled for, so that an update picks the
//! artifact built for the machine it runs on (`imix_update::update::TARGET`).

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=IMIX_BUILD_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
