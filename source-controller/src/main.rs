fn main() {
    eprintln!("source-controller: not implemented yet (see issue 5)");
    std::process::exit(2);
}
