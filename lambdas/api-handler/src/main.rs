//! `api-handler` Lambda. The handler arrives with the saga issue; until then the
//! binary exists so the workspace layout, build and template are complete.

fn main() {
    eprintln!("api-handler: not implemented yet");
    std::process::exit(1);
}
