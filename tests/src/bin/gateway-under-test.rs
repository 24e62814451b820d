//! The real `odoo-gateway` command line, built inside this package so that end-to-end tests
//! can start it as a separate process (and kill it).

fn main() -> std::process::ExitCode {
    odoo_gateway::cli::main()
}
