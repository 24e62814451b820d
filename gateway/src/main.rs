//! `odoo-gateway`: the command line lives in the library (`odoo_gateway::cli`).

fn main() -> std::process::ExitCode {
    odoo_gateway::cli::main()
}
