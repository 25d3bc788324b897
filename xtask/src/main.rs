//! `cargo xtask bundle stembus --release` builds the CLAP and VST3 bundles into
//! `target/bundled/` (names from `bundler.toml`).

fn main() -> nice_plug_xtask::Result<()> {
    nice_plug_xtask::main()
}
