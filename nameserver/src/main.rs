//! `heimdall-nameserver`: see the crate docs and `heimdall-nameserver --help`.

fn main() -> std::process::ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(heimdall_nameserver::main_with_args(std::env::args_os())),
        Err(e) => {
            eprintln!("heimdall-nameserver: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
