//! `heimdall-exporter`: see the crate docs and `heimdall-exporter --help`.

fn main() -> std::process::ExitCode {
    match heimdall_exporter::exporter_runtime() {
        Ok(rt) => rt.block_on(heimdall_exporter::main_with_args(std::env::args_os())),
        Err(e) => {
            eprintln!("heimdall-exporter: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
