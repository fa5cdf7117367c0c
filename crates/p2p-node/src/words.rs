//! Wording shared by the node's messages: a count with its noun in the right number
//! (`1 file`, `3 files`), so no message says "1 files" or "1 peers".

/// `n` and `noun`, plural with an `s` unless `n` is 1 (every noun used here takes an `s`).
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_the_rest_plural() {
        assert_eq!(count(1u32, "file"), "1 file");
        assert_eq!(count(0u32, "peer"), "0 peers");
        assert_eq!(count(3u64, "piece"), "3 pieces");
    }
}
