fn main() {
    eprintln!("riptide: not implemented yet (see issue 8)");
    std::process::exit(2);
}
