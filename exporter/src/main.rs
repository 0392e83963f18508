//! `heimdall-exporter`: see the crate docs and `heimdall-exporter --help`.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    heimdall_exporter::main_with_args(std::env::args_os()).await
}
