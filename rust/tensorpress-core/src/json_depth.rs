//! Nesting depth of JSON text, so that header parsers refuse hostile nesting before a recursive
//! parser descends into it.

/// Deepest `[`/`{` nesting of JSON text `data`. Closing brackets count down (unbalanced text
/// gives the deepest running level, at least 0). Brackets inside strings do not count: a string
/// runs from a `"` to the next `"` not escaped by a `\`, or to the end of the text (a JSON
/// parser reads an unterminated string so too, and then refuses it).
pub fn json_depth(data: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0isize, 0isize);
    let mut bytes = data.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth -= 1,
            b'"' => {
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    deepest as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_json_text() {
        for (text, depth) in [
            (&b""[..], 0),
            (b"1", 0),
            (b"[]", 1),
            (b"{\"a\": [[1], {\"b\": []}]}", 4),
            (b"[\"[[[\", \"\\\"[[\"]", 1),
            (b"]]]][", 0),
            (b"[[\"unterminated [[[", 2),
            (b"[\"\\\\\"[]]", 2),
        ] {
            assert_eq!(json_depth(text), depth, "{}", String::from_utf8_lossy(text));
        }
        let deep = [&[b'['; 100_000][..], &[b']'; 100_000][..]].concat();
        assert_eq!(json_depth(&deep), 100_000);
    }
}
