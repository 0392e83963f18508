//! `heimdall-scraper`: see the crate documentation and `--help`.

fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("heimdall-scraper: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    rt.block_on(heimdall_scraper::main_with_args(std::env::args_os()))
}
