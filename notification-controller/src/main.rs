fn main() {
    eprintln!("notification-controller: not implemented yet (see issue 9)");
    std::process::exit(2);
}
