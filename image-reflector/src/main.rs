fn main() {
    eprintln!("image-reflector-controller: not implemented yet (see issue for image-reflector)");
    std::process::exit(2);
}
