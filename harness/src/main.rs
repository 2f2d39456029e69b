//! The `adaptest` binary: everything lives in the library (`adaptest::cli`).

fn main() {
    std::process::exit(adaptest::cli::main());
}
