fn main() {
    eprintln!("image-automation-controller: not implemented yet (see issue for image-automation)");
    std::process::exit(2);
}
