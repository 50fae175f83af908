//! How both programs (`hvbox`, `hvbox-vmm`) write an error: on one line, with its
//! causes. Some of our errors (and our libraries') already quote their cause in
//! their message; a cause already said is not repeated.

pub fn describe(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(io).context("cannot read /x: no such file");
        assert_eq!(describe(&err), "cannot read /x: no such file");
        let err = anyhow::anyhow!("disk full").context("writing /y");
        assert_eq!(describe(&err), "writing /y: disk full");
    }
}
