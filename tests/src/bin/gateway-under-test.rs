//! The real `odoo-gateway` command line, built inside this package so that end-to-end tests
//! can start it as a separate process (and kill it).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    odoo_gateway::cli::main()
}
