#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    control_plane::fedctl::main()
}
