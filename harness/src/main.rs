//! The `adaptest` binary: everything lives in the library (`adaptest::cli`).

fn main() {
    // Before any thread exists (see the function): the mounts a qemu-user target makes in its
    // root are this process's own and go away with it. Without the privilege (an unprivileged
    // container) mounts stay shared as before, which is correct for one run at a time.
    if let Err(e) = adaptest_adapters::target::private_mount_namespace()
        && e.kind() != std::io::ErrorKind::PermissionDenied
    {
        eprintln!("adaptest: note: no private mount namespace ({e}); qemu-user mounts are shared");
    }
    std::process::exit(adaptest::cli::main());
}
