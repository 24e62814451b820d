//! `odoo-gateway`: the command line lives in the library (`odoo_gateway::cli`).

// sled and the HTTP stack allocate a lot of small, short-lived buffers; mimalloc handles that
// pattern markedly better than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    odoo_gateway::cli::main()
}
