fn main() {
    match lb::dataplane::Dataplane::load() {
        Ok(_) => println!("loaded OK"),
        Err(e) => { println!("ERR: {e}"); let mut s = std::error::Error::source(&e); while let Some(x) = s { println!("  caused by: {x}"); s = x.source(); } }
    }
}
